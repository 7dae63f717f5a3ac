"""Training speed of the default CLAP-IPA run: is it compute-bound, input-bound, or just slow per FLOP?

One Lightning ``fit`` of the ``clap_ipa`` experiment config (its precision resolved for this machine)
runs on batches fetched beforehand, so the timed steps are forward + backward + gradient clipping +
optimiser step and nothing else. Batches come from the real train DataLoader when the default corpus
is cached (then the DataLoader is timed on its own too); otherwise one fixed batch of random audio
shaped like the corpus's word clips is repeated.

FLOPs are what ``torch.utils.flop_counter.FlopCounterMode`` counts: matrix products, convolutions
and attention (taught here to count CPU's fused attention kernel, which torch leaves out), forward
and backward, padded positions included; elementwise ops, normalisation, FFTs and the optimiser are
free. Dividing by a plain square matmul's FLOP/s on the same device, dtype and thread count gives
the model's FLOP utilisation relative to what the hardware does with torch at its best.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from data_modules.collate import collate
from data_modules.schema import SAMPLE_RATE, Sample
from phonclip import config, runner
from phonclip.minimal_pairs import common_inventory
from phonclip.trainer import resolve_precision

EXPERIMENT = "clap_ipa"
WARMUP_STEPS = 2
# each timed batch also gets one counted forward + backward: keeps the whole run near 2 min on 2 cores
TIMED_STEPS = 16
DATA_BATCHES = 30  # batches read when timing the DataLoader alone (the first is timed apart)
WORD_SECONDS = (0.3, 1.3)  # clip durations of the stand-in batch (the corpus's word clips)
PHONES_PER_SECOND = 10.0
MATMUL_SIZES = {"cpu": (1024, 2048), "cuda": (2048, 4096, 8192)}
MATMUL_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
_LOG_OUTSIDE_TRAINER = r"You are trying to `self\.log\(\)`"


Shape = tuple[int, ...]


def _cpu_attention_flops(q: Shape, k: Shape, v: Shape, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(q, k, v)


def _cpu_attention_backward_flops(
    grad_out: Shape, q: Shape, k: Shape, v: Shape, *args: Any, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(grad_out, q, k, v)


# torch counts the CUDA attention kernels but not the one CPU's scaled_dot_product_attention runs
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def count_train_step_flops(model: L.LightningModule, batch: dict[str, Any]) -> int:
    """FLOPs of one ``training_step`` forward + backward as FlopCounterMode counts them (see module doc).

    ``batch`` must be on the model's device; the model must not be inside a running ``Trainer.fit``
    (its ``self.log`` calls are then no-ops). Gradients are cleared afterwards.
    """
    was_training = model.training
    model.train()
    with (
        FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter,
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message=_LOG_OUTSIDE_TRAINER)
        loss = model.training_step(batch, 0)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return int(counter.get_total_flops())


class _StepTimer(Callback):
    """Seconds from batch start to batch end (after the optimiser step), synchronising the device."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.sync()
        self.seconds.append(time.perf_counter() - self._start)


