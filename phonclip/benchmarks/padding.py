"""How much of each audio batch is padding with duration buckets versus naive sequential batching."""

from __future__ import annotations

from pathlib import Path

from data_modules.bucketing import DurationBucketer, padding_fraction
from data_modules.ipapack import IpapackConfig, SampleFilter, ShardDataset, expand_shards

TARGET = 0.15


def _durations(shard_dir: Path, cfg: IpapackConfig) -> list[int]:
    """Clip lengths (samples) of the training stream, in the order training reads them."""
    stream = ShardDataset(
        expand_shards([str(shard_dir)]),
        SampleFilter.from_config(cfg),
        shuffle=True,
        shuffle_buffer=cfg.shuffle_buffer,
        seed=cfg.seed,
        rank=0,
        world_size=1,
    )
    return [len(sample.audio) for sample in stream]


def run(shard_dir: str | Path | None = None) -> list[dict]:
    """Padding fractions on ``shard_dir`` (default: the train split of the default synthetic corpus)."""
    if shard_dir is None:
        from data_modules.synthetic import SyntheticConfig, generate_corpus

        shard_dir = Path(generate_corpus(SyntheticConfig())) / "train"
    cfg = IpapackConfig()
    lengths = _durations(Path(shard_dir), cfg)

    def batches(num_buckets: int) -> list[list[int]]:
        bucketer = DurationBucketer(
            cfg.max_batch_seconds, cfg.batch_size, num_buckets, cfg.bucket_buffer
        )
        return list(bucketer(lengths, duration=lambda n: n / 16_000))

    bucketed, naive = batches(cfg.num_buckets), batches(1)
    setting = f"max_batch_seconds={cfg.max_batch_seconds:g}, {len(lengths)} clips"
    return [
        {
            "benchmark": "padding, duration buckets",
            "value": 100 * padding_fraction(bucketed),
            "unit": "% of audio samples",
            "target": f"≤ {100 * TARGET:.0f}",
            "note": f"{cfg.num_buckets} buckets, {len(bucketed)} batches; {setting}",
        },
        {
            "benchmark": "padding, naive sequential batches",
            "value": 100 * padding_fraction(naive),
            "unit": "% of audio samples",
            "target": "baseline",
            "note": f"same limit, arrival order, {len(naive)} batches; {setting}",
        },
    ]
