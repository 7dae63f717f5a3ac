"""The offline default corpus: espeak-ng speaks wordfreq words and phrases into IPAPACK shards."""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import sys
import time
import unicodedata
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
import webdataset as wds
import wordfreq
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from data_modules.espeak import (
    RATE_MAX,
    RATE_MIN,
    Espeak,
    Utterance,
    available_languages,
    available_variants,
)
from data_modules.ipapack import IpapackConfig, IpapackDataModule, StreamConfig, as_config
from data_modules.other_synth import OTHER_SYNTH_SPLIT, OtherSynthConfig, generate_other_synth
from data_modules.schema import SAMPLE_RATE

GENERATOR_VERSION = 2  # bump when the output of the same config changes
SPLITS = ("train", "valid", "test_seen", "test_unseen", "test_voices", "test_phrases")
WORDFREQ_CODES = {"hr": "sh"}  # wordfreq files Croatian under Serbo-Croatian
MANIFEST = "manifest.json"
_TMP_MARK = ".tmp-"

SEEN_LANGUAGES = [
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "cs", "ru", "tr",
    "fi", "hu", "el", "id", "ca", "hr", "bg", "sk", "nb", "lv", "sl", "is",
]  # fmt: skip
UNSEEN_LANGUAGES = ["vi", "ta", "fa", "da", "lt", "ro", "uk"]
TRAIN_VOICES = [
    "", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4",
    "klatt", "klatt2", "klatt3", "croak", "steph", "john", "linda", "david", "paul", "belinda",
]  # fmt: skip
HELDOUT_VOICES = ["m7", "f5", "klatt4", "grandma", "iven", "max"]


@dataclass
class SyntheticConfig:
    """Every knob of the embedded corpus; its hash (less ``workers``) names the cache directory."""

    seed: int = 0
    seen_languages: list[str] = field(default_factory=lambda: list(SEEN_LANGUAGES))
    unseen_languages: list[str] = field(default_factory=lambda: list(UNSEEN_LANGUAGES))
    words_per_language: int = 600  # distinct-IPA frequent words kept per seen language
    heldout_word_fraction: float = 0.15  # of those, never trained on (test_seen)
    unseen_words_per_language: int = 130  # per unseen language, before dropping IPA seen in train
    renditions_per_word: int = 4  # train clips per train word, each a different voice
    test_renditions: int = 2  # clips per test word (test_seen, test_unseen, test_voices): speech→speech
    valid_words_per_language: int = 20
    test_voices_words_per_language: int = 25
    train_phrases_per_language: int = 100  # phrase clips of train words (aligner training)
    phrases_per_language: int = 20  # test_phrases: held-out words (seen) or unseen words
    phrase_words: list[int] = field(default_factory=lambda: [2, 6])  # min, max words
    train_voices: list[str] = field(default_factory=lambda: list(TRAIN_VOICES))  # "" = default
    heldout_voices: list[str] = field(default_factory=lambda: list(HELDOUT_VOICES))
    rate: list[int] = field(default_factory=lambda: [120, 240])  # words/min, min and max
    pitch: list[int] = field(default_factory=lambda: [25, 75])  # espeak 0..100, min and max
    intonation: list[int] = field(default_factory=lambda: [25, 75])  # espeak pitch range
    keep_stress: bool = False  # IPAPACK transcriptions carry no stress marks
    ties: bool = False  # U+0361 inside multi-letter phonemes (t͡ʃ)
    min_word_chars: int = 2
    min_duration: float = 0.1  # seconds
    max_duration: float = 8.0
    shard_size: int = 1000  # clips per tar
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def validate(self) -> None:
        """Fail early, naming the bad key, instead of half-way through generation."""
        espeak_langs, variants = set(available_languages()), set(available_variants())
        wordfreq_langs = set(wordfreq.available_languages())
        for key in ("seen_languages", "unseen_languages"):
            for lang in getattr(self, key):
                if lang not in espeak_langs:
                    raise ValueError(f"{key}: espeak-ng has no voice file {lang!r}")
                if WORDFREQ_CODES.get(lang, lang) not in wordfreq_langs:
                    raise ValueError(f"{key}: wordfreq has no word list for {lang!r}")
        if overlap := set(self.seen_languages) & set(self.unseen_languages):
            raise ValueError(f"seen_languages and unseen_languages share {sorted(overlap)}")
        for key in ("train_voices", "heldout_voices"):
            if bad := [v for v in getattr(self, key) if v and v not in variants]:
                raise ValueError(f"{key}: no espeak-ng voice variant {bad} (see voices/!v)")
        if overlap := set(self.train_voices) & set(self.heldout_voices):
            raise ValueError(f"train_voices and heldout_voices share {sorted(overlap)}")
        if not self.train_voices or not self.heldout_voices:
            raise ValueError("train_voices and heldout_voices must each name at least one voice")
        if not 0.0 < self.heldout_word_fraction < 1.0:
            raise ValueError(
                f"heldout_word_fraction={self.heldout_word_fraction} must be in (0, 1)"
            )
        for key, lo, hi in (
            ("rate", RATE_MIN, RATE_MAX),
            ("pitch", 0, 100),
            ("intonation", 0, 100),
        ):
            a, b = getattr(self, key)
            if not lo <= a <= b <= hi:
                raise ValueError(f"{key}={[a, b]} must be an ordered [min, max] within {lo}..{hi}")
        if not 1 <= self.phrase_words[0] <= self.phrase_words[1]:
            raise ValueError(f"phrase_words={self.phrase_words} must be an ordered [min, max] >= 1")
        for key, voices in (
            ("renditions_per_word", "train_voices"),
            ("test_renditions", "train_voices"),
            ("test_renditions", "heldout_voices"),
        ):
            if not 1 <= getattr(self, key) <= len(getattr(self, voices)):
                raise ValueError(
                    f"{key}={getattr(self, key)} must be between 1 and the "
                    f"{len(getattr(self, voices))} {voices} (each rendition uses a different voice)"
                )
        if self.shard_size < 1 or self.workers < 1:
            raise ValueError("shard_size and workers must be >= 1")


