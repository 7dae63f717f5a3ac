"""Bad data never crashes a run: every kind of broken sample is skipped and counted exactly, good ones all arrive."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shards import encode_audio, good_samples, members, tone, write_shards

from data_modules.ipapack import AUDIO_EXTS, Dropped, IpapackDataModule, SampleFilter, ShardDataset
from data_modules.quality import DROP_KINDS
from data_modules.schema import Sample
from phonclip.ipa import IpaTokenizer


def bad_samples() -> tuple[list[dict], Counter]:
    """One raw sample per way of being broken, and the drop kinds they must produce."""
    ok = tone(0.5)

    def raw(key: str, **files: bytes) -> dict:
        return {"__key__": key, **files}

    npy, txt = encode_audio(ok, "npy"), b"pa"
    flac = encode_audio(ok, "flac")
    empty_npy = io.BytesIO()
    np.save(empty_npy, np.zeros(0, dtype=np.float32))
    cases = [
        (raw("garbage", npy=b"\x93NUMPY not really", txt=txt), "corrupt_audio"),
        (raw("garbage_flac", flac=b"fLaC" + bytes(range(200)), txt=txt), "corrupt_audio"),
        (raw("truncated_flac", flac=flac[: len(flac) // 2], txt=txt), "corrupt_audio"),
        (raw("zero_bytes", wav=b"", txt=txt), "empty_audio"),
        (raw("zero_samples", npy=empty_npy.getvalue(), txt=txt), "empty_audio"),
        (
            raw("nan", npy=encode_audio(np.full(8000, np.nan, dtype=np.float32), "npy"), txt=txt),
            "nan_audio",
        ),
        (
            raw("inf", npy=encode_audio(np.r_[ok, np.inf].astype(np.float32), "npy"), txt=txt),
            "nan_audio",
        ),
        (raw("empty_ipa", npy=npy, txt=b""), "empty_ipa"),
        (raw("invisible_ipa", npy=npy, txt=" \u200d (en) ".encode()), "empty_ipa"),
        (raw("no_txt", npy=npy), "missing_ipa"),
        (raw("no_audio", txt=txt), "missing_audio"),
        (raw("only_json", json=b"{}"), "missing_audio"),
        (raw("unknown", npy=npy, txt="pa☃ʬ".encode()), "unknown_symbols"),
        (raw("too_short", npy=encode_audio(tone(0.05), "npy"), txt=txt), "too_short"),
        (raw("too_long", npy=encode_audio(tone(3.0), "npy"), txt=txt), "too_long"),
        (raw("bad_json", npy=npy, txt=txt, json=b"{not json"), "corrupt_meta"),
        (raw("list_json", npy=npy, txt=txt, json=b"[1, 2]"), "corrupt_meta"),
        (
            raw("excluded", npy=npy, txt=txt, json=json.dumps({"lang": "zz"}).encode()),
            "language_filtered",
        ),
    ]
    return [c for c, _ in cases], Counter(kind for _, kind in cases)


@pytest.mark.parametrize(
    ("num_workers", "batch_size", "num_buckets"), [(0, 2, 16), (2, 2, 16), (2, 100, 1)]
)
def test_every_bad_sample_is_counted_and_every_good_one_arrives(
    tmp_path, num_workers, batch_size, num_buckets
):
    bad, expected = bad_samples()
    good = [members(s) for s in good_samples(9)]
    mixed = [x for pair in zip(good, bad) for x in pair] + bad[len(good) :]
    # one shard holds only bad samples, read last or by a worker of its own: its drops must still arrive
    write_shards(tmp_path / "train", good + bad[:3], 100, prefix="a")
    write_shards(tmp_path / "train", bad[3:], 100, prefix="b")
    write_shards(tmp_path / "test", mixed, 7)
    cfg = {
        "train": [str(tmp_path / "train")],
        "test": {"mixed": [str(tmp_path / "test")]},
        "max_duration": 2.0,
        "drop_unknown": True,
        "exclude_languages": ["zz"],
        "num_workers": num_workers,
        "batch_size": batch_size,  # 100 in one bucket: one batch per worker, the bad-only worker reports last
        "num_buckets": num_buckets,
    }
    dm = IpapackDataModule(cfg, IpaTokenizer())
    for loader in (dm.train_dataloader(), dm.test_sets()["mixed"]):
        keys, dropped = Counter(), Counter()
        for batch in loader:
            keys.update(batch["key"])
            dropped.update(batch["dropped"])
        assert keys == Counter(g["__key__"] for g in good)
        assert dropped == expected
        assert loader.drop_totals == expected
    assert dm.drop_totals() == {kind: 2 * n for kind, n in expected.items()}
    assert set(expected) <= set(DROP_KINDS) - {"empty_text"}


def test_epoch_batches_cycles_the_stream_to_a_fixed_length(tmp_path):
    write_shards(tmp_path / "train", good_samples(5), 5)
    cfg = {
        "train": [str(tmp_path / "train")],
        "num_workers": 0,
        "batch_size": 2,
        "num_buckets": 1,
        "epoch_batches": 7,
    }
    loader = IpapackDataModule(cfg, IpaTokenizer()).train_dataloader()
    batches = list(loader)
    assert len(batches) == 7 and loader.passes == 3  # 3 batches per pass over 5 clips
    assert len(list(loader)) == 7


def test_epoch_batches_fails_loudly_when_nothing_survives(tmp_path):
    write_shards(tmp_path / "train", good_samples(3), 3)
    cfg = {
        "train": [str(tmp_path / "train")],
        "num_workers": 0,
        "epoch_batches": 2,
        "min_duration": 5.0,
    }
    with pytest.raises(RuntimeError, match="too_short"):
        list(IpapackDataModule(cfg, IpaTokenizer()).train_dataloader())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    audio=st.binary(max_size=300),
    ext=st.sampled_from(AUDIO_EXTS),
    ipa=st.text(max_size=12),
    lang=st.sampled_from(["", "en", "zz"]),
)
def test_random_members_either_make_a_sample_or_a_counted_drop(audio, ext, ipa, lang):
    sample_filter = SampleFilter(min_duration=0.0, exclude_languages=("zz",), drop_unknown=True)
    try:
        sample = sample_filter.make_sample("k", audio, ext, ipa, "", lang, {})
    except Dropped as drop:
        assert drop.kind in DROP_KINDS
    else:
        assert isinstance(sample, Sample) and sample.ipa and np.isfinite(sample.audio).all()


def test_an_unreadable_shard_is_warned_about_and_skipped(tmp_path):
    write_shards(tmp_path, good_samples(4), 2)
    (tmp_path / "shard-000002.tar").write_bytes(b"this is not a tar archive" * 40)
    dataset = ShardDataset([str(p) for p in sorted(tmp_path.glob("*.tar"))], SampleFilter())
    with pytest.warns(UserWarning, match="shard-000002"):
        keys = [s.key for s in dataset]
    assert keys == [s.key for s in good_samples(4)]
