"""Reads gold phone/word alignments (TIMIT, TextGrid) so aligners are scored on real speech."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig
from praatio import textgrid
from praatio.utilities.errors import PraatioException

from data_modules.collate import UNITS, collate
from data_modules.ipapack import Dropped, StreamConfig, as_config
from data_modules.schema import SAMPLE_RATE, Sample
from phonclip.audio import AudioError, load_audio
from phonclip.ipa import normalize_ipa

# fmt: off
TIMIT_TO_IPA = {
    # vowels
    "iy": "i", "ih": "ɪ", "eh": "ɛ", "ae": "æ", "aa": "ɑ", "ah": "ʌ", "ao": "ɔ", "uh": "ʊ",
    "uw": "u", "ux": "ʉ", "er": "ɝ", "axr": "ɚ", "ax": "ə", "ix": "ɨ", "ax-h": "ə̥",
    "ey": "eɪ", "ay": "aɪ", "oy": "ɔɪ", "aw": "aʊ", "ow": "oʊ",
    # semivowels, glides and nasals
    "l": "l", "el": "l̩", "r": "ɹ", "w": "w", "y": "j", "m": "m", "em": "m̩", "n": "n",
    "en": "n̩", "nx": "ɾ̃", "ng": "ŋ", "eng": "ŋ̍",
    # stops, flaps, affricates, fricatives
    "dx": "ɾ", "q": "ʔ", "b": "b", "d": "d", "g": "ɡ", "p": "p", "t": "t", "k": "k",
    "jh": "dʒ", "ch": "tʃ", "s": "s", "sh": "ʃ", "z": "z", "zh": "ʒ", "f": "f", "th": "θ",
    "v": "v", "dh": "ð", "hh": "h", "hv": "ɦ",
}
# fmt: on
# closure -> (the stop it stands for when unreleased, the releases of its place it merges into)
TIMIT_CLOSURES = {
    "bcl": ("b", ("b", "p")),
    "pcl": ("p", ("p", "b")),
    "dcl": ("d", ("d", "t", "jh", "ch")),
    "tcl": ("t", ("t", "d", "ch", "jh")),
    "gcl": ("g", ("g", "k")),
    "kcl": ("k", ("k", "g")),
}
TIMIT_SILENCES = ("h#", "pau", "epi")
TEXTGRID_SILENCES = ("", "sil", "sp", "spn", "<p:>", "SIL")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

Gold = dict[str, list[dict[str, Any]]]
Span = tuple[float, float, str]  # start and end in seconds, label


def read_timit(
    phn_path: str | Path, wrd_path: str | Path | None = None, sample_rate: int = SAMPLE_RATE
) -> Gold:
    """TIMIT ``.PHN`` (and ``.WRD``) sample spans as IPA phones and words in seconds."""
    known = {*TIMIT_TO_IPA, *TIMIT_CLOSURES, *TIMIT_SILENCES}
    spans = _merge_closures(_timit_spans(phn_path, sample_rate, known))
    phones = [
        {"ipa": normalize_ipa(TIMIT_TO_IPA[label], keep_stress=False), "start": start, "end": end}
        for start, end, label in spans
        if label not in TIMIT_SILENCES
    ]
    words = _timit_spans(wrd_path, sample_rate) if wrd_path is not None else []
    return {"phones": phones, "words": _words(words, phones)}


def _timit_spans(path: str | Path, sample_rate: int, known: set[str] | None = None) -> list[Span]:
    spans = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise ValueError(f"{path}, line {number}: expected 'start end label', got {line!r}")
        if known is not None and fields[2] not in known:
            raise ValueError(f"{path}, line {number}: unknown TIMIT phone label {fields[2]!r}")
        spans.append((int(fields[0]) / sample_rate, int(fields[1]) / sample_rate, fields[2]))
    return spans


def _merge_closures(spans: list[Span]) -> list[Span]:
    """A closure joins the release of its place that follows it; an unreleased one is its stop."""
    merged: list[Span] = []
    for start, end, label in spans:
        before = merged[-1][2] if merged else ""
        if before in TIMIT_CLOSURES and label in TIMIT_CLOSURES[before][1]:
            start = merged.pop()[0]
        merged.append((start, end, label))
    return [(s, e, TIMIT_CLOSURES[x][0] if x in TIMIT_CLOSURES else x) for s, e, x in merged]


def _words(spans: list[Span], phones: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Word spans with their ``ipa``: the phones whose midpoint lies in the span."""
    return [
        {
            "text": text,
            "ipa": "".join(p["ipa"] for p in phones if start <= (p["start"] + p["end"]) / 2 < end),
            "start": start,
            "end": end,
        }
        for start, end, text in spans
    ]


