"""Gold alignment readers (TIMIT, TextGrid), sidecar lookup and the evaluation-only DataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf
from praatio import textgrid

from data_modules.aligned import (
    AlignedConfig,
    AlignedDataModule,
    read_gold,
    read_textgrid,
    read_timit,
    transcript,
)
from phonclip import config, registry
from phonclip.ipa import IpaTokenizer, normalize_ipa

# "dad", a pause, "cash", "church": a closure merged into its stop, one unreleased (kcl), one
# merged across voicing (tcl ch), silences at both ends and inside
PHN = """0 2000 h#
2000 3600 dcl
3600 4000 d
4000 5600 ae
5600 6000 pau
6000 6800 kcl
6800 8000 sh
8000 8800 tcl
8800 9600 ch
9600 11200 er
11200 12800 epi
12800 14400 h#
"""
WRD = """2000 5600 dad
6000 8000 cash
8000 11200 church
"""
PHONES = [("d", 2000, 4000), ("æ", 4000, 5600), ("k", 6000, 6800), ("ʃ", 6800, 8000),
          ("tʃ", 8000, 9600), (normalize_ipa("ɝ"), 9600, 11200)]  # fmt: skip


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_timit(stem: Path, phn: str = PHN, wrd: str | None = WRD, upper: bool = True) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    (stem.parent / f"{stem.name}.{'PHN' if upper else 'phn'}").write_text(phn)
    if wrd is not None:
        (stem.parent / f"{stem.name}.{'WRD' if upper else 'wrd'}").write_text(wrd)


def write_textgrid(path: Path) -> Path:
    phones = [(0.0, 0.1, "sil"), (0.1, 0.2, "h"), (0.2, 0.3, "ə"), (0.3, 0.4, "l"),
              (0.4, 0.5, "oʊ"), (0.5, 0.6, "sp"), (0.6, 0.7, "ˈw"), (0.7, 0.8, "ɝ"),
              (0.8, 0.85, "l"), (0.85, 0.9, "d"), (0.9, 1.0, "<p:>")]  # fmt: skip
    words = [(0.1, 0.5, "hello"), (0.5, 0.6, "sp"), (0.6, 0.9, "world")]
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.IntervalTier("phones", phones, 0.0, 1.0))
    grid.addTier(textgrid.IntervalTier("words", words, 0.0, 1.0))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return path


def test_timit_labels_map_to_ipa_closures_merge_and_silences_leave_gaps(tmp_path):
    write_timit(tmp_path / "SA1")
    gold = read_timit(tmp_path / "SA1.PHN", tmp_path / "SA1.WRD")
    assert [(p["ipa"], p["start"], p["end"]) for p in gold["phones"]] == [
        (ipa, start / 16000, end / 16000) for ipa, start, end in PHONES
    ]
    assert all(isinstance(p["start"], float) for p in gold["phones"])
    assert [(w["text"], w["ipa"], w["start"], w["end"]) for w in gold["words"]] == [
        ("dad", "dæ", 0.125, 0.35),
        ("cash", "kʃ", 0.375, 0.5),
        ("church", "tʃ" + normalize_ipa("ɝ"), 0.5, 0.7),
    ]


def test_timit_sample_rate_sets_seconds_and_words_are_optional(tmp_path):
    write_timit(tmp_path / "SA1", wrd=None)
    gold = read_timit(tmp_path / "SA1.PHN", sample_rate=8000)
    assert gold["words"] == []
    assert (gold["phones"][0]["start"], gold["phones"][0]["end"]) == (0.25, 0.5)


def test_timit_closure_merges_only_into_a_release_of_its_place(tmp_path):
    (tmp_path / "x.PHN").write_text("0 10 bcl\n10 20 d\n20 30 gcl\n30 40 k\n40 50 ax-h\n")
    gold = read_timit(tmp_path / "x.PHN", sample_rate=10)
    assert [(p["ipa"], p["start"]) for p in gold["phones"]] == [
        ("b", 0.0), ("d", 1.0), ("k", 2.0), ("ə̥", 4.0)
    ]  # fmt: skip


def test_unknown_timit_label_names_file_line_and_label(tmp_path):
    (tmp_path / "x.PHN").write_text("0 10 h#\n10 20 zz\n")
    with pytest.raises(ValueError, match=r"x\.PHN, line 2.*'zz'"):
        read_timit(tmp_path / "x.PHN")


def test_textgrid_skips_silences_and_normalises_phones(tmp_path):
    gold = read_textgrid(write_textgrid(tmp_path / "a.TextGrid"))
    er = normalize_ipa("ɝ")
    assert [p["ipa"] for p in gold["phones"]] == ["h", "ə", "l", "oʊ", "w", er, "l", "d"]
    assert gold["phones"][0] == {"ipa": "h", "start": 0.1, "end": 0.2}
    assert [(w["text"], w["ipa"]) for w in gold["words"]] == [
        ("hello", "həloʊ"),
        ("world", f"w{er}ld"),
    ]
    assert read_textgrid(tmp_path / "a.TextGrid", word_tier=None)["words"] == []


def test_textgrid_missing_tier_lists_the_tiers_it_has(tmp_path):
    path = write_textgrid(tmp_path / "a.TextGrid")
    with pytest.raises(ValueError, match=r"no tier 'segments'; its tiers: phones, words"):
        read_textgrid(path, phone_tier="segments")
    with pytest.raises(ValueError, match=r"no tier 'orthography'"):
        read_textgrid(path, word_tier="orthography")
    (tmp_path / "bad.TextGrid").write_text("not a TextGrid\n")
    with pytest.raises(ValueError, match=r"bad\.TextGrid is not a readable TextGrid"):
        read_textgrid(tmp_path / "bad.TextGrid")


def test_read_gold_finds_the_sidecar_in_either_case(tmp_path):
    write_textgrid(tmp_path / "a.TextGrid")
    write_timit(tmp_path / "a")
    assert read_gold(tmp_path / "a.wav")["words"][0]["text"] == "hello"  # TextGrid preferred
    write_timit(tmp_path / "b", upper=False)
    assert read_gold(tmp_path / "b.WAV")["words"][0]["text"] == "dad"
    write_timit(tmp_path / "SA1", wrd=None)
    assert read_gold(tmp_path / "SA1.WAV.wav")["words"] == []  # converted TIMIT audio
    with pytest.raises(FileNotFoundError, match=r"c\.TextGrid.*c\.PHN"):
        read_gold(tmp_path / "c.wav")


def test_transcript_joins_phones_per_word():
    phones = [{"ipa": x, "start": 0.0, "end": 0.1} for x in ("d", "æ", "k")]
    words = [{"text": "dad", "ipa": "dæ"}, {"text": "uh", "ipa": ""}, {"text": "k", "ipa": "k"}]
    assert transcript({"phones": phones, "words": words}) == "dæ k"
    assert transcript({"phones": phones, "words": []}) == "dæk"


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Three good TIMIT clips, then one each with no sidecar, with bad audio, with no phones."""
    root = tmp_path / "TEST"
    for stem, seconds in (("DR1/A", 0.9), ("DR1/B", 0.5), ("DR2/C", 0.3)):
        write_timit(root / stem)
        sf.write(root / f"{stem}.WAV", tone(seconds), 16000)
    sf.write(root / "DR2" / "D.WAV", tone(0.2), 16000)
    write_timit(root / "DR2" / "E")
    (root / "DR2" / "E.WAV").write_bytes(b"not audio at all")
    write_timit(root / "DR2" / "F", phn="0 100 h#\n", wrd=None)
    sf.write(root / "DR2" / "F.WAV", tone(0.2), 16000)
    return root


