"""LibriSpeech in its standard layout as the same batches as IPAPACK, with espeak IPA cached so it is computed once.

Layout: ``<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and one
``<speaker>-<chapter>.trans.txt`` per chapter (``<utt id> <TRANSCRIPT>`` lines). Transcripts are
lower-cased (espeak reads all-caps words as acronyms) and phonemised with espeak-ng; the IPA is cached in
``<cache_dir>/<split>.<voice>.json`` as ``{utt id: [text, ipa]}`` and recomputed only for utterances whose
text changed or is new. Phonemisation runs in the process that builds the loaders, before any worker
starts. Clips are read, filtered, counted, bucketed and collated exactly like IPAPACK shards
(``data_modules.ipapack``), with ``lang="en"`` and ``meta={"speaker", "chapter"}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from data_modules.espeak import Espeak
from data_modules.ipapack import (
    BatchLoader,
    Dropped,
    SampleFilter,
    StreamConfig,
    StreamingDataModule,
    StreamingDataset,
    as_config,
)
from data_modules.schema import Sample


@dataclass
class LibriSpeechConfig(StreamConfig):
    """Where LibriSpeech is and which splits train, validate and test; batching and filters as for IPAPACK."""

    name: str = "librispeech"
    root: str = ""  # the directory holding train-clean-100/, dev-clean/, ...
    train_splits: list[str] = field(default_factory=lambda: ["train-clean-100"])
    valid_splits: list[str] = field(default_factory=lambda: ["dev-clean"])
    test_splits: list[str] = field(default_factory=lambda: ["test-clean", "test-other"])
    voice: str = "en-us"  # espeak-ng voice for text -> IPA
    cache_dir: str = ""  # "" = $PHONCLIP_CACHE/librispeech (default ~/.cache/phonclip/librispeech)


@dataclass(frozen=True)
class Utterance:
    """One utterance as found on disk; ``path`` or ``text`` is None when its flac or transcript line is missing."""

    key: str
    speaker: str
    chapter: str
    path: Path | None
    text: str | None
    ipa: str | None = None


def scan_split(root: str | Path, split: str) -> list[Utterance]:
    """Every utterance of ``root/split`` in sorted key order, pairing flac files with transcript lines."""
    split_dir = Path(root).expanduser() / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"LibriSpeech split {split!r} not found: {split_dir} is not a directory"
        )
    utterances = []
    for chapter_dir in sorted(p for p in split_dir.glob("*/*") if p.is_dir()):
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        texts: dict[str, str] = {}
        for trans in chapter_dir.glob("*.trans.txt"):
            for line in trans.read_text(encoding="utf-8").splitlines():
                key, _, text = line.strip().partition(" ")
                if key:
                    texts[key] = text.strip().lower()
        flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
        for key in sorted(texts.keys() | flacs.keys()):
            utterances.append(Utterance(key, speaker, chapter, flacs.get(key), texts.get(key)))
    return utterances


def phonemizer(voice: str) -> Callable[[str], str]:
    """Text → IPA with espeak-ng's ``voice`` (stress kept; the sample filter decides whether to drop it)."""
    engine = Espeak.shared()
    return lambda text: engine.phonemize(text, voice, keep_stress=True)


def transcribe(utterances: Sequence[Utterance], voice: str, cache_file: Path) -> list[Utterance]:
    """``utterances`` with their IPA, phonemising only those the cache file lacks (or whose text changed)."""
    cache: dict[str, list[str]] = {}
    if cache_file.is_file():
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    todo = [u for u in utterances if u.text is not None and cache.get(u.key, [None])[0] != u.text]
    if todo:
        to_ipa = phonemizer(voice)
        for u in tqdm(todo, desc=f"espeak {cache_file.stem}", disable=len(todo) < 1000):
            cache[u.key] = [u.text, to_ipa(u.text)]
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(cache, ensure_ascii=False), encoding="utf-8")
        partial.replace(cache_file)
    return [replace(u, ipa=cache[u.key][1]) if u.text is not None else u for u in utterances]


class LibriSpeechDataset(StreamingDataset):
    """Reads phonemised LibriSpeech utterances; readers split them by index, so their shares differ by at most one."""

    def __init__(
        self, utterances: Sequence[Utterance], sample_filter: SampleFilter, **kwargs: Any
    ) -> None:
        super().__init__(sample_filter, **kwargs)
        self.utterances = list(utterances)

    def read(self, idx: int, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        order = (
            rng.permutation(len(self.utterances)) if self.shuffle else range(len(self.utterances))
        )
        for j, i in enumerate(order):
            if j % n == idx:
                sample = self._checked(self._sample, self.utterances[i])
                if sample is not None:
                    yield sample

    def _sample(self, u: Utterance) -> Sample:
        if u.path is None:
            raise Dropped("missing_audio")
        if u.ipa is None:
            raise Dropped("missing_ipa")
        try:
            data = u.path.read_bytes()
        except OSError:
            raise Dropped("missing_audio") from None
        meta = {"speaker": u.speaker, "chapter": u.chapter}
        return self.filter.make_sample(u.key, data, "flac", u.ipa, u.text or "", "en", meta)


class LibriSpeechDataModule(StreamingDataModule):
    """LibriSpeech splits as train / valid / per-split test loaders in the batch schema of ``schema.py``."""

    Config = LibriSpeechConfig

    def __init__(self, cfg: LibriSpeechConfig | DictConfig | dict, tokenizer: Any) -> None:
        super().__init__(as_config(cfg, LibriSpeechConfig), tokenizer)
        if not self.cfg.root:
            raise ValueError(
                "data.root must name the LibriSpeech directory (the one holding train-clean-100/ ...)"
            )

    def train_dataloader(self) -> BatchLoader:
        return self.loader(self.splits(self.cfg.train_splits, train=True), self.cfg.epoch_batches)

    def val_dataloader(self) -> BatchLoader | list:
        """Validation batches over all ``valid_splits`` (no shuffling); an empty list when there are none."""
        return (
            self.loader(self.splits(self.cfg.valid_splits, train=False))
            if self.cfg.valid_splits
            else []
        )

    def test_sets(self) -> dict[str, BatchLoader]:
        """Split name (e.g. ``test-clean``) → loader over that split, in a fixed order."""
        return {
            split: self.loader(self.splits([split], train=False)) for split in self.cfg.test_splits
        }

    def splits(self, names: Sequence[str], train: bool) -> LibriSpeechDataset:
        """The phonemised utterances of the splits ``names`` as one dataset."""
        utterances = [
            u
            for split in names
            for u in transcribe(
                scan_split(self.cfg.root, split), self.cfg.voice, self.cache_file(split)
            )
        ]
        return LibriSpeechDataset(
            utterances, SampleFilter.from_config(self.cfg), **self.stream_kwargs(train)
        )

    def cache_file(self, split: str) -> Path:
        """Where the IPA of ``split`` is cached."""
        base = (
            self.cfg.cache_dir
            or Path(os.environ.get("PHONCLIP_CACHE", "~/.cache/phonclip")) / "librispeech"
        )
        return Path(base).expanduser() / f"{split}.{self.cfg.voice}.json"
