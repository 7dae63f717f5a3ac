"""LibriSpeech layout reader: espeak IPA, cached transcriptions, the shared filters and batch schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from shards import tone

from data_modules import librispeech
from data_modules.librispeech import LibriSpeechDataModule, scan_split
from phonclip.ipa import IpaTokenizer

TRANSCRIPTS = {
    ("19", "198"): {"0000": "HELLO WORLD", "0001": "GOOD MORNING", "0002": "THANK YOU"},
    ("26", "495"): {"0000": "SEE YOU LATER", "0001": "YES", "0003": "NO AUDIO FOR THIS LINE"},
}


def make_tree(root: Path, split: str = "train-clean-100") -> Path:
    """Two speakers with tone clips; one flac lacks a transcript line and one line lacks its flac."""
    for (speaker, chapter), lines in TRANSCRIPTS.items():
        chapter_dir = root / split / speaker / chapter
        chapter_dir.mkdir(parents=True)
        text = "".join(f"{speaker}-{chapter}-{utt} {words}\n" for utt, words in lines.items())
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text(text)
        for i, utt in enumerate(["0000", "0001", "0002"]):
            sf.write(
                chapter_dir / f"{speaker}-{chapter}-{utt}.flac",
                tone(0.6 + 0.1 * i, 200 + 50 * i),
                16000,
            )
    return root


@pytest.fixture
def phonemized(monkeypatch, tmp_path) -> list[str]:
    """Texts sent to espeak in this test (the real espeak does the work)."""
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    real = librispeech.phonemizer

    def spy(voice: str):
        inner = real(voice)

        def to_ipa(text: str) -> str:
            calls.append(text)
            return inner(text)

        return to_ipa

    monkeypatch.setattr(librispeech, "phonemizer", spy)
    return calls


def module(root: Path, **overrides) -> LibriSpeechDataModule:
    cfg = {
        "root": str(root),
        "valid_splits": [],
        "test_splits": ["train-clean-100"],
        "num_workers": 0,
        **overrides,
    }
    return LibriSpeechDataModule(cfg, IpaTokenizer())


def test_scan_pairs_flacs_with_transcript_lines(tmp_path):
    utterances = scan_split(make_tree(tmp_path), "train-clean-100")
    assert [u.key for u in utterances] == [
        "19-198-0000",
        "19-198-0001",
        "19-198-0002",
        "26-495-0000",
        "26-495-0001",
        "26-495-0002",
        "26-495-0003",
    ]
    by_key = {u.key: u for u in utterances}
    assert by_key["19-198-0000"].text == "hello world" and by_key["19-198-0000"].speaker == "19"
    assert by_key["26-495-0002"].text is None and by_key["26-495-0003"].path is None


def test_reader_yields_phonemised_samples_and_counts_gaps(tmp_path, phonemized):
    dm = module(make_tree(tmp_path))
    batches = list(dm.train_dataloader())
    samples = {
        k: (ipa, text, lang, meta)
        for b in batches
        for k, ipa, text, lang, meta in zip(b["key"], b["ipa"], b["text"], b["lang"], b["meta"])
    }
    assert sorted(samples) == [
        "19-198-0000",
        "19-198-0001",
        "19-198-0002",
        "26-495-0000",
        "26-495-0001",
    ]
    ipa, text, lang, meta = samples["19-198-0000"]
    assert (text, lang, meta) == ("hello world", "en", {"speaker": "19", "chapter": "198"})
    assert ipa.startswith("h") and " w" in ipa and "ɜ" in ipa
    assert dm.drop_totals() == {"missing_ipa": 1, "missing_audio": 1}
    assert sum(b["audio"].shape[0] for b in batches) == 5


def test_transcriptions_are_cached_per_split(tmp_path, phonemized):
    root = make_tree(tmp_path)
    first = [b["ipa"] for b in module(root).test_sets()["train-clean-100"]]
    assert len(phonemized) == 6
    assert (tmp_path / "cache" / "librispeech" / "train-clean-100.en-us.json").is_file()
    second = [b["ipa"] for b in module(root).test_sets()["train-clean-100"]]
    assert second == first and len(phonemized) == 6
    trans = root / "train-clean-100" / "19" / "198" / "19-198.trans.txt"
    trans.write_text(trans.read_text().replace("THANK YOU", "THANK YOU VERY MUCH"))
    module(root).test_sets()
    assert phonemized[6:] == ["thank you very much"]


def test_missing_split_or_root_is_named(tmp_path, phonemized):
    with pytest.raises(FileNotFoundError, match="dev-other"):
        module(make_tree(tmp_path), test_splits=["dev-other"]).test_sets()
    with pytest.raises(ValueError, match="data.root"):
        LibriSpeechDataModule({}, IpaTokenizer())