@dataclass(frozen=True)
class Word:
    """A frequent word espeak reads natively, with the IPA it speaks."""

    text: str
    ipa: str


@dataclass(frozen=True)
class Clip:
    """One planned clip: everything random is drawn here, so workers only render."""

    key: str
    split: str
    lang: str
    kind: str  # "word" | "phrase"
    words: tuple[str, ...]
    voice: str
    rate: int
    pitch: int
    intonation: int


def cache_root() -> Path:
    """``$PHONCLIP_CACHE``, or ``~/.cache/phonclip``."""
    return Path(os.environ.get("PHONCLIP_CACHE") or Path.home() / ".cache" / "phonclip")


def config_hash(cfg: SyntheticConfig) -> str:
    """Short hash of everything that shapes the output (not ``workers``)."""
    spec = {k: v for k, v in asdict(cfg).items() if k != "workers"}
    spec["versions"] = _versions()
    blob = json.dumps(spec, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def corpus_dir(cfg: SyntheticConfig) -> Path:
    """Where the corpus of ``cfg`` lives once complete."""
    return cache_root() / "corpus" / config_hash(cfg)


def shards(root: Path, split: str) -> list[Path]:
    """The shard files of one split, in order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return sorted((Path(root) / split).glob("shard-*.tar"))


def generate_corpus(cfg: SyntheticConfig, progress: bool = True) -> Path:
    """The corpus directory of ``cfg``, generated first if absent; built in a temp dir and renamed
    into place so an interrupted or concurrent run never leaves a half corpus."""
    cfg.validate()
    final = corpus_dir(cfg)
    if (final / MANIFEST).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(final.parent)
    token = f"{socket.gethostname()}-{os.getpid()}-{random.SystemRandom().getrandbits(32):08x}"
    tmp = final.parent / f".{final.name}{_TMP_MARK}{token}"
    tmp.mkdir()
    try:
        _generate_into(cfg, tmp, progress)
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent run finished first
            if not (final / MANIFEST).exists():
                raise RuntimeError(
                    f"{final} exists but has no {MANIFEST}: it is not a corpus this generator "
                    f"wrote; remove it and retry"
                ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _remove_stale_tmp(parent: Path) -> None:
    """Temp dirs of killed runs on this host (their pid is gone) are removed."""
    host = socket.gethostname()
    for path in parent.glob(f".*{_TMP_MARK}{host}-*"):
        pid = int(path.name.rsplit(_TMP_MARK, 1)[1][len(host) + 1 :].split("-")[0])
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _versions() -> dict[str, Any]:
    return {
        "generator": GENERATOR_VERSION,
        "espeakng-loader": version("espeakng-loader"),
        "wordfreq": version("wordfreq"),
    }


def _generate_into(cfg: SyntheticConfig, out: Path, progress: bool) -> None:
    start = time.perf_counter()
    drops: dict[str, Counter] = defaultdict(Counter)
    cleanup: Counter = Counter()
    # espeak's pitch flutter runs on across utterances, so every task runs in a fresh worker
    # process: its output then depends on its inputs only, never on scheduling.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["data_modules.synthetic"])
    with ctx.Pool(processes=cfg.workers, maxtasksperchild=1) as pool:
        targets = {lang: cfg.words_per_language for lang in cfg.seen_languages}
        targets |= {lang: cfg.unseen_words_per_language for lang in cfg.unseen_languages}
        tasks = [(lang, n, _render_options(cfg)) for lang, n in targets.items()]
        vocab: dict[str, list[Word]] = {}
        bar = tqdm(total=len(tasks), desc="vocabulary", unit="lang", disable=not progress)
        for lang, words, dropped in pool.imap(_plan_language, tasks):
            vocab[lang] = words
            drops[lang].update(dropped)
            bar.update()
        bar.close()
        vocabulary_s = time.perf_counter() - start
        plan = plan_clips(cfg, vocab, drops)
        jobs = []
        for split in SPLITS:
            (out / split).mkdir()
            clips = plan[split]
            for i in range(math.ceil(len(clips) / cfg.shard_size)):
                part = clips[i * cfg.shard_size : (i + 1) * cfg.shard_size]
                jobs.append((out / split / f"shard-{i:06d}.tar", part, _render_options(cfg)))
        counts: dict[str, Counter] = {split: Counter() for split in SPLITS}
        seconds: Counter = Counter()
        bar = tqdm(
            total=sum(len(j[1]) for j in jobs), desc="clips", unit="clip", disable=not progress
        )
        for split, n_planned, kept, dropped, cleaned, audio_s in pool.imap_unordered(
            _write_shard, jobs
        ):
            counts[split].update(kept)
            seconds[split] += audio_s
            for lang, c in dropped.items():
                drops[lang].update(c)
            cleanup.update(cleaned)
            bar.update(n_planned)
        bar.close()
    manifest = {
        "config": asdict(cfg),
        "hash": config_hash(cfg),
        "versions": _versions(),
        "sample_rate": SAMPLE_RATE,
        "splits": {
            split: {
                "clips": sum(counts[split].values()),
                "shards": len(shards(out, split)),
                "hours": round(seconds[split] / 3600, 4),
                "languages": dict(sorted(counts[split].items())),
            }
            for split in SPLITS
        },
        "drops": dict(sum(drops.values(), Counter()).most_common()),
        "drops_by_language": {lang: dict(c.most_common()) for lang, c in sorted(drops.items())},
        "cleanup": dict(cleanup.most_common()),
        "bytes": sum(p.stat().st_size for p in out.rglob("*.tar")),
        "generation_seconds": round(time.perf_counter() - start, 2),
        "vocabulary_seconds": round(vocabulary_s, 2),  # choosing words; the rest renders clips
    }
    path = out / MANIFEST
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def plan_clips(
    cfg: SyntheticConfig, vocab: dict[str, list[Word]], drops: dict[str, Counter]
) -> dict[str, list[Clip]]:
    """Assign words to splits and draw every clip's voice, rate and pitch from seeded RNGs.

    Held-out and unseen words whose IPA a train word (of any language) already has, or that an
    earlier gallery word has, are dropped so each test gallery holds distinct, untrained IPA."""
    heldout: dict[str, list[Word]] = {}
    train: dict[str, list[Word]] = {}
    for lang in cfg.seen_languages:
        words = vocab[lang]
        order = list(range(len(words)))
        random.Random(f"{cfg.seed}/heldout/{lang}").shuffle(order)
        n_heldout = math.ceil(cfg.heldout_word_fraction * len(words))
        chosen = set(order[:n_heldout])
        heldout[lang] = [w for i, w in enumerate(words) if i in chosen]
        train[lang] = [w for i, w in enumerate(words) if i not in chosen]
    taken = {w.ipa for ws in train.values() for w in ws}
    test_seen = {lang: _gallery(heldout[lang], taken, drops[lang]) for lang in cfg.seen_languages}
    unseen = {lang: _gallery(vocab[lang], taken, drops[lang]) for lang in cfg.unseen_languages}

    plan = _Plan(cfg)
    for lang in cfg.seen_languages:
        rng = random.Random(f"{cfg.seed}/clips/{lang}")
        for w in train[lang]:
            plan.add("train", lang, (w.text,), cfg.train_voices, rng, cfg.renditions_per_word)
        for words in _phrases(train[lang], cfg.train_phrases_per_language, cfg.phrase_words, rng):
            plan.add("train", lang, words, cfg.train_voices, rng)
        for w in _sample(train[lang], cfg.valid_words_per_language, rng):
            plan.add("valid", lang, (w.text,), cfg.train_voices, rng)
        for w in _sample(train[lang], cfg.test_voices_words_per_language, rng):
            plan.add("test_voices", lang, (w.text,), cfg.heldout_voices, rng, cfg.test_renditions)
        for w in test_seen[lang]:
            plan.add("test_seen", lang, (w.text,), cfg.train_voices, rng, cfg.test_renditions)
        for words in _phrases(test_seen[lang], cfg.phrases_per_language, cfg.phrase_words, rng):
            plan.add("test_phrases", lang, words, cfg.train_voices, rng)
    for lang in cfg.unseen_languages:
        rng = random.Random(f"{cfg.seed}/clips/{lang}")
        for w in unseen[lang]:
            plan.add("test_unseen", lang, (w.text,), cfg.train_voices, rng, cfg.test_renditions)
        for words in _phrases(unseen[lang], cfg.phrases_per_language, cfg.phrase_words, rng):
            plan.add("test_phrases", lang, words, cfg.train_voices, rng)
    for split, clips in plan.clips.items():
        random.Random(f"{cfg.seed}/order/{split}").shuffle(clips)
    return plan.clips


class _Plan:
    """Clips per split, keyed ``<split>-<lang>-<n>``; each rendition of a text has its own voice."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg
        self.clips: dict[str, list[Clip]] = {split: [] for split in SPLITS}
        self._next: Counter = Counter()

    def add(
        self,
        split: str,
        lang: str,
        words: tuple[str, ...],
        voices: list[str],
        rng: random.Random,
        renditions: int = 1,
    ) -> None:
        for variant in rng.sample(voices, renditions):
            n = self._next[split, lang]
            self._next[split, lang] += 1
            self.clips[split].append(
                Clip(
                    key=f"{split}-{lang}-{n:06d}",
                    split=split,
                    lang=lang,
                    kind="word" if len(words) == 1 else "phrase",
                    words=words,
                    voice=f"{lang}+{variant}" if variant else lang,
                    rate=rng.randint(*self.cfg.rate),
                    pitch=rng.randint(*self.cfg.pitch),
                    intonation=rng.randint(*self.cfg.intonation),
                )
            )


def _gallery(words: list[Word], taken: set[str], drops: Counter) -> list[Word]:
    kept = []
    for w in words:
        if w.ipa in taken:
            drops["ipa_seen_elsewhere"] += 1
            continue
        taken.add(w.ipa)
        kept.append(w)
    return kept


def _sample(words: list[Word], n: int, rng: random.Random) -> list[Word]:
    return rng.sample(words, min(n, len(words)))


def _phrases(
    words: list[Word], n: int, length: list[int], rng: random.Random
) -> list[tuple[str, ...]]:
    if len(words) < length[0]:
        return []
    sizes = [rng.randint(length[0], min(length[1], len(words))) for _ in range(n)]
    return [tuple(w.text for w in rng.sample(words, k)) for k in sizes]


def _render_options(cfg: SyntheticConfig) -> dict[str, Any]:
    return {
        "keep_stress": cfg.keep_stress,
        "ties": cfg.ties,
        "min_word_chars": cfg.min_word_chars,
        "min_duration": cfg.min_duration,
        "max_duration": cfg.max_duration,
    }


def _is_word(text: str, min_chars: int) -> bool:
    return len(text) >= min_chars and all(unicodedata.category(c)[0] in "LM" for c in text)


def _check(utt: Utterance, n_words: int, opts: dict[str, Any]) -> str | None:
    """Why a synthesised clip cannot be used, or None."""
    if any(utt.foreign):
        return "foreign_word"
    if utt.counts["tone_unaligned"]:
        return "tone_unaligned"
    if not utt.phones:
        return "empty_ipa"
    if len(utt.words) != n_words:
        return "word_split"
    if utt.duration < opts["min_duration"]:
        return "too_short"
    if utt.duration > opts["max_duration"]:
        return "too_long"
    return None


def _plan_language(task: tuple[str, int, dict[str, Any]]) -> tuple[str, list[Word], Counter]:
    """The ``n`` most frequent words of a language that espeak reads natively, distinct in IPA."""
    lang, n, opts = task
    engine = Espeak.shared()
    words: list[Word] = []
    seen_ipa: set[str] = set()
    drops: Counter = Counter()
    for text in wordfreq.top_n_list(WORDFREQ_CODES.get(lang, lang), max(5 * n, 1000)):
        if len(words) >= n:
            break
        if not _is_word(text, opts["min_word_chars"]):
            drops["not_a_word"] += 1
            continue
        utt = engine.synthesize(text, lang, keep_stress=opts["keep_stress"], ties=opts["ties"])
        reason = _check(utt, 1, opts) or ("duplicate_ipa" if utt.ipa in seen_ipa else None)
        if reason:
            drops[reason] += 1
            continue
        seen_ipa.add(utt.ipa)
        words.append(Word(text, utt.ipa))
    return lang, words, drops


_resampler: torchaudio.transforms.Resample | None = None


def _to_pcm16(audio: np.ndarray, rate: int) -> tuple[bytes, int]:
    """int16 at espeak's rate -> 16 kHz int16 ``.npy`` bytes and their length: loading one costs a
    quarter of decoding FLAC, and the DataLoader worker decodes beside training (docs/TUNING.md)."""
    global _resampler
    if _resampler is None or _resampler.orig_freq != rate:
        torch.set_num_threads(1)
        _resampler = torchaudio.transforms.Resample(rate, SAMPLE_RATE)
    with torch.no_grad():
        wave = _resampler(torch.from_numpy(audio.astype(np.float32) / 32768.0))
    pcm = (wave.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy()
    buf = io.BytesIO()
    np.save(buf, pcm, allow_pickle=False)
    return buf.getvalue(), len(pcm)


def _write_shard(
    job: tuple[Path, list[Clip], dict[str, Any]],
) -> tuple[str, int, Counter, dict[str, Counter], Counter, float]:
    """Render and write one shard; clips are spoken grouped by voice (switching language reloads a
    dictionary) but stored in planned order."""
    path, clips, opts = job
    engine = Espeak.shared()
    rendered: dict[str, dict[str, bytes]] = {}
    kept: Counter = Counter()
    drops: dict[str, Counter] = defaultdict(Counter)
    cleanup: Counter = Counter()
    seconds = 0.0
    for clip in sorted(clips, key=lambda c: (c.voice, c.key)):
        text = " ".join(clip.words)
        utt = engine.synthesize(
            text,
            clip.voice,
            rate=clip.rate,
            pitch=clip.pitch,
            pitch_range=clip.intonation,
            keep_stress=opts["keep_stress"],
            ties=opts["ties"],
            seed=zlib.crc32(clip.key.encode()),
        )
        if reason := _check(utt, len(clip.words), opts):
            drops[clip.lang][reason] += 1
            continue
        cleanup.update(utt.counts)
        pcm, n = _to_pcm16(utt.audio, utt.sample_rate)
        seconds += n / SAMPLE_RATE
        rendered[clip.key] = {
            "__key__": clip.key,
            "npy": pcm,
            "txt": utt.ipa.encode(),
            "json": json.dumps(
                _meta(clip, utt, n / SAMPLE_RATE), ensure_ascii=False, sort_keys=True
            ).encode(),
        }
        kept[clip.lang] += 1
    with wds.TarWriter(str(path), encoder=False, mtime=0, user="", group="", mode=0o644) as tar:
        for clip in clips:
            if clip.key in rendered:
                tar.write(rendered[clip.key])
    split = clips[0].split if clips else ""
    return split, len(clips), kept, dict(drops), cleanup, seconds


def _meta(clip: Clip, utt: Utterance, duration: float) -> dict[str, Any]:
    """The clip's ``.json``: how it was spoken, and word and phone timings in seconds."""

    def t(x: float) -> float:
        return min(round(x, 5), duration)  # inside the resampled clip

    return {
        "lang": clip.lang,
        "text": " ".join(clip.words),
        "kind": clip.kind,
        "voice": clip.voice,
        "rate": clip.rate,
        "pitch": clip.pitch,
        "intonation": clip.intonation,
        "split": clip.split,
        "words": [
            {"text": w, "ipa": ipa, "start": t(s), "end": t(e)}
            for w, ipa, (s, e) in zip(clip.words, utt.word_ipa, utt.words)
        ],
        "phones": [{"ipa": p, "start": t(s), "end": t(e)} for p, s, e in utt.phones],
    }


def load_config(overrides: list[str]) -> SyntheticConfig:
    """``SyntheticConfig`` with OmegaConf dotlist overrides (``key=value``); unknown keys fail."""
    base = OmegaConf.structured(SyntheticConfig)
    merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, SyntheticConfig)
    return cfg


def summary(manifest: dict[str, Any]) -> str:
    """A plain-text table of clips, hours and languages per split."""
    rows = [f"{'split':<14}{'clips':>8}{'hours':>8}{'langs':>7}{'shards':>8}"]
    for split, s in manifest["splits"].items():
        rows.append(
            f"{split:<14}{s['clips']:>8}{s['hours']:>8.2f}{len(s['languages']):>7}{s['shards']:>8}"
        )
    drops = ", ".join(f"{k}={v}" for k, v in manifest["drops"].items()) or "none"
    cleanup = ", ".join(f"{k}={v}" for k, v in manifest["cleanup"].items()) or "none"
    rows += [
        f"size {manifest['bytes'] / 1e6:.1f} MB, generated in {manifest['generation_seconds']} s",
        f"dropped: {drops}",
        f"clean-up: {cleanup}",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``phonclip corpus [key=value ...]``: generate (or find cached) the corpus, print where."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(
            "usage: phonclip corpus [key=value ...]   keys:", ", ".join(asdict(SyntheticConfig()))
        )
        return 0
    root = generate_corpus(load_config(argv))
    print(root)
    print(summary(json.loads((root / MANIFEST).read_text(encoding="utf-8"))))
    return 0


@dataclass
class SyntheticDataConfig(StreamConfig):
    """The embedded corpus as a DataModule: generator settings plus the reader's filters and batching."""

    name: str = "synthetic"
    corpus: SyntheticConfig = field(default_factory=SyntheticConfig)
    # test_other_synth: held-out words said by flite/festival, never trained on; left out with a
    # warning where those synthesizers are not installed
    test_splits: list[str] = field(
        default_factory=lambda: ["test_seen", "test_unseen", "test_voices", "test_phrases", OTHER_SYNTH_SPLIT]
    )
    other_synth: OtherSynthConfig = field(default_factory=OtherSynthConfig)


class SyntheticDataModule(IpapackDataModule):
    """Generates (or finds cached) the espeak corpus, then reads its splits as IPAPACK shards."""

    Config = SyntheticDataConfig

    def __init__(self, cfg: SyntheticDataConfig | DictConfig | dict, tokenizer: Any) -> None:
        synthetic = as_config(cfg, SyntheticDataConfig)
        known = (*SPLITS, OTHER_SYNTH_SPLIT)
        unknown = sorted(set(synthetic.test_splits) - set(known))
        if unknown:
            raise ValueError(f"data.test_splits has unknown splits {unknown}; known: {', '.join(known)}")
        stream = {k: v for k, v in asdict(synthetic).items() if k in StreamConfig.__dataclass_fields__}
        super().__init__(IpapackConfig(**stream, train=[], valid=[], test={}), tokenizer)
        self.synthetic = synthetic
        self.generation_seconds: float | None = None  # what generating the corpus took here (None: cached)

    def prepare_data(self) -> None:
        self._corpus()

    def setup(self, stage: str | None = None) -> None:
        root = self._corpus()  # cached after prepare_data: a manifest check
        self.cfg.train = [str(p) for p in shards(root, "train")]
        self.cfg.valid = [str(p) for p in shards(root, "valid")]
        self.cfg.test = {}
        for split in self.synthetic.test_splits:
            if split != OTHER_SYNTH_SPLIT:
                self.cfg.test[split] = [str(p) for p in shards(root, split)]
            elif other := generate_other_synth(root, self.synthetic.other_synth):  # None: no voice
                self.cfg.test[split] = [str(other)]

    def _corpus(self) -> Path:
        """The corpus directory, generated first if absent (then ``generation_seconds`` says how long
        that took, as the other generating DataModules report it)."""
        cached = (corpus_dir(self.synthetic.corpus) / MANIFEST).exists()
        root = generate_corpus(self.synthetic.corpus)
        if not cached:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
            self.generation_seconds = manifest["generation_seconds"]
        return root
