"""Log-mel speed against transformers' WhisperFeatureExtractor, which users would otherwise call."""

from __future__ import annotations

import time
from collections.abc import Callable
from unittest import mock

import numpy as np
import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper import feature_extraction_whisper

from phonclip.features import LogMel

BATCH = 64
SAMPLES = 16_000
TARGET_RATIO = 10.0
ROUNDS = 6


def _best_clips_per_second(
    candidates: dict[str, Callable[[], object]], rounds: int
) -> dict[str, float]:
    """Best-of clips/s per candidate, taken in turns so all see the same load on a shared CPU."""
    best = dict.fromkeys(candidates, float("inf"))
    for round_ in range(rounds + 1):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            if round_:  # round 0 warms up
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: BATCH / seconds for name, seconds in best.items()}


def run() -> list[dict]:
    """Clips/s of ours and of WhisperFeatureExtractor called on a list of arrays, and the ratios."""
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(SAMPLES)).astype(np.float32) for _ in range(BATCH)]
    audio = torch.from_numpy(np.stack(clips))
    lens = torch.full((BATCH,), SAMPLES)
    logmel = LogMel(n_mels=80)
    extractor = WhisperFeatureExtractor(feature_size=80)

    def ours() -> object:
        with torch.inference_mode():
            return logmel(audio, lens)

    def hf(padding: str) -> Callable[[], object]:
        return lambda: extractor(
            clips, sampling_rate=SAMPLES, padding=padding, return_tensors="np", device="cpu"
        )

    def hf_numpy() -> object:
        # The extractor takes its numpy path only when torch is missing; pretend it is.
        with mock.patch.object(feature_extraction_whisper, "is_torch_available", lambda: False):
            return hf("longest")()

    cps = _best_clips_per_second(
        {"ours": ours, "numpy": hf_numpy, "torch": hf("longest"), "padded": hf("max_length")},
        rounds=ROUNDS,
    )
    setup = f"batch {BATCH} x 1 s, 80 mels, CPU, {torch.get_num_threads()} threads, best of runs"
    same_work, target = "same 1 s of audio per clip", f">= {TARGET_RATIO:g}x"
    rows = [
        ("logmel phonclip LogMel", cps["ours"], "clips/s", "—", f"{setup}; torch, batched"),
        ("logmel HF numpy path", cps["numpy"], "clips/s", "—", "padding='longest'; loops clips"),
        ("logmel HF torch path", cps["torch"], "clips/s", "—", "padding='longest', device='cpu'"),
        ("logmel HF default call", cps["padded"], "clips/s", "—", "pads every clip to 30 s"),
        ("speed-up vs HF numpy path", cps["ours"] / cps["numpy"], "x", target, same_work),
        ("speed-up vs HF torch path", cps["ours"] / cps["torch"], "x", target, same_work),
        (
            "speed-up vs HF default call",
            cps["ours"] / cps["padded"],
            "x",
            target,
            "HF pads to 30 s",
        ),
    ]
    keys = ("benchmark", "value", "unit", "target", "note")
    return [dict(zip(keys, (name, round(v, 1), *rest))) for name, v, *rest in rows]


if __name__ == "__main__":
    for row in run():
        print(row)
