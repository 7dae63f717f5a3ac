"""IPAPACK shard reader: every audio format, shard patterns, rank × worker splitting, shuffling and the batch schema."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from shards import good_samples, tone, write_shards

from data_modules.bucketing import DurationBucketer
from data_modules.ipapack import (
    Batches,
    BatchLoader,
    IpapackConfig,
    IpapackDataModule,
    SampleFilter,
    ShardDataset,
    expand_shards,
)
from data_modules.schema import Sample
from phonclip.ipa import IpaTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> IpaTokenizer:
    return IpaTokenizer()


def read_all(urls, **kwargs) -> list[Sample]:
    return list(ShardDataset([str(u) for u in urls], SampleFilter(), **kwargs))


@pytest.mark.parametrize(
    ("audio_format", "npy_dtype", "atol"),
    [
        ("npy", "float32", 0.0),
        ("npy", "int16", 1e-4),
        ("flac", "float32", 1e-4),
        ("wav", "float32", 1e-4),
    ],
)
@pytest.mark.parametrize("with_json", [True, False])
def test_reader_decodes_every_audio_format(tmp_path, audio_format, npy_dtype, atol, with_json):
    samples = good_samples(5)
    urls = write_shards(
        tmp_path, samples, 2, audio_format, npy_dtype=npy_dtype, with_json=with_json
    )
    got = read_all(urls)
    assert [s.key for s in got] == [s.key for s in samples]
    for ours, theirs in zip(got, samples):
        assert ours.audio.dtype == np.float32
        np.testing.assert_allclose(ours.audio, theirs.audio, atol=atol)
        assert ours.ipa == theirs.ipa
        assert (ours.lang, ours.text) == ((theirs.lang, theirs.text) if with_json else ("", ""))
        assert ours.meta == (
            {"lang": "xx", "text": theirs.text, "kind": "word"} if with_json else {}
        )


def test_ipa_is_normalised_on_reading(tmp_path):
    sample = Sample("k", tone(0.5), "ˈɡa\u200d:", lang="xx")
    (got,) = read_all(write_shards(tmp_path, [sample], 1))
    assert got.ipa == "ˈɡaː"


def test_shard_patterns_expand_braces_globs_and_directories(tmp_path):
    paths = [str(p) for p in write_shards(tmp_path, good_samples(6), 2)]
    assert expand_shards([str(tmp_path / "shard-{000000..000002}.tar")]) == paths
    assert expand_shards([str(tmp_path / "shard-*.tar")]) == paths
    assert expand_shards([str(tmp_path)]) == paths
    assert expand_shards(["https://example.org/s-{0..1}.tar"]) == [
        "https://example.org/s-0.tar",
        "https://example.org/s-1.tar",
    ]
    with pytest.raises(FileNotFoundError, match="shard-000003"):
        expand_shards([str(tmp_path / "shard-{000000..000009}.tar")])
    with pytest.raises(TypeError, match="list"):
        expand_shards(str(tmp_path))


def loader_over(urls, tokenizer, rank, world_size, num_workers, **kwargs) -> BatchLoader:
    samples = ShardDataset(
        [str(u) for u in urls],
        SampleFilter(min_duration=0.1),
        rank=rank,
        world_size=world_size,
        **kwargs,
    )
    return BatchLoader(
        Batches(samples, DurationBucketer(batch_size=3), tokenizer, "ipa"), num_workers=num_workers
    )


@pytest.mark.parametrize("n_shards", [6, 2])
def test_two_ranks_two_workers_cover_every_sample_exactly_once(tmp_path, tokenizer, n_shards):
    samples = good_samples(24)
    samples[5] = Sample(
        "short0005", tone(0.05), "pa"
    )  # one drop, to check drops are counted once too
    urls = write_shards(tmp_path, samples, -(-len(samples) // n_shards))
    keys, drops = Counter(), Counter()
    per_rank = []
    for rank in range(2):
        loader = loader_over(urls, tokenizer, rank, 2, num_workers=2)
        rank_keys = [k for batch in loader for k in batch["key"]]
        keys.update(rank_keys)
        drops.update(loader.drop_totals)
        per_rank.append(rank_keys)
    assert keys == Counter(s.key for s in samples if s.key != "short0005")
    assert drops == {"too_short": 1}
    assert all(per_rank)


def test_training_shuffle_is_deterministic_per_seed_and_epoch(tmp_path):
    urls = [str(u) for u in write_shards(tmp_path, good_samples(30), 5)]

    def order(seed: int, epoch: int) -> list[str]:
        dataset = ShardDataset(
            urls, SampleFilter(), shuffle=True, shuffle_buffer=8, seed=seed, rank=0, world_size=1
        )
        dataset.set_epoch(epoch)
        return [s.key for s in dataset]

    first = order(0, 0)
    assert first == order(0, 0)
    assert first != order(0, 1) and first != order(1, 0)
    assert sorted(first) == sorted(order(0, 1)) == [s.key for s in good_samples(30)]
    assert [s.key for s in read_all(urls)] == sorted(first)  # evaluation keeps shard order


def test_loader_sets_a_new_epoch_on_every_pass(tmp_path, tokenizer):
    urls = write_shards(tmp_path, good_samples(20), 4)
    loader = loader_over(urls, tokenizer, 0, 1, num_workers=0, shuffle=True, shuffle_buffer=20)
    first, second = ([k for b in loader for k in b["key"]] for _ in range(2))
    assert sorted(first) == sorted(second) and first != second
    assert loader.dataset.samples.epoch == 1


def test_language_filters_and_path_pattern(tmp_path):
    english = good_samples(3, lang="en", prefix="en")
    french = good_samples(3, lang="fr", prefix="fr")
    urls = [str(u) for u in write_shards(tmp_path, english + french, 3)]
    dataset = ShardDataset(urls, SampleFilter(languages=("fr",)))
    assert [s.lang for s in dataset] == ["fr"] * 3
    assert dataset.drops.total == {"language_filtered": 3}
    dataset = ShardDataset(urls, SampleFilter(exclude_languages=("fr",)))
    assert [s.lang for s in dataset] == ["en"] * 3
    untagged = write_shards(tmp_path / "de_train", good_samples(2), 2, with_json=False)
    from_path = ShardDataset(
        [str(u) for u in untagged], SampleFilter(), lang_pattern=r"/(\w+?)_train/"
    )
    assert [s.lang for s in from_path] == ["de", "de"]


def test_unknown_symbols_are_kept_as_unk_or_dropped(tmp_path, tokenizer):
    samples = [Sample("odd", tone(0.5), "pa☃"), Sample("fine", tone(0.5), "pa")]
    urls = [str(u) for u in write_shards(tmp_path, samples, 2)]
    kept = ShardDataset(urls, SampleFilter())
    assert [s.key for s in kept] == ["odd", "fine"]
    dropped = ShardDataset(urls, SampleFilter(drop_unknown=True))
    assert [s.key for s in dropped] == ["fine"]
    assert dropped.drops.total == {"unknown_symbols": 1}
    batch = next(iter(BatchLoader(Batches(kept, DurationBucketer(batch_size=1), tokenizer, "ipa"))))
    assert batch["key"] == ["odd"] and tokenizer.unk_id in batch["phone_ids"][0].tolist()


def test_datamodule_batches_follow_the_schema(tmp_path, tokenizer):
    for split in ("train", "valid", "test_a", "test_b"):
        write_shards(tmp_path / split, good_samples(7, prefix=split), 3)
    cfg = OmegaConf.structured(IpapackConfig)
    cfg.train, cfg.valid = (
        [str(tmp_path / "train")],
        [str(tmp_path / "valid" / "shard-{000000..000002}.tar")],
    )
    cfg.test = {"a": [str(tmp_path / "test_a")], "b": [str(tmp_path / "test_b" / "*.tar")]}
    cfg.num_workers, cfg.max_batch_seconds = 0, 2.0
    dm = IpapackDataModule(cfg, tokenizer)
    batches = list(dm.train_dataloader())
    assert sorted(k for b in batches for k in b["key"]) == [
        s.key for s in good_samples(7, prefix="train")
    ]
    for batch in batches:
        n = len(batch["key"])
        assert batch["audio"].dtype == torch.float32 and batch["audio"].shape[0] == n
        assert (
            batch["audio_lens"].dtype
            == batch["phone_ids"].dtype
            == batch["phone_lens"].dtype
            == torch.int64
        )
        assert batch["audio"].shape[1] == batch["audio_lens"].max()
        assert batch["audio"].shape[1] * n <= 2.0 * 16000 or n == 1
        assert batch["phone_ids"].shape == (n, int(batch["phone_lens"].max()))
        for row, length, ipa in zip(batch["phone_ids"], batch["phone_lens"], batch["ipa"]):
            assert row[:length].tolist() == tokenizer.encode(ipa)
            assert (row[length:] == tokenizer.pad_id).all()
        for row, length in zip(batch["audio"], batch["audio_lens"]):
            assert (row[length:] == 0).all()
        assert all(len(batch[k]) == n for k in ("ipa", "text", "lang", "key", "meta"))
        assert batch["dropped"] == {}
    assert sorted(k for b in dm.val_dataloader() for k in b["key"]) == [
        s.key for s in good_samples(7, prefix="valid")
    ]
    tests = dm.test_sets()
    assert sorted(tests) == ["a", "b"]
    assert [k for b in tests["b"] for k in b["key"]] == [k for b in tests["b"] for k in b["key"]]
    assert dm.drop_totals() == {}


def test_text_units_encode_orthography(tmp_path):
    class Chars:
        pad_id = 0

        def encode(self, text: str) -> list[int]:
            return [ord(c) for c in text]

    samples = good_samples(2) + [Sample("notext", tone(0.5), "pa")]
    write_shards(tmp_path / "train", samples, 3)
    dm = IpapackDataModule(
        {"train": [str(tmp_path / "train")], "units": "text", "num_workers": 0}, Chars()
    )
    batches = list(dm.train_dataloader())
    rows = {
        k: ids[:n].tolist()
        for b in batches
        for k, ids, n in zip(b["key"], b["phone_ids"], b["phone_lens"])
    }
    assert rows == {"clip0000": [ord(c) for c in "word0"], "clip0001": [ord(c) for c in "word1"]}
    assert dm.drop_totals() == {"empty_text": 1}


def test_bad_configuration_is_named(tokenizer):
    with pytest.raises(ValueError, match="units"):
        IpapackDataModule({"units": "graphemes"}, tokenizer)
    with pytest.raises(ValueError, match="rank"):
        ShardDataset(["x.tar"], SampleFilter(), rank=2, world_size=2)


def test_rank_comes_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    dataset = ShardDataset(["x.tar"], SampleFilter())
    assert (dataset.rank, dataset.world_size) == (1, 3)
    assert ShardDataset(["x.tar"], SampleFilter(), rank=0, world_size=1).rank == 0


def test_lightning_fit_reshuffles_each_epoch_and_sees_every_clip(tmp_path, tokenizer):
    import lightning as L

    write_shards(tmp_path / "train", good_samples(12), 3)

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[str]] = {}

        def training_step(self, batch, batch_idx):
            self.seen.setdefault(self.current_epoch, []).extend(batch["key"])
            return (self.weight * batch["audio"].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    cfg = {"train": [str(tmp_path / "train")], "num_workers": 2, "batch_size": 4, "num_buckets": 1}
    model = Recorder()
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=IpapackDataModule(cfg, tokenizer))
    everything = sorted(s.key for s in good_samples(12))
    assert sorted(model.seen[0]) == sorted(model.seen[1]) == everything
    assert model.seen[0] != model.seen[1]
