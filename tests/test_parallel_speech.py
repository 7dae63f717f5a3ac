"""Parallel speech: seeded items, espeak renditions that line up across languages, a cache that
gives them back unchanged, and manifests and configs that fail naming what is wrong."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from data_modules.espeak import Espeak
from data_modules.parallel_speech import (
    KIND_VALUES,
    ParallelSet,
    ParallelSpeechConfig,
    ParallelSpeechDataModule,
    _drop_reason,
    build_parallel_set,
    item_texts,
    read_manifest,
)
from data_modules.schema import SAMPLE_RATE
from data_modules.synthetic import HELDOUT_VOICES
from phonclip.ipa import phonemize
from phonclip.registry import datamodules

TINY = {"languages": ["en", "de", "fr"], "items_per_kind": 2, "workers": 1}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def built(cache: Path) -> tuple[ParallelSet, dict]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHONCLIP_CACHE", str(cache))
        return build_parallel_set(ParallelSpeechConfig(**TINY), progress=False)


def test_item_texts_are_distinct_seeded_and_well_formed() -> None:
    items = item_texts(["number", "year", "time"], 30, seed=0)
    assert len(items) == 90 and len({i for i, _ in items}) == 90
    assert items == item_texts(["number", "year", "time"], 30, seed=0)
    assert items != item_texts(["number", "year", "time"], 30, seed=1)
    for item, text in items:
        kind, value = item.split(":", 1)
        assert value == text
        if kind == "number":
            assert 10 <= int(text) <= 999
        elif kind == "year":
            assert 1100 <= int(text) <= 2099
        else:
            assert re.fullmatch(r"\d\d:\d\d", text)
            hours, minutes = map(int, text.split(":"))
            assert hours < 24 and minutes % 5 == 0
    kinds = [item.split(":")[0] for item, _ in item_texts(["time", "number"], 2, seed=0)]
    assert kinds == ["time", "time", "number", "number"]
    assert len(item_texts(["time"], len(KIND_VALUES["time"]), seed=0)) == 24 * 12
    with pytest.raises(ValueError, match="items_per_kind"):
        item_texts(["time"], 24 * 12 + 1, seed=0)


def test_synthesised_set_lines_up_across_languages(built: tuple[ParallelSet, dict]) -> None:
    parallel, summary = built
    assert isinstance(summary["generation_seconds"], float) and summary["drops"] == {}
    assert parallel.languages() == ["de", "en", "fr"] and len(parallel) == 3 * 6
    expected = [item for item, _ in item_texts(["number", "year", "time"], 2, seed=0)]
    for lang in parallel.languages():
        assert [parallel.items[i] for i in parallel.rows(lang)] == expected
        assert all(parallel.langs[i] == lang for i in parallel.rows(lang))
    for audio, ipa, text, voice, lang in zip(
        parallel.audio, parallel.ipa, parallel.texts, parallel.voices, parallel.langs
    ):
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.abs(audio).max() <= 1.0
        assert ipa and not re.search(r"[\d(]", ipa) and text
        assert voice.split("+") in ([lang, v] for v in HELDOUT_VOICES)
    durations = parallel.durations()
    assert ((durations > 0.2) & (durations < 8.0)).all()
    assert summary["languages"] == {"de": 6, "en": 6, "fr": 6}
    # 16 kHz: an English "nineteen hundred and ..." year lasts about a second or more
    year = next(i for i in parallel.rows("en") if parallel.items[i].startswith("year:"))
    assert len(parallel.audio[year]) > 0.8 * SAMPLE_RATE


def test_second_build_comes_from_the_cache(
    built: tuple[ParallelSet, dict], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(cache))
    first, summary = built
    cfg = ParallelSpeechConfig(**TINY | {"workers": 2})  # workers do not change the set
    again, cached = build_parallel_set(cfg, progress=False)
    assert cached["generation_seconds"] is None and cached["drops"] == summary["drops"]
    for key in ("items", "langs", "ipa", "texts", "voices"):
        assert getattr(again, key) == getattr(first, key)
    assert all(np.array_equal(a, b) for a, b in zip(again.audio, first.audio))
    assert len(list((cache / "parallel_speech").glob("*.npz"))) == 1


def test_same_config_gives_the_same_set_whatever_the_workers(
    built: tuple[ParallelSet, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    again, summary = build_parallel_set(ParallelSpeechConfig(**TINY | {"workers": 2}), False)
    assert summary["generation_seconds"] is not None and again.voices == built[0].voices
    assert all(np.array_equal(a, b) for a, b in zip(again.audio, built[0].audio))


def test_drops_are_counted_and_rows_exist_only_for_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    cfg = ParallelSpeechConfig(
        languages=["en", "de"], kinds=["year"], items_per_kind=1, max_duration=0.5, workers=1
    )
    parallel, summary = build_parallel_set(cfg, progress=False)
    assert len(parallel) == 0 and summary["drops"] == {"too_long": 2}
    again, cached = build_parallel_set(cfg, progress=False)
    assert len(again) == 0 and cached["generation_seconds"] is None


def test_drop_reasons() -> None:
    utt = Espeak.shared().synthesize("27", "en")
    assert _drop_reason(utt, 8.0) is None
    assert _drop_reason(replace(utt, foreign=[True] * len(utt.foreign)), 8.0) == "foreign_word"
    assert _drop_reason(replace(utt, word_ipa=[]), 8.0) == "empty_ipa"
    assert _drop_reason(replace(utt, word_ipa=["ab7"]), 8.0) == "digit_or_switch_in_ipa"
    assert _drop_reason(replace(utt, word_ipa=["(en)ab"]), 8.0) == "digit_or_switch_in_ipa"
    assert _drop_reason(utt, utt.duration / 2) == "too_long"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"kinds": ["number", "date"]}, "data.kinds"),
        ({"languages": ["en", "xx"]}, "data.languages"),
        ({"languages": ["en"]}, "data.languages"),
        ({"voices": ["m7", "robot9"]}, "data.voices"),
        ({"items_per_kind": 0}, "data.items_per_kind"),
        ({"rate": [200, 140]}, "data.rate"),
        ({"pitch": [0, 101]}, "data.pitch"),
    ],
)
def test_bad_config_names_its_key(override: dict, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        ParallelSpeechConfig(**override).validate()


def _wav(path: Path, seconds: float, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def _manifest(tmp_path: Path, lines: list[str]) -> Path:
    for name in ("a.wav", "b.wav", "c.wav"):
        _wav(tmp_path / name, 0.5)
    path = tmp_path / "parallel.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_manifest_with_ipa_and_with_text(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [
        "item\tlang\taudio\tipa\ttext",
        "dog\ten\ta.wav\tdɒɡ\tdog",
        "cat\tde\tb.wav\t\tKatze",
        f"dog\tde\t{tmp_path / 'c.wav'}\thʊnt\t",
        "cat\ten\tb.wav\t\t",
    ])  # fmt: skip
    parallel = read_manifest(path)
    assert parallel.items == ["dog", "cat", "dog", "cat"] and parallel.languages() == ["de", "en"]
    assert parallel.ipa == ["dɒɡ", phonemize("Katze", "de"), "hʊnt", ""]
    assert parallel.ipa[1] and parallel.voices == [""] * 4
    assert parallel.texts == ["dog", "Katze", "", ""]
    assert [len(a) for a in parallel.audio] == [SAMPLE_RATE // 2] * 4
    assert all(a.dtype == np.float32 for a in parallel.audio)
    assert parallel.rows("en") == [0, 3] and parallel.rows("de") == [2, 1]  # item order
    parallel.save(tmp_path / "set.npz")
    again = ParallelSet.load(tmp_path / "set.npz")
    assert again.items == parallel.items and again.ipa == parallel.ipa
    assert all(np.allclose(a, b, atol=1 / 32768) for a, b in zip(again.audio, parallel.audio))


def test_manifest_errors_name_file_and_line(tmp_path: Path) -> None:
    no_audio = _manifest(tmp_path, ["item\tlang\tipa", "dog\ten\tdɒɡ"])
    with pytest.raises(ValueError, match=r"parallel\.tsv: line 1: missing column.*audio"):
        read_manifest(no_audio)
    missing = _manifest(tmp_path, ["item\tlang\taudio", "dog\ten\ta.wav", "dog\tde\tnope.wav"])
    with pytest.raises(FileNotFoundError, match=r"parallel\.tsv: line 3: .*nope\.wav"):
        read_manifest(missing)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    bad = _manifest(tmp_path, ["item\tlang\taudio", "dog\ten\tbad.wav"])
    with pytest.raises(ValueError, match=r"line 2: unreadable audio"):
        read_manifest(bad)
    empty = _manifest(tmp_path, ["item\tlang\taudio", " \ten\ta.wav"])
    with pytest.raises(ValueError, match=r"line 2: empty item"):
        read_manifest(empty)
    twice = _manifest(tmp_path, ["item\tlang\taudio", "dog\ten\ta.wav", "dog\ten\tb.wav"])
    with pytest.raises(ValueError, match=r"line 3: .*repeats line 2"):
        read_manifest(twice)
    one_language = _manifest(tmp_path, ["item\tlang\taudio", "dog\ten\ta.wav", "cat\ten\tb.wav"])
    with pytest.raises(ValueError, match="2 or more languages"):
        read_manifest(one_language)


def test_datamodule_sets_up_from_config(
    built: tuple[ParallelSet, dict], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(cache))
    assert datamodules.cls("parallel_speech") is ParallelSpeechDataModule
    module = ParallelSpeechDataModule(OmegaConf.create(TINY | {"units": "ipa"}))
    module.prepare_data()
    module.setup("test")
    assert module.parallel is not None and module.parallel.items == built[0].items
    assert module.generation_seconds is None and module.loaders == []
    assert module.summary["utterances"] == len(built[0])
    with pytest.raises(ValueError, match="data.voices"):
        ParallelSpeechDataModule({"voices": ["robot9"]})


def test_datamodule_reads_a_manifest(tmp_path: Path) -> None:
    path = _manifest(tmp_path, ["item\tlang\taudio", "dog\ten\ta.wav", "dog\tde\tb.wav"])
    module = ParallelSpeechDataModule({"manifest": str(path)})
    module.setup()
    assert module.parallel.languages() == ["de", "en"] and module.summary["drops"] == {}
    with pytest.raises(FileNotFoundError, match="data.manifest"):
        ParallelSpeechDataModule({"manifest": str(tmp_path / "missing.tsv")})
