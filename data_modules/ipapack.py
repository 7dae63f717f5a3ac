"""Streams IPAPACK-format webdataset shards (local or remote) into bucketed batches, split across ranks and workers.

The pieces here are shared by every streaming corpus (LibriSpeech reuses them):

* ``SampleFilter`` — the checks a clip passes before batching; a failure is counted by kind, never raised.
* ``StreamingDataset`` — how a corpus is split over (rank, worker) readers and shuffled per epoch.
* ``Batches`` / ``BatchLoader`` — bucketing + collation inside each worker, epoch bookkeeping and
  drop totals in the training process.

Splitting: there are ``n = world_size × num_workers`` readers, reader ``rank × num_workers + worker``.
With at least ``n`` shards each reader reads the shards ``idx::n``; with fewer, every reader reads all
shards and keeps the raw sample ``i`` iff ``i % n == idx`` (before any filtering, so drops are counted
exactly once too). Either way every sample is read by exactly one reader. Readers may get unequal
sample counts (shard sizes, filtering), so multi-GPU training sets ``epoch_batches``: every rank then
yields exactly that many batches per epoch, cycling its share of the stream.

Language of a clip: the ``.json`` member's ``lang``; when absent, the first group of the regex
``lang_pattern`` searched in the shard URL (e.g. ``r"/(\\w+?)_train"``); else ``""``. With ``languages``
set, clips of unknown language are filtered out; ``exclude_languages`` never removes them.

Drop counts: each batch carries in ``batch["dropped"]`` the drops counted since the previous batch
(drops after the last batch of a pass ride on that last batch), so summing them over a pass, as
``phonclip.trainer.DropTotals`` does, gives exact totals even with worker processes.
``StreamingDataModule.drop_totals()`` keeps the same sums in the process that iterates the loaders.

Resuming: ``BatchLoader.state_dict()`` is the position of the next batch to train on, (epoch, batches
already trained on in it); Lightning stores it in every checkpoint and hands it back through
``load_state_dict`` on resume. The next pass over that epoch then replays the same shuffle and
fast-forwards: the skipped batches are still read, decoded and bucketed (bucketing needs every
duration), but workers hand over only their keys, neither tokenised nor padded. Batches after the
skipped ones, their ``dropped`` counts included, are exactly those of an uninterrupted run: the drops
that rode on skipped batches were reported before the checkpoint, so they are not reported again, and
``drop_totals`` of the resumed process leaves them out. Every pass is a function of (seed, epoch,
cycle within the epoch), never of what this process did before, so resuming needs no other state; it
is exact for the same ``world_size × num_workers`` readers (else it warns and the order differs).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import warnings
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.filters import shuffle as wds_shuffle
from webdataset.handlers import warn_and_continue
from webdataset.shardlists import expand_urls
from webdataset.tariterators import tarfile_samples

from data_modules.bucketing import DurationBucketer
from data_modules.collate import UNITS, collate
from data_modules.quality import DropCounter
from data_modules.schema import SAMPLE_RATE, Sample
from phonclip.audio import AudioError, decode_audio
from phonclip.ipa import normalize_ipa, unknown_segments

AUDIO_EXTS = ("npy", "flac", "wav", "ogg", "mp3", "opus")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class StreamConfig:
    """Filtering and batching settings shared by every streaming corpus."""

    min_duration: float = 0.1  # seconds
    max_duration: float = 20.0  # seconds
    languages: list[str] = field(default_factory=list)  # keep only these (empty: all)
    exclude_languages: list[str] = field(default_factory=list)
    drop_unknown: bool = False  # drop clips whose IPA has unknown segments (else they become <unk>)
    keep_stress: bool = True
    units: str = (
        "ipa"  # what phone_ids encode: "ipa" or "text" (set from model.units by the runner)
    )
    max_batch_seconds: float | None = 60.0  # padded seconds per batch (longest clip × batch size)
    batch_size: int | None = (
        None  # clips per batch; with both set, whichever limit is hit first wins
    )
    num_buckets: int = 16
    bucket_buffer: int = 500  # clips whose durations set the bucket boundaries
    shuffle_buffer: int = 1000  # training only
    num_workers: int = 2
    epoch_batches: int | None = (
        None  # training batches per epoch and rank, cycling the stream; set it for DDP
    )
    seed: int = 0


@dataclass
class IpapackConfig(StreamConfig):
    """Where the IPAPACK shards are: lists of paths, directories, globs or URLs with ``{000..099}`` braces."""

    name: str = "ipapack"
    train: list[str] = field(default_factory=list)
    valid: list[str] = field(default_factory=list)
    test: dict[str, list[str]] = field(default_factory=dict)  # test-set name -> shard patterns
    lang_pattern: str = ""  # regex; group 1 in the shard URL is the language when .json has none


class Dropped(Exception):
    """A sample that fails a check; ``kind`` is one of ``quality.DROP_KINDS``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class SampleFilter:
    """The checks every clip passes before batching, in a fixed order so each bad clip counts once."""

    min_duration: float = 0.0
    max_duration: float = float("inf")
    languages: tuple[str, ...] = ()
    exclude_languages: tuple[str, ...] = ()
    drop_unknown: bool = False
    keep_stress: bool = True
    units: str = "ipa"

    @classmethod
    def from_config(cls, cfg: StreamConfig) -> SampleFilter:
        return cls(
            min_duration=cfg.min_duration,
            max_duration=cfg.max_duration,
            languages=tuple(cfg.languages),
            exclude_languages=tuple(cfg.exclude_languages),
            drop_unknown=cfg.drop_unknown,
            keep_stress=cfg.keep_stress,
            units=cfg.units,
        )

    def check_language(self, lang: str) -> None:
        """Raise ``Dropped`` when ``lang`` is not wanted, before any audio is decoded."""
        if (self.languages and lang not in self.languages) or lang in self.exclude_languages:
            raise Dropped("language_filtered")

    def make_sample(
        self, key: str, audio: bytes, ext: str, ipa: str, text: str, lang: str, meta: dict
    ) -> Sample:
        """The clip as a ``Sample``, or ``Dropped`` naming the first check it fails."""
        self.check_language(lang)
        ipa = normalize_ipa(ipa, keep_stress=self.keep_stress).strip()
        if not ipa:
            raise Dropped("empty_ipa")
        if self.drop_unknown and unknown_segments(ipa):
            raise Dropped("unknown_symbols")
        if self.units == "text" and not text.strip():
            raise Dropped("empty_text")
        wave = _decode(audio, ext)
        duration = len(wave) / SAMPLE_RATE
        if duration < self.min_duration:
            raise Dropped("too_short")
        if duration > self.max_duration:
            raise Dropped("too_long")
        return Sample(key=key, audio=wave, ipa=ipa, text=text, lang=lang, meta=meta)


