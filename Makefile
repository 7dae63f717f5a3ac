# phonclip: every user-facing command. The first target that needs Python creates .venv.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
EXP    ?= clap_ipa
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: help install train eval test test-slow bench report corpus lint clean

help:
	@echo "make train EXP=<name> [ARGS='key=value ...']   train + evaluate every arm of experiments/<name>.yaml"
	@echo "make eval  EXP=<name> [ARGS=...]               evaluate the last checkpoint of every arm"
	@echo "make test                                      unit + smoke tests (installs on first use)"
	@echo "make bench                                     benchmarks -> docs/BENCHMARKS.md"
	@echo "make report                                    experiments -> docs/RESULTS.md"
	@echo "make corpus [ARGS=...]                         generate (or find cached) the embedded corpus"

$(BIN)/phonclip: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	@touch $@

install: $(BIN)/phonclip

train: install
	$(BIN)/phonclip train $(EXP) $(ARGS)

eval: install
	$(BIN)/phonclip eval $(EXP) $(ARGS)

corpus: install
	$(BIN)/phonclip corpus $(ARGS)

test: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m phonclip.bench $(ARGS)

report: install
	$(BIN)/python -m phonclip.report $(ARGS)

lint: install
	$(BIN)/ruff check phonclip data_modules tests

clean:
	rm -rf $(VENV) runs .pytest_cache
