"""Held-out words of seen languages said by flite and festival, not espeak; espeak's IPA is gold."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import webdataset as wds
from tqdm import tqdm

from data_modules.schema import SAMPLE_RATE
from phonclip.audio import AudioError, load_audio

OTHER_SYNTH_SPLIT = "test_other_synth"
GENERATOR_VERSION = 1  # bump when the output of the same config changes
SHARD_SIZE = 1000  # clips per tar
BATCH = 50  # texts per synthesizer process: festival loads its voice once per process
SILENCE = 1e-3  # peak amplitude below which a clip counts as empty
APT_PACKAGES = (
    "flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k "
    "festvox-itapc16k festvox-czech-dita festvox-czech-machac festvox-suopuhe-lj "
    "festvox-suopuhe-mv festvox-ca-ona-hts"
)
VOICES = {
    # flite's kal (8 kHz) is kal16's speaker at telephone bandwidth; awb_time says only times of day
    "en": ["flite:slt", "flite:awb", "flite:rms", "flite:kal16", "festival:kal_diphone",
           "festival:ked_diphone", "festival:cmu_us_slt_arctic_hts"],
    "it": ["festival:pc_diphone", "festival:lp_diphone"],
    "cs": ["festival:czech_dita", "festival:czech_machac"],
    "fi": ["festival:suo_fi_lj_diphone", "festival:hy_fi_mv_diphone"],
    "ca": ["festival:upc_ca_ona_hts"],
}  # fmt: skip
# festival voices read text in their legacy charset (UTF-8 bytes become other words: Czech says
# "neznámý" for each); a word the charset lacks is dropped. Unlisted voices (English) get ASCII.
ENCODINGS = {
    "festival:pc_diphone": "latin-1",
    "festival:lp_diphone": "latin-1",
    "festival:czech_dita": "iso-8859-2",
    "festival:czech_machac": "iso-8859-2",
    "festival:suo_fi_lj_diphone": "latin-1",
    "festival:hy_fi_mv_diphone": "latin-1",
    "festival:upc_ca_ona_hts": "iso-8859-15",
}
_FESTIVAL_SAY = """(define (say text path)
  (unwind-protect
    (utt.save.wave (utt.synth (eval (list 'Utterance 'Text text))) path 'riff)
    (format t "failed %s\\n" path)))
"""


@dataclass
class OtherSynthConfig:
    """Which words and voices make the other-synthesizer test set; its hash names the cache dir."""

    seed: int = 0
    words_per_language: int = 100  # distinct test_seen words per language, at most
    renditions: int = 2  # clips per word, each another voice (fewer if the language has fewer)
    voices: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in VOICES.items()}
    )

    def validate(self) -> None:
        """Fail early, naming the bad key."""
        if self.words_per_language < 1 or self.renditions < 1:
            raise ValueError(
                "other_synth.words_per_language and other_synth.renditions must be >= 1"
            )
        for lang, specs in self.voices.items():
            if bad := [s for s in specs if s.partition(":")[0] not in ("flite", "festival")]:
                raise ValueError(
                    f"other_synth.voices.{lang}: {bad} are not 'flite:NAME' or 'festival:NAME'"
                )


class SynthesisError(RuntimeError):
    """A synthesizer could not say a text."""


@dataclass(frozen=True)
class _Clip:
    key: str
    lang: str
    text: str
    ipa: str  # espeak's, from the test_seen clip ``source``
    voice: str
    source: str


def available_voices(cfg: OtherSynthConfig) -> dict[str, list[str]]:
    """The configured voices that an installed synthesizer lists (languages with none left out)."""
    found = {}
    for lang, specs in cfg.voices.items():
        if ok := [s for s in specs if s.partition(":")[2] in _installed(*_engine(s))]:
            found[lang] = ok
    return found


def synthesize(spec: str, text: str) -> np.ndarray:
    """``text`` spoken by ``spec`` ("flite:slt", "festival:kal_diphone") as float32 mono 16 kHz."""
    (wave,), log = _render(spec, [text])
    if isinstance(wave, str):
        raise SynthesisError(f"{spec} could not say {text!r} ({wave}): {log.strip()[-500:]}")
    return wave


def generate_other_synth(
    corpus_root: Path, cfg: OtherSynthConfig, progress: bool = True
) -> Path | None:
    """The directory of test_other_synth shards of the test_seen words of ``corpus_root``, generated
    first if absent (in a temp dir, then renamed); None (and a warning) if no voice can say them."""
    from data_modules import synthetic  # imported late: it imports this module

    cfg.validate()
    corpus_root = Path(corpus_root)
    voices = available_voices(cfg)
    if not voices:
        warnings.warn(
            f"no flite/festival voice for {OTHER_SYNTH_SPLIT}; apt-get install {APT_PACKAGES}",
            stacklevel=2,
        )
        return None
    spec = {
        "config": asdict(cfg),
        "corpus": corpus_root.name,
        "voices": voices,
        "versions": _versions(),
    }
    digest = hashlib.sha256(
        json.dumps(spec, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()[:12]
    final = synthetic.cache_root() / "other_synth" / digest
    if (final / synthetic.MANIFEST).exists():
        return final
    clips = _plan(corpus_root, cfg, voices)
    if not clips:
        warnings.warn(
            f"{corpus_root} has no test_seen words in {sorted(voices)}: no {OTHER_SYNTH_SPLIT}",
            stacklevel=2,
        )
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    synthetic._remove_stale_tmp(final.parent)
    token = f"{socket.gethostname()}-{os.getpid()}-{random.SystemRandom().getrandbits(32):08x}"
    tmp = final.parent / f".{final.name}{synthetic._TMP_MARK}{token}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        kept, drops, drops_by_voice = _write(tmp, clips, progress)
        if not kept:
            warnings.warn(f"every {OTHER_SYNTH_SPLIT} clip failed: {dict(drops)}", stacklevel=2)
            return None
        manifest = spec | {
            "hash": digest,
            "sample_rate": SAMPLE_RATE,
            "clips": sum(sum(c.values()) for c in kept.values()),
            "languages": {lang: dict(sorted(c.items())) for lang, c in sorted(kept.items())},
            "drops": dict(drops.most_common()),
            "drops_by_voice": {v: dict(c.most_common()) for v, c in sorted(drops_by_voice.items())},
            "generation_seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / synthetic.MANIFEST).write_text(
            json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8"
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / synthetic.MANIFEST).exists():  # else a concurrent run finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _plan(root: Path, cfg: OtherSynthConfig, voices: dict[str, list[str]]) -> list[_Clip]:
    """Up to ``words_per_language`` distinct test_seen words per language, with voices drawn."""
    words: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)  # lang -> text -> (ipa, key)
    for key, ipa, meta in _test_seen(root):
        if meta.get("kind") == "word" and meta.get("lang") in voices:
            words[meta["lang"]].setdefault(meta["text"], (ipa, key))
    clips = []
    for lang in sorted(words):
        rng = random.Random(f"{cfg.seed}/other_synth/{lang}")
        texts = rng.sample(sorted(words[lang]), min(cfg.words_per_language, len(words[lang])))
        for text in texts:
            ipa, source = words[lang][text]
            for voice in rng.sample(voices[lang], min(cfg.renditions, len(voices[lang]))):
                key = f"{OTHER_SYNTH_SPLIT}-{lang}-{len(clips):06d}"
                clips.append(_Clip(key, lang, text, ipa, voice, source))
    random.Random(f"{cfg.seed}/other_synth/order").shuffle(clips)
    return clips


def _test_seen(root: Path) -> list[tuple[str, str, dict]]:
    """(key, IPA, meta) of every test_seen clip, in key order; the audio is not read."""
    from data_modules.synthetic import shards  # imported late: it imports this module

    members: dict[str, dict[str, bytes]] = defaultdict(dict)
    for shard in shards(root, "test_seen"):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                if ext in ("txt", "json"):
                    members[key][ext] = tar.extractfile(m).read()
    return [(k, m["txt"].decode(), json.loads(m["json"])) for k, m in sorted(members.items())]


def _write(out: Path, clips: list[_Clip], progress: bool) -> tuple[dict, Counter, dict]:
    """Render clips grouped by voice, write them in plan order; clip counts, drops by reason."""
    by_voice: dict[str, list[_Clip]] = defaultdict(list)
    for clip in clips:
        by_voice[clip.voice].append(clip)
    waves: dict[str, np.ndarray] = {}
    drops: Counter = Counter()
    drops_by_voice: dict[str, Counter] = defaultdict(Counter)
    with tqdm(total=len(clips), desc=OTHER_SYNTH_SPLIT, unit="clip", disable=not progress) as bar:
        for voice, group in sorted(by_voice.items()):
            for i in range(0, len(group), BATCH):
                part = group[i : i + BATCH]
                results, _ = _render(voice, [c.text for c in part])
                for clip, wave in zip(part, results):
                    if isinstance(wave, str):
                        drops[wave] += 1
                        drops_by_voice[voice][wave] += 1
                    else:
                        waves[clip.key] = wave
                bar.update(len(part))
    kept: dict[str, Counter] = defaultdict(Counter)
    written = [c for c in clips if c.key in waves]
    for n in range(0, len(written), SHARD_SIZE):
        path = out / f"{OTHER_SYNTH_SPLIT}-{n // SHARD_SIZE:06d}.tar"
        with wds.TarWriter(str(path), encoder=False, mtime=0, user="", group="", mode=0o644) as tar:
            for clip in written[n : n + SHARD_SIZE]:
                tar.write(_sample(clip, waves[clip.key]))
                kept[clip.lang][clip.voice] += 1
    return kept, drops, drops_by_voice


def _sample(clip: _Clip, wave: np.ndarray) -> dict[str, bytes | str]:
    buf = io.BytesIO()
    np.save(buf, wave.astype(np.float32), allow_pickle=False)
    meta = {
        "lang": clip.lang,
        "text": clip.text,
        "kind": "word",
        "voice": clip.voice,
        "engine": clip.voice.partition(":")[0],
        "split": OTHER_SYNTH_SPLIT,
        "source": clip.source,
    }
    return {
        "__key__": clip.key,
        "npy": buf.getvalue(),
        "txt": clip.ipa.encode(),
        "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode(),
    }


def _render(spec: str, texts: list[str]) -> tuple[list[np.ndarray | str], str]:
    """Each text as 16 kHz float32, or the reason it is unusable; and the synthesizer's messages."""
    engine, binary = _engine(spec)
    name = spec.partition(":")[2]
    if binary is None:
        raise SynthesisError(f"{engine} is not on PATH (apt-get install {APT_PACKAGES})")
    if name not in (voices := _installed(engine, binary)):  # both would speak their default voice
        raise SynthesisError(f"{engine} has no voice {name!r}; it has {', '.join(sorted(voices))}")
    encoding = ENCODINGS.get(spec, "ascii")
    results: list[np.ndarray | str] = []
    with tempfile.TemporaryDirectory(prefix="other_synth-") as d:
        jobs = []  # (text as bytes, where its wav goes)
        for i, text in enumerate(texts):
            try:
                jobs.append((text.encode(encoding), Path(d) / f"{i}.wav"))
            except UnicodeEncodeError:
                jobs.append((b"", None))
        log = _run(engine, binary, name, [j for j in jobs if j[1] is not None])
        for _, path in jobs:
            results.append("unencodable" if path is None else _read(path))
    return results, log


def _run(engine: str, binary: str, name: str, jobs: list[tuple[bytes, Path]]) -> str:
    """Synthesise every (text, path): a flite process per text, one festival process for all."""
    if not jobs:
        return ""
    if engine == "flite":  # flite starts in ~10 ms
        runs = [
            subprocess.run(
                [binary, "-voice", name, "-t", text, "-o", str(path)],
                check=False,
                capture_output=True,
                timeout=60,
            )
            for text, path in jobs
        ]
        return b"".join(r.stderr for r in runs).decode(errors="replace")
    # an unknown voice leaves festival's default speaking: stop instead
    check = f"(voice_{name})\n(if (not (eq? current-voice '{name})) (exit 3))\n"
    script = [check.encode(), _FESTIVAL_SAY.encode()]
    for text, path in jobs:
        quoted = text.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        script.append(b'(say "' + quoted + b'" "' + str(path).encode() + b'")')
    run = subprocess.run(
        [binary, "--pipe"],
        input=b"\n".join(script) + b"\n",
        check=False,
        capture_output=True,
        timeout=60 + 5 * len(jobs),
    )
    return (run.stdout + run.stderr).decode("latin-1")


def _read(path: Path) -> np.ndarray | str:
    if not path.is_file():
        return "synthesis_failed"
    try:
        wave = load_audio(path, SAMPLE_RATE)
    except AudioError:
        return "empty_audio"
    return wave if np.abs(wave).max() >= SILENCE else "empty_audio"


def _engine(spec: str) -> tuple[str, str | None]:
    """("flite" | "festival", its binary on PATH or None)."""
    engine = spec.partition(":")[0]
    return engine, shutil.which(engine)


@functools.cache
def _installed(engine: str, binary: str | None) -> frozenset[str]:
    """Voice names the synthesizer lists (cached per binary, so a changed PATH is seen)."""
    if binary is None:
        return frozenset()
    if engine == "flite":
        out = subprocess.run(
            [binary, "-lv"], check=False, capture_output=True, text=True, timeout=60
        ).stdout
        return frozenset(out.partition(":")[2].split())
    out = subprocess.run(
        [binary, "--pipe"],
        input="(print (voice.list))\n",
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return frozenset(re.findall(r"[^\s()]+", out))


def _versions() -> dict[str, str | int]:
    """The generator's and each installed synthesizer's version, for the cache hash."""
    found: dict[str, str | int] = {"generator": GENERATOR_VERSION}
    for engine in ("flite", "festival"):
        if binary := shutil.which(engine):
            found[engine] = _version(binary)
    return found


@functools.cache
def _version(binary: str) -> str:
    out = subprocess.run(
        [binary, "--version"], check=False, capture_output=True, text=True, timeout=60
    ).stdout
    return " ".join(out.split())
