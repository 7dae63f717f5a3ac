"""The other-synthesizer test set: installed voices are found, speak, and become cached schema shards."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_CORPUS

from data_modules import other_synth
from data_modules.other_synth import (
    OTHER_SYNTH_SPLIT,
    OtherSynthConfig,
    SynthesisError,
    available_voices,
    generate_other_synth,
    synthesize,
)
from data_modules.synthetic import MANIFEST, SyntheticConfig, SyntheticDataModule, generate_corpus
from phonclip.ipa import IpaTokenizer

needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="flite is not installed (.ci/run installs it as root)"
)
CORPUS = TINY_CORPUS | {
    "seen_languages": ["en", "it"],
    "workers": 1,
}  # en: flite, it: festival only
CFG = OtherSynthConfig(words_per_language=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("other_synth_cache")


@pytest.fixture(autouse=True)
def _use_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(cache))


@pytest.fixture(scope="module")
def corpus(cache: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHONCLIP_CACHE", str(cache))
        return generate_corpus(SyntheticConfig(**CORPUS), progress=False)


@pytest.fixture(scope="module")
def other(corpus: Path, cache: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHONCLIP_CACHE", str(cache))
        out = generate_other_synth(corpus, CFG, progress=False)
    assert out is not None
    return out


def datamodule(test_splits: list[str]) -> SyntheticDataModule:
    cfg = {"corpus": CORPUS, "other_synth": {"words_per_language": 2}, "test_splits": test_splits,
           "num_workers": 0}  # fmt: skip
    dm = SyntheticDataModule(cfg, IpaTokenizer())
    dm.setup("test")
    return dm


@needs_flite
def test_available_voices_are_the_installed_ones() -> None:
    cfg = OtherSynthConfig(
        voices={"en": ["flite:slt", "flite:no_such_voice"], "xx": ["flite:nope"]}
    )
    assert available_voices(cfg) == {"en": ["flite:slt"]}
    found = available_voices(OtherSynthConfig())
    assert {"flite:slt", "flite:awb", "flite:rms", "flite:kal16"} <= set(found["en"])
    assert all(shutil.which(spec.partition(":")[0]) for specs in found.values() for spec in specs)


@needs_flite
def test_flite_says_an_english_word_at_16khz() -> None:
    wave = synthesize("flite:slt", "water")
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.2 < len(wave) / 16000 < 2.0 and np.abs(wave).max() > 0.05
    with pytest.raises(SynthesisError, match="no voice 'no_such_voice'"):
        synthesize("flite:no_such_voice", "water")
    with pytest.raises(SynthesisError, match="unencodable"):
        synthesize("flite:slt", "naïve")  # flite drops letters outside ASCII: refused instead


@needs_flite
def test_shards_read_as_schema_batches_with_espeak_ipa(other: Path) -> None:
    manifest = json.loads((other / MANIFEST).read_text(encoding="utf-8"))
    batches = list(datamodule(["test_seen", OTHER_SYNTH_SPLIT]).test_sets().values())
    seen = {k: (t, ipa) for b in batches[0] for k, t, ipa in zip(b["key"], b["text"], b["ipa"])}
    voices = defaultdict(list)  # (lang, text) -> voices of its clips
    counts: Counter = Counter()  # (lang, voice) -> clips
    for batch in batches[1]:
        assert batch["audio"].dtype.is_floating_point and batch["audio"].shape[0] == len(
            batch["key"]
        )
        assert batch["phone_ids"].shape[0] == len(batch["key"]) and batch["dropped"] == {}
        for text, ipa, lang, meta in zip(batch["text"], batch["ipa"], batch["lang"], batch["meta"]):
            assert seen[meta["source"]] == (text, ipa)  # espeak's IPA of the same held-out word
            assert meta["split"] == OTHER_SYNTH_SPLIT and meta["kind"] == "word"
            assert meta["engine"] == meta["voice"].partition(":")[0]
            voices[lang, text].append(meta["voice"])
            counts[lang, meta["voice"]] += 1
    available = available_voices(CFG)
    assert "en" in {lang for lang, _ in voices} and manifest["drops"] == {}
    for (lang, _), vs in voices.items():
        assert len(set(vs)) == len(vs) == min(CFG.renditions, len(available[lang]))
    assert counts == {
        (lang, v): n for lang, c in manifest["languages"].items() for v, n in c.items()
    }


@needs_flite
def test_second_call_is_cached(corpus: Path, other: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("resynthesised")

    monkeypatch.setattr(other_synth, "_render", fail)
    before = (other / MANIFEST).stat().st_mtime_ns
    assert generate_other_synth(corpus, CFG, progress=False) == other
    assert (other / MANIFEST).stat().st_mtime_ns == before


@needs_flite
def test_failed_run_leaves_nothing(
    corpus: Path, other: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(other_synth, "_sample", fail)
    before = set(other.parent.iterdir())
    with pytest.raises(OSError, match="disk full"):
        generate_other_synth(corpus, OtherSynthConfig(seed=1, words_per_language=1), progress=False)
    assert set(other.parent.iterdir()) == before


def test_no_synthesizer_gives_none_and_the_split_is_dropped(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: neither flite nor festival
    with pytest.warns(UserWarning, match="apt-get install flite festival"):
        assert generate_other_synth(corpus, CFG, progress=False) is None
    with pytest.warns(UserWarning, match="apt-get install"):
        dm = datamodule(["test_seen", OTHER_SYNTH_SPLIT])
    assert list(dm.cfg.test) == ["test_seen"]


def test_generation_seconds_count_only_a_corpus_generated_here(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert datamodule(["test_seen"]).generation_seconds is None  # the module's corpus: cached
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    fresh = datamodule(["test_seen"])
    assert isinstance(fresh.generation_seconds, float) and fresh.generation_seconds > 0
