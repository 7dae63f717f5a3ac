"""The embedded corpus is deterministic, well-formed, split cleanly, and never half-written."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_CORPUS

from data_modules.synthetic import (
    MANIFEST,
    SPLITS,
    SyntheticConfig,
    corpus_dir,
    generate_corpus,
    load_config,
    main,
    shards,
)


def tiny(**overrides) -> SyntheticConfig:
    return SyntheticConfig(**(TINY_CORPUS | overrides))


def read_split(root: Path, split: str) -> list[dict]:
    """Samples of a split in shard order, grouped by key as webdataset does."""
    samples = []
    for shard in shards(root, split):
        with tarfile.open(shard) as tar:
            grouped: dict[str, dict] = {}
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                grouped.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
            samples.extend(grouped.values())
    return samples


def sha256s(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.tar"))
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHONCLIP_CACHE", str(tmp_path_factory.mktemp("cache")))
        return generate_corpus(tiny(workers=2), progress=False)


def test_same_config_gives_byte_identical_shards(corpus: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    again = generate_corpus(tiny(workers=1), progress=False)
    assert again.name == corpus.name and again != corpus
    assert sha256s(again) == sha256s(corpus) and len(sha256s(corpus)) >= len(SPLITS)


def test_cached_corpus_is_reused(corpus: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(corpus.parent.parent))
    before = (corpus / MANIFEST).stat().st_mtime_ns
    assert generate_corpus(tiny(workers=2), progress=False) == corpus
    assert (corpus / MANIFEST).stat().st_mtime_ns == before


def test_every_sample_is_well_formed(corpus: Path) -> None:
    manifest = json.loads((corpus / MANIFEST).read_text())
    for split in SPLITS:
        samples = read_split(corpus, split)
        assert samples, split
        per_lang = Counter()
        for s in samples:
            assert set(s) == {"__key__", "npy", "txt", "json"} and "." not in s["__key__"]
            audio, rate = np.load(io.BytesIO(s["npy"]), allow_pickle=False), 16000
            assert audio.dtype == np.int16 and audio.ndim == 1 and len(audio) > 0
            duration = len(audio) / rate
            ipa = s["txt"].decode()
            meta = json.loads(s["json"])
            assert ipa.strip() and ipa == " ".join(w["ipa"] for w in meta["words"])
            assert meta["split"] == split and len(meta["words"]) == len(meta["text"].split())
            assert meta["kind"] == ("word" if len(meta["words"]) == 1 else "phrase")
            phones = meta["phones"]
            assert "".join(p["ipa"] for p in phones) == ipa.replace(" ", "")
            for p, q in itertools.pairwise(phones):
                assert p["end"] <= q["start"] + 1e-9
            for item in phones + meta["words"]:
                assert 0.0 <= item["start"] <= item["end"] <= duration + 1e-4
            per_lang[meta["lang"]] += 1
        assert dict(per_lang) == manifest["splits"][split]["languages"]
        assert len(samples) == manifest["splits"][split]["clips"]


def test_splits_are_disjoint_where_they_must_be(corpus: Path) -> None:
    metas = {split: [json.loads(s["json"]) for s in read_split(corpus, split)] for split in SPLITS}
    words = defaultdict(set)  # (split, lang) -> word texts
    ipas = defaultdict(set)
    for split, ms in metas.items():
        for m in ms:
            for w in m["words"]:
                words[split, m["lang"]].add(w["text"])
                ipas[split].add(w["ipa"])
    for lang in ("de", "fr"):
        train = words["train", lang]
        assert train and not train & words["test_seen", lang]
        assert words["valid", lang] <= train and words["test_voices", lang] <= train
        assert words["test_phrases", lang] <= words["test_seen", lang]
    word_ipas = {m["words"][0]["ipa"] for m in metas["train"] if m["kind"] == "word"}
    assert not word_ipas & (ipas["test_seen"] | ipas["test_unseen"])
    assert {m["lang"] for m in metas["test_unseen"]} == {"vi"}
    assert {m["lang"] for m in metas["train"]} == {"de", "fr"}
    variant = lambda m: m["voice"].partition("+")[2]
    train_voices = {variant(m) for m in metas["train"]}
    assert train_voices.isdisjoint(variant(m) for m in metas["test_voices"])
    for split in ("test_seen", "test_unseen", "test_voices"):
        renditions = defaultdict(list)  # each test word: test_renditions clips, each its own voice
        for m in metas[split]:
            renditions[m["lang"], m["words"][0]["ipa"]].append(variant(m))
        assert renditions and all(len(set(v)) == len(v) == 2 for v in renditions.values()), split


def test_killed_run_leaves_no_half_corpus(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    final = corpus_dir(tiny(seed=7))
    args = [f"{k}={json.dumps(v)}" for k, v in TINY_CORPUS.items()] + ["seed=7"]
    code = f"from data_modules.synthetic import main; main({args + ['workers=1']!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not list(final.parent.glob(f".{final.name}.tmp-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no temp dir appeared"
        assert not final.exists()
        time.sleep(0.01)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not final.exists(), "the run finished before it was killed"
    assert list(final.parent.glob(f".{final.name}.tmp-*"))

    assert main([*args, "workers=2"]) == 0
    manifest = json.loads((final / MANIFEST).read_text())
    assert not list(final.parent.glob(".*.tmp-*"))
    for split in SPLITS:
        assert len(read_split(final, split)) == manifest["splits"][split]["clips"]


def test_overrides_are_checked() -> None:
    assert load_config(["seed=3", "seen_languages=[de,fr]"]).seen_languages == ["de", "fr"]
    with pytest.raises(Exception, match="no_such_key"):
        load_config(["no_such_key=1"])
    with pytest.raises(ValueError, match="unseen_languages"):
        tiny(unseen_languages=["xx"]).validate()
    with pytest.raises(ValueError, match="heldout_voices"):
        tiny(heldout_voices=["m1"], train_voices=["m1", "m2"]).validate()
    defaults = SyntheticConfig()
    assert len(defaults.seen_languages) + len(defaults.unseen_languages) >= 30
    assert defaults.unseen_languages == ["vi", "ta", "fa", "da", "lt", "ro", "uk"]
    defaults.validate()