class Replay:
    """The prepared batches as one epoch (a plain list would read to Lightning as a list of loaders)."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_training(
    model: L.LightningModule,
    batches: Iterable[dict[str, Any]],
    steps: int,
    cfg: DictConfig,
    precision: str,
) -> list[float]:
    """Seconds of each of ``steps`` steps of a real ``fit`` over ``batches`` (one device, no logger, no checkpoints)."""
    timer = _StepTimer(_sync)
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        max_steps=steps,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(does not have many workers|no `val_dataloader`).*"
        )
        trainer.fit(model, train_dataloaders=batches)
    return timer.seconds


def stand_in_batch(cfg: DictConfig, tokenizer: Any) -> dict[str, Any]:
    """Random audio of word-clip durations filling ``max_batch_seconds`` as the bucketing pads it."""
    rng = random.Random(cfg.seed)
    phones = common_inventory()
    n_clips = int(cfg.data.max_batch_seconds // WORD_SECONDS[1])
    samples = []
    for i in range(n_clips):
        seconds = rng.uniform(*WORD_SECONDS)
        n_samples = int(seconds * SAMPLE_RATE)
        audio = np.random.default_rng(i).standard_normal(n_samples).astype(np.float32) * 0.1
        ipa = "".join(rng.choice(phones) for _ in range(max(2, round(seconds * PHONES_PER_SECOND))))
        samples.append(Sample(key=f"stand-in-{i}", audio=audio, ipa=ipa, lang="xx"))
    return collate(samples, tokenizer, cfg.model.units, {})


def corpus_cached(cfg: DictConfig) -> bool:
    if cfg.data.name != "synthetic":
        return False
    from data_modules.synthetic import MANIFEST, corpus_dir

    return (corpus_dir(OmegaConf.to_object(cfg.data.corpus)) / MANIFEST).exists()


def read_batches(
    datamodule: L.LightningDataModule, n: int
) -> tuple[list[dict[str, Any]], float, list[float]]:
    """The first ``n`` train batches, seconds to the first, and seconds for each later one."""
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    start = time.perf_counter()
    batches = [next(loader)]
    first = time.perf_counter() - start
    later = []
    for _ in range(n - 1):
        start = time.perf_counter()
        batches.append(next(loader))
        later.append(time.perf_counter() - start)
    del loader  # stops the worker processes
    return batches, first, later


def default_step(n_steps: int) -> tuple[DictConfig, L.LightningModule, list[dict[str, Any]], str]:
    """The default experiment's config, its freshly seeded model and ``n_steps`` batches to time it on:
    the first train batches of the cached default corpus, else a stand-in batch repeated; and which."""
    [(_, cfg)] = config.load(EXPERIMENT)
    L.seed_everything(cfg.seed, verbose=False)
    model, datamodule = runner.build(cfg)
    if corpus_cached(cfg):
        return cfg, model, read_batches(datamodule, n_steps)[0], "real batches of the cached default corpus"
    batches = [stand_in_batch(cfg, model.tokenizer)] * n_steps
    return cfg, model, batches, "stand-in batch of random audio (default corpus not cached)"


def matmul_flops_per_second(
    device: str, dtype: torch.dtype, sizes: tuple[int, ...], repeats: int = 3
) -> tuple[float, int]:
    """Best FLOP/s of square ``n × n`` matmuls over ``sizes``, and the size that reached it."""
    best = (0.0, sizes[0])
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        for _ in range(repeats):
            _sync()
            start = time.perf_counter()
            a @ b
            _sync()
            best = max(best, (2 * n**3 / (time.perf_counter() - start), n))
    return best


def _row(benchmark: str, value: float, unit: str, note: str, target: str = "—") -> dict[str, Any]:
    return {"benchmark": benchmark, "value": value, "unit": unit, "target": target, "note": note}


def run() -> list[dict]:
    """Clips/s, s/step, FLOPs/step, FLOP/s against matmul, and DataLoader speed for the default experiment."""
    load_before = os.getloadavg()[0]
    [(_, cfg)] = config.load(EXPERIMENT)
    L.seed_everything(cfg.seed, verbose=False)
    model, datamodule = runner.build(cfg)
    precision = resolve_precision(cfg.trainer.precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n_steps = WARMUP_STEPS + TIMED_STEPS
    rows: list[dict[str, Any]] = []
    data_clips_per_s = None
    if corpus_cached(cfg):
        batches, first_s, later_s = read_batches(datamodule, max(n_steps, DATA_BATCHES))
        data_note = f"train DataLoader, {cfg.data.num_workers} worker(s)"
        source = f"real batches of the cached default corpus ({data_note})"
        data_clips_per_s = sum(len(b["ipa"]) for b in batches[1:]) / sum(later_s)
        batches = batches[:n_steps]
        rows += [
            _row(
                "data pipeline: first batch",
                first_s,
                "s",
                f"{data_note}: worker start + shuffle buffer",
            ),
            _row(
                "data pipeline: batches/s",
                len(later_s) / sum(later_s),
                "batches/s",
                f"{data_note}, {len(later_s)} batches after the first",
            ),
            _row(
                "data pipeline: clips/s",
                data_clips_per_s,
                "clips/s",
                "the same batches, counted in clips",
            ),
        ]
    else:
        batches = [stand_in_batch(cfg, model.tokenizer)] * n_steps
        source = (
            f"default corpus not cached: one stand-in batch of {len(batches[0]['ipa'])} random-audio clips, "
            f"{WORD_SECONDS[0]}–{WORD_SECONDS[1]} s"
        )

    timed = batches[WARMUP_STEPS:]
    flops = [count_train_step_flops(model, b) for b in timed]
    seconds = time_training(model, Replay(batches), n_steps, cfg, precision)[WARMUP_STEPS:]
    clips = sum(len(b["ipa"]) for b in timed)
    audio_s = sum(float(b["audio_lens"].sum()) for b in timed) / SAMPLE_RATE
    achieved = sum(flops) / sum(seconds)
    dtype = MATMUL_DTYPES.get(precision, torch.float32) if device == "cuda" else torch.float32
    matmul, matmul_n = matmul_flops_per_second(device, dtype, MATMUL_SIZES[device])

    load = f"1-min load avg {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    setup = (
        f"{EXPERIMENT}, {device}, precision {precision}, {torch.get_num_threads()} threads, {load}"
    )
    steps_note = f"{TIMED_STEPS} steps after {WARMUP_STEPS} warm-up; {source}"
    rows += [
        _row(
            "training: clips/s",
            clips / sum(seconds),
            "clips/s",
            f"{setup}; total clips / total time, {steps_note}",
        ),
        _row(
            "training: audio seconds/s",
            audio_s / sum(seconds),
            "s/s",
            "unpadded speech trained on per wall-clock second",
        ),
        _row(
            "training: s/step",
            statistics.median(seconds),
            "s",
            f"median (min {min(seconds):.2f}, max {max(seconds):.2f}); fwd + bwd + clip + AdamW",
        ),
        _row(
            "model FLOPs/step",
            statistics.median(flops),
            "FLOP",
            "median; FlopCounterMode: matmuls, convs, attention (fwd + bwd, padding included); elementwise free",
        ),
        _row(
            "model FLOP/s achieved",
            achieved,
            "FLOP/s",
            "sum FLOPs / sum step time over the timed steps",
        ),
        _row(
            f"torch matmul FLOP/s ({str(dtype).removeprefix('torch.')})",
            matmul,
            "FLOP/s",
            f"best square matmul, n={matmul_n} (of {MATMUL_SIZES[device]}), same threads",
        ),
        _row(
            "model FLOP utilisation vs matmul",
            100 * achieved / matmul,
            "%",
            "achieved ÷ matmul FLOP/s",
        ),
    ]
    if data_clips_per_s is not None:
        loader = datamodule.train_dataloader()
        alongside = time_training(model, loader, n_steps, cfg, precision)[WARMUP_STEPS:]
        rows += [
            _row(
                "data pipeline headroom",
                data_clips_per_s / (clips / sum(seconds)),
                "x",
                "data clips/s ÷ training clips/s (> 1: not input-bound; the worker shares the CPUs)",
                "> 1",
            ),
            _row(
                "training: s/step, DataLoader alongside",
                statistics.median(alongside),
                "s",
                f"median of {TIMED_STEPS} steps reading the train DataLoader "
                f"({cfg.data.num_workers} worker(s)) as training does",
            ),
            _row(
                "training: slow-down from the DataLoader",
                100 * (statistics.median(alongside) / statistics.median(seconds) - 1),
                "%",
                "s/step alongside ÷ s/step on prefetched batches − 1: the worker's CPU use",
            ),
        ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