def _decode(data: bytes, ext: str) -> np.ndarray:
    try:
        return decode_audio(data, ext)
    except AudioError as err:
        message = str(err)
        if "0 bytes" in message or "no samples" in message:
            raise Dropped("empty_audio") from err
        if "NaN" in message:
            raise Dropped("nan_audio") from err
        raise Dropped("corrupt_audio") from err


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's (rank, world size): explicit values, else torch.distributed, else $RANK/$WORLD_SIZE, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = (
                int(os.environ.get("RANK", "0")),
                int(os.environ.get("WORLD_SIZE", "1")),
            )
    if not 0 <= rank < world_size:
        raise ValueError(
            f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}"
        )
    return rank, world_size


class StreamingDataset(IterableDataset, ABC):
    """Yields a corpus's ``Sample``s, each read by exactly one (rank, worker) reader, shuffled per epoch in training."""

    def __init__(
        self,
        sample_filter: SampleFilter,
        *,
        shuffle: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.filter = sample_filter
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.epoch = 0
        self.cycle = 0
        self.drops = DropCounter()

    def set_epoch(self, epoch: int, cycle: int = 0) -> None:
        """Pick the (seed-determined) shuffle of the next pass: pass ``cycle`` of ``epoch``."""
        self.epoch, self.cycle = epoch, cycle

    def reader(self) -> tuple[int, int]:
        """(index of this reader, number of readers) over all ranks and DataLoader workers."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[Sample]:
        idx, n = self.reader()
        samples = self.read(idx, n, self._rng(-1))
        if self.shuffle and self.shuffle_buffer > 1:
            rng = random.Random(int(self._rng(idx).integers(2**63)))
            samples = wds_shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(
                samples
            )
        return samples

    @abstractmethod
    def read(self, idx: int, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        """This reader's share of the samples; ``rng`` (the same in every reader) orders the corpus when shuffling."""

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, self.cycle, stream + 1])

    def _checked(self, make: Callable[..., Sample], *args: Any) -> Sample | None:
        """``make(*args)``, or None with the drop counted."""
        try:
            return make(*args)
        except Dropped as drop:
            self.drops.add(drop.kind)
            return None