def read_textgrid(
    path: str | Path,
    phone_tier: str = "phones",
    word_tier: str | None = "words",
    silence: Sequence[str] = TEXTGRID_SILENCES,
) -> Gold:
    """A Praat TextGrid's IPA phone tier (and word tier) as phones and words in seconds."""
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    except (IndexError, ValueError, PraatioException) as err:
        raise ValueError(f"{path} is not a readable TextGrid: {err}") from err
    phones = [
        {"ipa": ipa, "start": start, "end": end}
        for start, end, label in _intervals(grid, phone_tier, path, silence)
        if (ipa := "".join(normalize_ipa(label, keep_stress=False).split()))
    ]
    words = _intervals(grid, word_tier, path, silence) if word_tier is not None else []
    return {"phones": phones, "words": _words(words, phones)}


def _intervals(
    grid: textgrid.Textgrid, tier: str, path: str | Path, silence: Sequence[str]
) -> list[Span]:
    if tier not in grid.tierNames:
        raise ValueError(f"{path} has no tier {tier!r}; its tiers: {', '.join(grid.tierNames)}")
    found = grid.getTier(tier)
    if found.tierType != textgrid.IntervalTier.tierType:
        raise ValueError(f"{path}: tier {tier!r} holds points, not intervals")
    spans = ((e.start, e.end, e.label.strip()) for e in found.entries)
    return [(start, end, label) for start, end, label in spans if label not in silence]


def read_gold(
    audio_path: str | Path, phone_tier: str = "phones", word_tier: str | None = "words"
) -> Gold:
    """The gold alignment beside an audio file: ``<stem>.TextGrid``, else TIMIT ``<stem>.PHN``."""
    stem = _stem(Path(audio_path))
    grid = _sidecar(stem, (".TextGrid", ".textgrid"))
    if grid is not None:
        return read_textgrid(grid, phone_tier, word_tier)
    phn = _sidecar(stem, (".PHN", ".phn"))
    if phn is not None:
        return read_timit(phn, _sidecar(stem, (".WRD", ".wrd")))
    raise FileNotFoundError(
        f"no gold alignment for {audio_path}: looked for {stem}.TextGrid, {stem}.textgrid, "
        f"{stem}.PHN and {stem}.phn"
    )


def _stem(path: Path) -> Path:
    """``path`` without its audio suffixes: ``SA1.WAV.wav`` (TIMIT converted to RIFF) is ``SA1``."""
    while path.suffix.lower() in AUDIO_SUFFIXES:
        path = path.with_suffix("")
    return path


def _sidecar(stem: Path, suffixes: Sequence[str]) -> Path | None:
    return next((p for s in suffixes if (p := stem.with_name(stem.name + s)).is_file()), None)


def transcript(gold: Gold) -> str:
    """The IPA an aligner is given for a clip: each word's phones joined, words space-separated."""
    if gold["words"]:
        return " ".join(word["ipa"] for word in gold["words"] if word["ipa"])
    return "".join(phone["ipa"] for phone in gold["phones"])


def audio_files(patterns: Sequence[str]) -> list[Path]:
    """The audio files ``patterns`` name (files, directories searched recursively, globs)."""
    if isinstance(patterns, str):
        raise TypeError(f"audio patterns must be a list of strings, got the string {patterns!r}")
    found: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES]
        else:
            matches = [Path(p) for p in glob(str(path), recursive=True)]
        matches = [p for p in matches if p.is_file()]
        if not matches:
            raise FileNotFoundError(f"no audio file matches {pattern!r}")
        found.update(matches)
    return sorted(found)


@dataclass
class AlignedConfig(StreamConfig):
    """Test sets of audio with gold alignments; of the stream settings, units and batching apply."""

    name: str = "aligned"
    test: dict[str, list[str]] = field(default_factory=dict)  # set name -> files, dirs or globs
    phone_tier: str = "phones"  # TextGrid tiers
    word_tier: str | None = "words"  # None: the TextGrids have no word tier
    lang: str = ""  # ISO 639 code of every clip
    batch_size: int | None = 16
    max_clips: int | None = None  # per test set, the first ones in path order


