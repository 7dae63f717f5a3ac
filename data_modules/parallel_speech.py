"""Parallel spoken utterances, the same meaning in every language, for the layer-wise cross-lingual
retrieval probe: does a layer place one meaning spoken in two languages closer than two meanings?
Offline, espeak-ng speaks numbers, years and times of day written as digits, which it reads
natively in each language's own words, so the meaning is identical by construction and only the
language differs. Each (language, item) is spoken by one seeded voice variant that training never
used (the corpus's held-out voices), so speaker identity cannot give the match away. A user's own
recordings come in as a TSV manifest instead (``read_manifest``). Sets are cached once per config
under ``$PHONCLIP_CACHE/parallel_speech`` (temp file + rename).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig

from data_modules.espeak import (
    RATE_MAX,
    RATE_MIN,
    Espeak,
    Utterance,
    available_languages,
    available_variants,
)
from data_modules.ipapack import as_config
from data_modules.schema import SAMPLE_RATE
from data_modules.spoken_words import _run_pool
from data_modules.synthetic import (
    HELDOUT_VOICES,
    SEEN_LANGUAGES,
    UNSEEN_LANGUAGES,
    _to_pcm16,
    cache_root,
)
from phonclip.audio import _npy_to_float, load_audio
from phonclip.ipa import normalize_ipa, phonemize

CACHE_VERSION = 1  # bump when the same config gives different utterances
KIND_VALUES = {  # every value a kind can take, in order; item ids are "<kind>:<text>"
    "number": [str(n) for n in range(10, 1000)],
    "year": [str(y) for y in range(1100, 2100)],
    "time": [f"{h:02d}:{m:02d}" for h in range(24) for m in range(0, 60, 5)],
}
MANIFEST_COLUMNS = ("item", "lang", "audio")
_PCM_SCALE = 32768.0  # int16 <-> float, as phonclip.audio reads int PCM


@dataclass
class ParallelSpeechConfig:
    """Which meanings are spoken, in which languages and voices (or a manifest of one's own)."""

    name: str = "parallel_speech"
    units: str = "ipa"  # set by the runner; utterances carry no tokens
    languages: list[str] = field(default_factory=lambda: list(SEEN_LANGUAGES + UNSEEN_LANGUAGES))
    kinds: list[str] = field(default_factory=lambda: ["number", "year", "time"])  # see KIND_VALUES
    items_per_kind: int = 40
    voices: list[str] = field(default_factory=lambda: list(HELDOUT_VOICES))  # unseen in training
    rate: list[int] = field(default_factory=lambda: [140, 200])  # words/min, min and max
    pitch: list[int] = field(default_factory=lambda: [25, 75])  # espeak 0..100, min and max
    max_duration: float = 8.0  # seconds; longer utterances are dropped
    seed: int = 0
    manifest: str | None = None  # TSV of a user's own parallel utterances; nothing is synthesised
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def validate(self) -> None:
        """Fail early, naming the key, instead of after minutes of synthesis."""
        if unknown := [k for k in self.kinds if k not in KIND_VALUES]:
            raise ValueError(f"data.kinds: unknown kind {unknown}; known: {', '.join(KIND_VALUES)}")
        if not self.kinds:
            raise ValueError("data.kinds must name at least one kind")
        if unknown := sorted(set(self.languages) - set(available_languages())):
            raise ValueError(f"data.languages: espeak-ng has no voice file {unknown}")
        if len(set(self.languages)) != len(self.languages) or len(self.languages) < 2:
            raise ValueError(
                f"data.languages={self.languages} must be at least 2 distinct languages"
            )
        if unknown := [v for v in self.voices if v and v not in available_variants()]:
            raise ValueError(f"data.voices: no espeak-ng voice variant {unknown} (see voices/!v)")
        if not self.voices:
            raise ValueError("data.voices must name at least one voice variant")
        most = min(len(KIND_VALUES[k]) for k in self.kinds)
        if not 1 <= self.items_per_kind <= most:
            raise ValueError(f"data.items_per_kind={self.items_per_kind} must be in 1..{most}")
        for key, lo, hi in (("rate", RATE_MIN, RATE_MAX), ("pitch", 0, 100)):
            pair = getattr(self, key)
            if len(pair) != 2 or not lo <= pair[0] <= pair[1] <= hi:
                raise ValueError(
                    f"data.{key}={pair} must be an ordered [min, max] within {lo}..{hi}"
                )
        if self.max_duration <= 0 or self.workers < 1:
            raise ValueError("data.max_duration must be > 0 and data.workers >= 1")
        if self.manifest is not None and not Path(self.manifest).is_file():
            raise FileNotFoundError(f"data.manifest={self.manifest}: no such file")


@dataclass
class ParallelSet:
    """Utterances whose ``items`` ids say which ones mean the same thing across languages."""

    items: list[str]  # meaning id, e.g. "number:27", "year:1984", "time:14:30"
    langs: list[str]
    audio: list[np.ndarray]  # float32 mono at SAMPLE_RATE in [-1, 1]
    ipa: list[str]  # espeak's IPA as spoken ("" when unknown)
    texts: list[str]
    voices: list[str]  # "" for manifest rows

    def __len__(self) -> int:
        return len(self.items)

    def languages(self) -> list[str]:
        return sorted(set(self.langs))

    def rows(self, lang: str) -> list[int]:
        """Indices of ``lang``, ordered by each item's first appearance in the set."""
        rank: dict[str, int] = {}
        for item in self.items:
            rank.setdefault(item, len(rank))
        return sorted(
            (i for i, x in enumerate(self.langs) if x == lang), key=lambda i: rank[self.items[i]]
        )

    def durations(self) -> np.ndarray:
        return np.array([len(a) / SAMPLE_RATE for a in self.audio], dtype=np.float64)

    def save(self, path: Path) -> None:
        """One ``.npz`` (int16 audio, offsets, text columns), written to a temp file and renamed."""
        pcm = [
            np.clip(np.round(a * _PCM_SCALE), -32768, 32767).astype(np.int16) for a in self.audio
        ]
        columns = {
            k: np.array(getattr(self, k), dtype=str)
            for k in ("items", "langs", "ipa", "texts", "voices")
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(
                f, audio=np.concatenate(pcm) if pcm else np.zeros(0, np.int16),
                offsets=np.cumsum([0] + [len(p) for p in pcm]), **columns,
            )  # fmt: skip
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ParallelSet:
        with np.load(path, allow_pickle=False) as z:
            audio, offsets = _npy_to_float(z["audio"]), z["offsets"]
            columns = {k: z[k].tolist() for k in ("items", "langs", "ipa", "texts", "voices")}
        return cls(audio=[audio[a:b] for a, b in itertools.pairwise(offsets)], **columns)


def item_texts(kinds: list[str], per_kind: int, seed: int) -> list[tuple[str, str]]:
    """``per_kind`` seeded distinct values of each kind as ``(item id, digits)``, in value order."""
    out = []
    for kind in kinds:
        values = KIND_VALUES[kind]
        if not 1 <= per_kind <= len(values):
            raise ValueError(
                f"items_per_kind={per_kind}: kind {kind!r} has 1..{len(values)} values"
            )
        chosen = sorted(random.Random(f"{seed}/items/{kind}").sample(range(len(values)), per_kind))
        out += [(f"{kind}:{values[i]}", values[i]) for i in chosen]
    return out


CACHE_EXCLUDED = ("name", "units", "workers", "manifest")  # they do not shape the synthesised set


def cache_path(cfg: ParallelSpeechConfig) -> Path:
    """Where the synthesised set of ``cfg`` is cached (its summary beside it, ``.json``)."""
    spec = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in CACHE_EXCLUDED}
    spec |= {"version": CACHE_VERSION, "espeak": version("espeakng-loader")}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / "parallel_speech" / f"{key}.npz"


def _plan(cfg: ParallelSpeechConfig) -> list[tuple[str, list[dict[str, Any]]]]:
    """Per language, every utterance with its seeded voice, rate and pitch: workers only render."""
    tasks = []
    for lang in cfg.languages:
        rows = []
        for item, text in item_texts(cfg.kinds, cfg.items_per_kind, cfg.seed):
            rng = random.Random(f"{cfg.seed}/speak/{lang}/{item}")
            variant = rng.choice(cfg.voices)
            rows.append({
                "item": item, "text": text, "voice": f"{lang}+{variant}" if variant else lang,
                "rate": rng.randint(*cfg.rate), "pitch": rng.randint(*cfg.pitch),
            })  # fmt: skip
        tasks.append((lang, rows))
    return tasks


def _drop_reason(utt: Utterance, max_duration: float) -> str | None:
    """Why an utterance cannot stand for its item (espeak did not read it natively, or too long)."""
    if any(utt.foreign):
        return "foreign_word"
    if utt.counts["tone_unaligned"]:
        return "tone_unaligned"
    if not utt.ipa:
        return "empty_ipa"
    if any(c.isdigit() or c == "(" for c in utt.ipa):
        return "digit_or_switch_in_ipa"
    if utt.duration > max_duration:
        return "too_long"
    return None


def _speak_language(task: tuple[str, list[dict[str, Any]], float]) -> dict[str, Any]:
    """Speak one language's items (a fresh worker each, so the audio depends on the task only)."""
    lang, rows, max_duration = task
    engine = Espeak.shared()
    out: dict[str, Any] = {"rows": [], "drops": Counter()}
    for row in rows:
        utt = engine.synthesize(
            row["text"], row["voice"], rate=row["rate"], pitch=row["pitch"],
            seed=zlib.crc32(f"{lang}/{row['item']}".encode()),
        )  # fmt: skip
        if reason := _drop_reason(utt, max_duration):
            out["drops"][reason] += 1
            continue
        pcm = np.load(io.BytesIO(_to_pcm16(utt.audio, utt.sample_rate)[0]), allow_pickle=False)
        out["rows"].append((row["item"], lang, pcm, utt.ipa, row["text"], row["voice"]))
    return out


def _synthesise(cfg: ParallelSpeechConfig, progress: bool) -> tuple[ParallelSet, dict[str, Any]]:
    """Render every language in its own worker; rows keep the config's language and item order."""
    started = time.perf_counter()
    tasks = [(lang, rows, cfg.max_duration) for lang, rows in _plan(cfg)]
    parts = _run_pool(_speak_language, tasks, cfg.workers, "parallel speech", progress)
    rows = [r for p in parts for r in p["rows"]]
    parallel = ParallelSet(*([r[k] for r in rows] for k in range(6)))  # rows in field order
    parallel.audio = [_npy_to_float(pcm) for pcm in parallel.audio]  # int16 between processes
    drops = sum((p["drops"] for p in parts), Counter())
    return parallel, _summary(
        parallel, dict(drops.most_common()), round(time.perf_counter() - started, 1)
    )


def _summary(parallel: ParallelSet, drops: dict[str, int], seconds: float | None) -> dict[str, Any]:
    """What the set holds and what it lost, for the run's results."""
    return {
        "utterances": len(parallel),
        "items": len(set(parallel.items)),
        "languages": dict(sorted(Counter(parallel.langs).items())),
        "hours": round(float(parallel.durations().sum()) / 3600, 4),
        "drops": drops,
        "generation_seconds": seconds,
    }


def build_parallel_set(
    cfg: ParallelSpeechConfig, progress: bool = True
) -> tuple[ParallelSet, dict[str, Any]]:
    """The manifest's set, or the synthesised one (cached), and a summary whose
    ``generation_seconds`` is None unless the set was synthesised by this call."""
    if cfg.manifest is not None:
        parallel = read_manifest(cfg.manifest)
        return parallel, _summary(parallel, {}, None)
    path = cache_path(cfg)
    summary_path = path.with_suffix(".json")
    if path.exists() and summary_path.exists():
        cached = json.loads(summary_path.read_text()) | {"generation_seconds": None}
        return ParallelSet.load(path), cached
    cfg.validate()
    parallel, summary = _synthesise(cfg, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = summary_path.with_name(f".{summary_path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, summary_path)
    parallel.save(path)  # last: its presence says the set is complete
    return parallel, summary


def _manifest_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the ``(line number, row)`` pairs of a TSV, empty cells as ""."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [
            (reader.line_num, {k: (v or "").strip() for k, v in r.items() if k}) for r in reader
        ]
    return header, rows


def _row_ipa(row: dict[str, str], where: str) -> str:
    """The row's IPA, else espeak's of its text (``""`` when it has neither)."""
    if row.get("ipa"):
        return normalize_ipa(row["ipa"])
    if not row.get("text"):
        return ""
    try:
        return phonemize(row["text"], row["lang"])
    except ValueError as err:
        raise ValueError(f"{where}: cannot phonemise {row['text']!r}: {err}") from err


def read_manifest(path: str | Path) -> ParallelSet:
    """A user's parallel utterances from a TSV: ``item``, ``lang``, ``audio`` (relative to the
    manifest's folder, or absolute) and optional ``ipa`` and ``text`` (phonemised when no ipa)."""
    path = Path(path)
    header, rows = _manifest_rows(path)
    if missing := [c for c in MANIFEST_COLUMNS if c not in header]:
        raise ValueError(
            f"{path}: line 1: missing column(s) {missing}; required: {', '.join(MANIFEST_COLUMNS)}"
        )
    out = ParallelSet(items=[], langs=[], audio=[], ipa=[], texts=[], voices=[])
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        where = f"{path}: line {line}"
        for key in ("item", "lang"):
            if not row.get(key):
                raise ValueError(f"{where}: empty {key}")
        if (row["item"], row["lang"]) in seen:
            first = seen[row["item"], row["lang"]]
            raise ValueError(
                f"{where}: item {row['item']!r} in {row['lang']!r} repeats line {first}"
            )
        seen[row["item"], row["lang"]] = line
        audio = path.parent / row["audio"]  # an absolute path stays itself
        try:
            wave = load_audio(audio, SAMPLE_RATE)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{where}: {err}") from err
        except ValueError as err:
            raise ValueError(f"{where}: unreadable audio: {err}") from err
        out.ipa.append(_row_ipa(row, where))
        out.items.append(row["item"])
        out.langs.append(row["lang"])
        out.audio.append(wave)
        out.texts.append(row.get("text", ""))
        out.voices.append("")
    if len(out.languages()) < 2:
        raise ValueError(f"{path}: a parallel set needs 2 or more languages, got {out.languages()}")
    return out


class ParallelSpeechDataModule(L.LightningDataModule):
    """The parallel set for ``evaluate`` (the layer probe); nothing is trained on it."""

    Config = ParallelSpeechConfig

    def __init__(
        self, cfg: ParallelSpeechConfig | DictConfig | dict, tokenizer: Any = None
    ) -> None:
        super().__init__()
        self.cfg = as_config(cfg, ParallelSpeechConfig)
        self.cfg.validate()
        self.parallel: ParallelSet | None = None
        self.summary: dict[str, Any] = {}
        self.loaders: list[Any] = []  # the runner sums eval drops over these; none here
        self.generation_seconds: float | None = None

    def prepare_data(self) -> None:
        """Build (or load) the set; ``generation_seconds`` is what building cost (None: cached)."""
        self._build()

    def setup(self, stage: str | None = None) -> None:
        if self.parallel is None:
            self._build()

    def _build(self) -> None:
        self.parallel, self.summary = build_parallel_set(self.cfg)
        self.generation_seconds = self.summary["generation_seconds"]