def expand_shards(patterns: Sequence[str]) -> list[str]:
    """Shard URLs for ``patterns``: braces and $WDS_ variables expanded, local globs and directories listed."""
    if isinstance(patterns, str):
        raise TypeError(f"shard patterns must be a list of strings, got the string {patterns!r}")
    urls: list[str] = []
    for pattern in patterns:
        for url in expand_urls(pattern):
            found = _local_shards(url)
            if not found:
                raise FileNotFoundError(f"no shard found for {url!r} (from pattern {pattern!r})")
            urls.extend(found)
    return urls


def _local_shards(url: str) -> list[str]:
    if "://" in url or url.startswith("pipe:") or url == "-":
        return [url]
    path = Path(url).expanduser()
    if _GLOB_CHARS.search(url):
        return sorted(glob(str(path)))
    if path.is_dir():
        return sorted(str(p) for p in path.glob("*.tar"))
    return [str(path)] if path.is_file() else []


class ShardDataset(StreamingDataset):
    """Reads IPAPACK webdataset shards: ``<key>.npy|.flac|.wav`` audio, ``<key>.txt`` IPA, optional ``<key>.json``."""

    def __init__(
        self,
        urls: Sequence[str],
        sample_filter: SampleFilter,
        *,
        lang_pattern: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(sample_filter, **kwargs)
        if not urls:
            raise ValueError("ShardDataset needs at least one shard URL")
        self.urls = list(urls)
        self.lang_pattern = re.compile(lang_pattern) if lang_pattern else None

    def read(self, idx: int, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        urls = (
            [self.urls[i] for i in rng.permutation(len(self.urls))] if self.shuffle else self.urls
        )
        per_shard = len(urls) >= n
        raw_samples = tarfile_samples(
            iter([{"url": u} for u in (urls[idx::n] if per_shard else urls)]),
            handler=warn_and_continue,
        )
        for i, raw in enumerate(raw_samples):
            if per_shard or i % n == idx:
                sample = self._checked(self._sample, raw)
                if sample is not None:
                    yield sample

    def _sample(self, raw: dict[str, Any]) -> Sample:
        ext = next((e for e in AUDIO_EXTS if e in raw), None)
        if ext is None:
            raise Dropped("missing_audio")
        if "txt" not in raw:
            raise Dropped("missing_ipa")
        meta = _meta(raw.get("json"))
        lang = str(meta.get("lang") or self._lang_from_url(raw["__url__"]))
        return self.filter.make_sample(
            raw["__key__"],
            raw[ext],
            ext,
            raw["txt"].decode("utf-8", "replace"),
            str(meta.get("text") or ""),
            lang,
            meta,
        )

    def _lang_from_url(self, url: str) -> str:
        match = self.lang_pattern.search(url) if self.lang_pattern else None
        return match.group(1) if match else ""


def _meta(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Dropped("corrupt_meta") from None
    if not isinstance(meta, dict):
        raise Dropped("corrupt_meta")
    return meta


# marks a stand-in for a batch that a resumed loader skips: keys and drops only, nothing collated
FAST_FORWARDED = "fast_forwarded"


class Batches(IterableDataset):
    """Buckets and collates a sample stream inside each worker, so padding and tokenising run in parallel."""

    def __init__(
        self, samples: StreamingDataset, bucketer: DurationBucketer, tokenizer: Any, units: str
    ) -> None:
        super().__init__()
        if units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {units!r}")
        self.samples = samples
        self.bucketer = bucketer
        self.tokenizer = tokenizer
        self.units = units
        self.skip = 0  # leading batches of the next pass that the consumer fast-forwards over

    def set_epoch(self, epoch: int, cycle: int = 0) -> None:
        self.samples.set_epoch(epoch, cycle)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        drops = self.samples.drops
        for i, group in enumerate(self.bucketer(iter(self.samples))):
            # the DataLoader deals batches round-robin over workers (an exhausted one drops out), so
            # this worker's batch i has at most i * workers + worker batches before it in the pass
            if i * workers + worker < self.skip:
                yield {"key": [s.key for s in group], "dropped": drops.take(), FAST_FORWARDED: True}
            else:
                yield collate(group, self.tokenizer, self.units, drops.take())
        rest = drops.take()
        # drops after this worker's last batch ride on an empty batch, which BatchLoader absorbs
        if rest:
            yield collate([], self.tokenizer, self.units, rest)


def _already_collated(batch: dict[str, Any]) -> dict[str, Any]:
    """``Batches`` yields collated tensors; torch's default converter would walk every clip's meta."""
    return batch


class BatchLoader(DataLoader):
    """DataLoader over ``Batches``: a shuffle per pass, empty batches absorbed, drops totalled, resumable.

    Batches are handed on one behind, so drops counted after the last non-empty batch of a pass still
    ride on that batch: summing ``batch["dropped"]`` over a full pass gives exactly ``drop_totals``.
    With ``epoch_batches`` set, each iteration yields exactly that many batches, cycling the stream (a
    fresh shuffle per cycle) as needed, so DDP ranks with unequal shares stay in step.

    One iteration is one epoch: the Trainer's (``epoch_fn``), else this loader's own count.
    ``state_dict`` says where the consumer stands; ``lookahead`` is how many yielded batches it holds
    untrained (one under Lightning, which fetches a batch ahead to spot the last one of a loader
    without a length).
    """

    def __init__(
        self,
        dataset: Batches,
        num_workers: int = 0,
        epoch_fn: Callable[[], int | None] | None = None,
        epoch_batches: int | None = None,
        lookahead: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available(),
            collate_fn=_already_collated,
        )
        if epoch_batches is not None and epoch_batches < 1:
            raise ValueError(f"epoch_batches must be >= 1 or None, got {epoch_batches}")
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        self.epoch_fn = epoch_fn
        self.epoch_batches = epoch_batches
        self.lookahead = lookahead
        self.passes = 0
        self.drop_totals: Counter[str] = Counter()
        self.epoch = self._next_epoch = 0
        self._start = self._yielded = 0  # batches of this epoch fast-forwarded / yielded
        self._finished = False
        self._resume: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        """Where the consumer stands: its epoch and how many batches of it were consumed."""
        if self._resume is not None:
            return dict(self._resume)
        consumed = self._start + (
            self._yielded if self._finished else max(0, self._yielded - self.lookahead)
        )
        epoch = self.epoch
        if self._finished or consumed == self.epoch_batches:
            epoch, consumed = epoch + 1, 0
        return {
            "epoch": epoch,
            "batches": consumed,
            "world_size": self.dataset.samples.world_size,
            "num_workers": self.num_workers,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume at ``state_dict``: the next iteration, if in its epoch, skips the consumed batches."""
        for key in ("epoch", "batches", "world_size", "num_workers"):
            value = state_dict.get(key)
            if not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"BatchLoader state needs a non-negative int {key!r}, got {state_dict!r}"
                )
        self._resume = dict(state_dict)
        self._next_epoch = state_dict["epoch"]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, start = self._begin_epoch()
        for position, batch in enumerate(self._passes(epoch, start), start=1):
            if position > start:
                self._yielded += 1
                yield batch
            if position == self.epoch_batches:
                break
        self._finished = True

    def _begin_epoch(self) -> tuple[int, int]:
        """This iteration's epoch and how many of its first batches a resumed run already consumed."""
        trainer_epoch = self.epoch_fn() if self.epoch_fn is not None else None
        epoch = self._next_epoch if trainer_epoch is None else trainer_epoch
        state, self._resume = self._resume, None
        if state is not None:
            # resumed at an epoch's end, the Trainer first iterates while still counting that epoch
            epoch = max(epoch, state["epoch"])
        start = state["batches"] if state is not None and state["epoch"] == epoch else 0
        readers = (self.dataset.samples.world_size, self.num_workers)
        saved = (state["world_size"], state["num_workers"]) if start else readers
        if saved != readers:
            warnings.warn(
                f"resuming epoch {epoch} after batch {start} with world_size × num_workers = "
                f"{readers[0]} × {readers[1]} readers, but the checkpoint was taken with "
                f"{saved[0]} × {saved[1]}: the rest of this epoch will not be the batches the "
                "interrupted run would have seen",
                stacklevel=3,
            )
        self.epoch, self._next_epoch = epoch, epoch + 1
        self._start, self._yielded, self._finished = start, 0, False
        return epoch, start

    def _passes(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        """Every batch of ``epoch`` in order, the first ``start`` possibly as key-only stand-ins."""
        position = 0
        for cycle in itertools.count():
            seen = 0
            for batch in self._one_pass(epoch, cycle, max(0, start - position)):
                seen += 1
                position += 1
                yield batch
            if self.epoch_batches is None:
                return
            if seen == 0:
                raise RuntimeError(
                    f"the stream yields no batches (dropped so far: {dict(self.drop_totals)})"
                )

    def _one_pass(self, epoch: int, cycle: int, skip: int) -> Iterator[dict[str, Any]]:
        """One pass; its first ``skip`` batches are to be skipped and stay out of ``drop_totals``."""
        self.dataset.set_epoch(epoch, cycle)
        self.dataset.skip = skip
        self.passes += 1
        carried: Counter[str] = Counter()
        held: dict[str, Any] | None = None
        index = -1  # of the held batch within this pass
        for batch in super().__iter__():
            carried.update(batch["dropped"])
            if len(batch["key"]) == 0:
                continue
            if held is not None:
                yield self._release(held, index, skip)
            held, carried, index = {**batch, "dropped": dict(carried)}, Counter(), index + 1
        if held is not None:
            held["dropped"] = dict(carried + Counter(held["dropped"]))
            yield self._release(held, index, skip)
        else:
            self.drop_totals.update(carried)

    def _release(self, batch: dict[str, Any], index: int, skip: int) -> dict[str, Any]:
        if index < skip:
            return batch
        if batch.get(FAST_FORWARDED):
            raise RuntimeError(
                f"batch {index} of the pass was expected among the first {skip} (fast-forwarded) "
                "ones: the DataLoader did not deal batches round-robin over its workers"
            )
        self.drop_totals.update(batch["dropped"])
        return batch


ConfigT = TypeVar("ConfigT", bound=StreamConfig)


def as_config(cfg: ConfigT | DictConfig | dict, schema: type[ConfigT]) -> ConfigT:
    """``cfg`` as a ``schema`` dataclass, whether it came as one, as an OmegaConf node or as a plain dict."""
    if isinstance(cfg, schema):
        return cfg
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), cfg))


class StreamingDataModule(L.LightningDataModule):
    """Builds bucketed ``BatchLoader``s over a corpus's ``StreamingDataset``s and remembers them for drop totals."""

    def __init__(self, cfg: StreamConfig, tokenizer: Any) -> None:
        super().__init__()
        if cfg.units not in UNITS:
            raise ValueError(f"data.units must be one of {UNITS}, got {cfg.units!r}")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.loaders: list[BatchLoader] = []

    def drop_totals(self) -> dict[str, int]:
        """Samples dropped by kind over every pass of every loader this DataModule made, in this process."""
        totals: Counter[str] = Counter()
        for loader in self.loaders:
            totals.update(loader.drop_totals)
        return dict(totals)

    def rank(self) -> tuple[int | None, int | None]:
        """(global rank, world size) from the attached Trainer, or (None, None) to resolve them elsewhere."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (None, None)

    def loader(self, samples: StreamingDataset, epoch_batches: int | None = None) -> BatchLoader:
        """Bucketed, collated batches of ``samples`` (exactly ``epoch_batches`` per pass when set)."""
        cfg = self.cfg
        bucketer = DurationBucketer(
            cfg.max_batch_seconds, cfg.batch_size, cfg.num_buckets, cfg.bucket_buffer
        )
        batches = Batches(samples, bucketer, self.tokenizer, cfg.units)
        # Lightning fetches one batch ahead of the step it trains on: lookahead=1 keeps resume exact
        loader = BatchLoader(batches, cfg.num_workers, self._epoch, epoch_batches, lookahead=1)
        self.loaders.append(loader)
        return loader

    def stream_kwargs(self, train: bool) -> dict[str, Any]:
        """Keyword arguments every ``StreamingDataset`` of this DataModule takes."""
        rank, world_size = self.rank()
        return {
            "shuffle": train,
            "shuffle_buffer": self.cfg.shuffle_buffer,
            "seed": self.cfg.seed,
            "rank": rank,
            "world_size": world_size,
        }

    def _epoch(self) -> int | None:
        trainer = self.trainer
        return trainer.current_epoch if trainer is not None else None


class IpapackDataModule(StreamingDataModule):
    """IPAPACK shards as train / valid / named test loaders in the batch schema of ``schema.py``."""

    Config = IpapackConfig

    def __init__(self, cfg: IpapackConfig | DictConfig | dict, tokenizer: Any) -> None:
        super().__init__(as_config(cfg, IpapackConfig), tokenizer)

    def train_dataloader(self) -> BatchLoader:
        return self.loader(self.shards(self.cfg.train, train=True), self.cfg.epoch_batches)

    def val_dataloader(self) -> BatchLoader | list:
        """Validation batches (no shuffling); an empty list when ``valid`` names no shards."""
        return self.loader(self.shards(self.cfg.valid, train=False)) if self.cfg.valid else []

    def test_sets(self) -> dict[str, BatchLoader]:
        """Test-set name → loader over that split, in a fixed order."""
        return {
            name: self.loader(self.shards(patterns, train=False))
            for name, patterns in self.cfg.test.items()
        }

    def shards(self, patterns: Sequence[str], train: bool) -> ShardDataset:
        """A ``ShardDataset`` over ``patterns`` with this DataModule's filters."""
        return ShardDataset(
            expand_shards(patterns),
            SampleFilter.from_config(self.cfg),
            lang_pattern=self.cfg.lang_pattern,
            **self.stream_kwargs(train),
        )