def datamodule(test: dict, **cfg) -> AlignedDataModule:
    return AlignedDataModule({"test": test, "batch_size": 2, **cfg}, tokenizer=IpaTokenizer())


def test_datamodule_yields_schema_batches_and_counts_skipped_clips(corpus):
    dm = datamodule({"dir": [str(corpus)], "glob": [str(corpus / "**" / "*.WAV")]})
    dm.setup("test")
    sets = dm.test_sets()
    assert list(sets) == ["dir", "glob"] and dm.loaders == list(sets.values())
    for loader in sets.values():
        batches = list(loader)
        assert [b["key"] for b in batches] == [
            [str(corpus / "DR1/A.WAV"), str(corpus / "DR1/B.WAV")],
            [str(corpus / "DR2/C.WAV")],
        ]
        first = batches[0]
        assert {"audio", "audio_lens", "phone_ids", "phone_lens", "ipa", "meta"} <= set(first)
        assert first["audio"].shape == (2, 14400) and first["audio_lens"].tolist() == [14400, 8000]
        assert first["ipa"][0] == "dæ kʃ tʃ" + normalize_ipa("ɝ")
        assert first["text"][0] == "dad cash church"
        ids = IpaTokenizer().encode(first["ipa"][1])
        assert first["phone_ids"][1, : len(ids)].tolist() == ids
        assert first["phone_lens"][1] == len(ids)
        assert [p["ipa"] for p in first["meta"][0]["phones"]] == [x for x, _, _ in PHONES]
        assert first["meta"][0]["words"][0]["text"] == "dad"
        assert loader.drop_totals == {"missing_alignment": 1, "corrupt_audio": 1, "empty_ipa": 1}
        assert len(list(loader)) == 2 and sum(loader.drop_totals.values()) == 3  # re-iterable