class GoldLoader:
    """One test set as schema batches in path order; ``drop_totals`` counts a pass's skips."""

    def __init__(self, name: str, paths: list[Path], cfg: AlignedConfig, tokenizer: Any) -> None:
        self.name = name
        self.paths = paths
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.drop_totals: dict[str, int] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.drop_totals.clear()
        batch: list[Sample] = []
        for sample in itertools.islice(self.samples(), self.cfg.max_clips):
            if batch and not self._fits(batch, sample):
                yield collate(batch, self.tokenizer, self.cfg.units, dropped={})
                batch = []
            batch.append(sample)
        if batch:
            yield collate(batch, self.tokenizer, self.cfg.units, dropped={})

    def _fits(self, batch: list[Sample], sample: Sample) -> bool:
        """Whether ``sample`` joins ``batch`` within batch_size and max_batch_seconds (padded)."""
        size, seconds = self.cfg.batch_size, self.cfg.max_batch_seconds
        longest = max(s.duration for s in (*batch, sample))
        return (size is None or len(batch) < size) and (
            seconds is None or longest * (len(batch) + 1) <= seconds
        )

    def samples(self) -> Iterator[Sample]:
        """The set's scorable clips in path order, the others counted in ``drop_totals``."""
        for path in self.paths:
            try:
                sample = self._sample(path)
            except Dropped as drop:
                self.drop_totals[drop.kind] = self.drop_totals.get(drop.kind, 0) + 1
            else:
                yield sample

    def _sample(self, path: Path) -> Sample:
        cfg = self.cfg
        try:
            gold = read_gold(path, cfg.phone_tier, cfg.word_tier)
        except FileNotFoundError:
            raise Dropped("missing_alignment") from None
        except ValueError as err:
            if not self.drop_totals.get("corrupt_alignment"):
                message = f"test set {self.name!r}: {err} (clips like it are skipped)"
                warnings.warn(message, stacklevel=2)
            raise Dropped("corrupt_alignment") from None
        ipa = transcript(gold)
        if not ipa.strip():
            raise Dropped("empty_ipa")
        try:
            audio = load_audio(path)
        except (AudioError, OSError):
            raise Dropped("corrupt_audio") from None
        text = " ".join(word["text"] for word in gold["words"])
        return Sample(str(path), audio, ipa=ipa, text=text, lang=cfg.lang, meta=gold)


EVAL_ONLY = (
    "data.name=aligned holds gold alignments for evaluation only; score a trained aligner with "
    '`make eval EXP=aligner ARGS="data.name=aligned data.test.<set>=[<audio dirs or globs>]"`'
)


class AlignedDataModule(L.LightningDataModule):
    """Audio with gold alignments as named test sets in the batch schema, to score aligners.

    Each clip's alignment is the sidecar ``read_gold`` finds beside it (``meta``), its IPA the
    alignment's ``transcript``, its text the words joined, its key the audio path. A clip that
    cannot be scored is skipped and counted in its loader's ``drop_totals``, never raised.
    """

    Config = AlignedConfig

    def __init__(self, cfg: AlignedConfig | DictConfig | dict, tokenizer: Any) -> None:
        super().__init__()
        self.cfg = as_config(cfg, AlignedConfig)
        if self.cfg.units not in UNITS:
            raise ValueError(f"data.units must be one of {UNITS}, got {self.cfg.units!r}")
        self.tokenizer = tokenizer
        self.loaders: list[GoldLoader] = []
        self.generation_seconds = None

    def setup(self, stage: str | None = None) -> None:
        """Nothing to prepare: ``test_sets`` lists the files when it builds the loaders."""

    def test_sets(self) -> dict[str, GoldLoader]:
        """Test-set name → loader over its clips; a pattern matching no file raises here."""
        if not self.cfg.test:
            raise ValueError("data.test names no test set, e.g. data.test.timit=[/data/TIMIT]")
        sets = {
            name: GoldLoader(name, audio_files(patterns), self.cfg, self.tokenizer)
            for name, patterns in self.cfg.test.items()
        }
        self.loaders.extend(sets.values())
        return sets

    def train_dataloader(self) -> Any:
        """Never: gold alignments are for evaluation."""
        raise ValueError(EVAL_ONLY)

    def val_dataloader(self) -> Any:
        """Never: gold alignments are for evaluation."""
        raise ValueError(EVAL_ONLY)
