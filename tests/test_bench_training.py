"""The training benchmark's FLOP count: exact on layers counted by hand, sane on a real CLAP-IPA step; the
ISA benchmark's pinning reaches torch."""

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phonclip.benchmarks.isa import AVX2
from phonclip.benchmarks.training import count_train_step_flops
from phonclip.ipa import IpaTokenizer
from phonclip.models.clap_ipa import ClapIpa


class OneLinear(L.LightningModule):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.linear(batch["x"]).pow(2).mean()
        self.log("loss", loss)
        return loss


class Attention(L.LightningModule):
    def __init__(self, b: int, h: int, s: int, d: int) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Parameter(torch.randn(b, h, s, d)) for _ in range(3))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return F.scaled_dot_product_attention(self.q, self.k, self.v, attn_mask=batch["mask"]).sum()


def test_linear_layer_counts_forward_and_weight_gradient_matmuls() -> None:
    b, n_in, n_out = 3, 8, 5
    model = OneLinear(n_in, n_out).eval()
    flops = count_train_step_flops(model, {"x": torch.randn(b, n_in)})
    # forward x @ W.T and backward grad.T @ x; the input needs no gradient; bias grad and loss are elementwise
    assert flops == 2 * (2 * b * n_in * n_out)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_cpu_attention_is_counted_forward_and_backward() -> None:
    b, h, s, d = 2, 3, 7, 4
    mask = torch.ones(b, 1, s, s, dtype=torch.bool)
    flops = count_train_step_flops(Attention(b, h, s, d), {"mask": mask})
    # forward: Q K^T and P V; backward: Q K^T recomputed, then grads of P, V, Q and K (torch's formula)
    assert flops == (2 + 5) * (2 * b * h * s * s * d)


def _tiny_clap_step_flops(n_clips: int) -> int:
    cfg = {
        "embed_dim": 32,
        "phone": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
        "hard_negatives": {"rate": 0.0},
        "augment": {"speed_prob": 0.0},
    }
    torch.manual_seed(0)
    model = ClapIpa(cfg, tokenizer=IpaTokenizer())
    ids, lens = model.tokenize(["ɡato"] * n_clips)
    batch = {
        "audio": 0.1 * torch.randn(n_clips, 4000),
        "audio_lens": torch.full((n_clips,), 4000),
        "phone_ids": ids,
        "phone_lens": lens,
        "ipa": ["ɡato"] * n_clips,
    }
    return count_train_step_flops(model, batch)


def test_clap_ipa_step_flops_grow_linearly_with_batch_size() -> None:
    two, four = _tiny_clap_step_flops(2), _tiny_clap_step_flops(4)
    assert two > 0
    assert 1.9 < four / two < 2.1


HOST_FLAGS = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""


@pytest.mark.skipif(" avx2" not in HOST_FLAGS, reason="needs an x86 host with AVX2")
def test_isa_benchmark_pins_torch_to_avx2_kernels_and_says_so() -> None:
    probe = (
        "import torch; from phonclip.bench import cpu; "
        "print(torch.backends.cpu.get_cpu_capability()); print(cpu())"
    )
    pinned = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **AVX2},
        capture_output=True,
        text=True,
        check=False,
    )
    capability, described = pinned.stdout.strip().splitlines()
    assert capability == "AVX2", pinned.stderr
    assert described.endswith("torch kernels pinned to AVX2") == (" avx512f" in HOST_FLAGS)