def test_datamodule_batches_by_padded_seconds_and_caps_clips(corpus):
    (loader,) = datamodule({"t": [str(corpus)]}, max_batch_seconds=1.0).test_sets().values()
    assert [len(b["key"]) for b in loader] == [1, 2]  # 2 × 0.9 s > 1 s; 2 × 0.5 s fits
    (loader,) = datamodule({"t": [str(corpus)]}, max_clips=1).test_sets().values()
    assert [len(b["key"]) for b in loader] == [1]


def test_unreadable_alignment_is_counted_with_one_warning(corpus):
    write_timit(corpus / "DR1" / "A", phn="0 10 h#\n10 20 zz\n")
    (loader,) = datamodule({"t": [str(corpus)]}).test_sets().values()
    with pytest.warns(UserWarning, match="unknown TIMIT phone label 'zz'"):
        assert sum(len(b["key"]) for b in loader) == 2
    assert loader.drop_totals["corrupt_alignment"] == 1


def test_pattern_matching_nothing_raises(corpus):
    pattern = str(corpus / "**" / "*.flac")
    with pytest.raises(FileNotFoundError, match="no audio file matches .*flac"):
        datamodule({"t": [str(corpus)], "u": [pattern]}).test_sets()


def test_aligned_data_is_for_evaluation_only(corpus):
    with pytest.raises(ValueError, match="data.test names no test set"):
        datamodule({}).test_sets()
    dm = datamodule({"t": [str(corpus)]})
    with pytest.raises(ValueError, match="evaluation only.*make eval"):
        dm.train_dataloader()
    with pytest.raises(ValueError, match="evaluation only"):
        dm.val_dataloader()


def test_config_accepts_aligned_data():
    assert registry.datamodules.config("aligned") is AlignedConfig
    merged = OmegaConf.merge(
        OmegaConf.structured(AlignedConfig),
        {"name": "aligned", "test": {"timit": ["/data/TIMIT/TEST"]}, "max_batch_seconds": 30,
         "num_workers": 1, "word_tier": None},
    )  # fmt: skip
    assert merged.batch_size == 16 and merged.word_tier is None
    overrides = ["data.name=aligned", "data.test.timit=[/data/TIMIT/TEST]", "data.lang=en"]
    (_, cfg), *_ = config.load("clap_ipa", overrides)
    assert cfg.data.test.timit == ["/data/TIMIT/TEST"] and cfg.data.num_workers == 1
