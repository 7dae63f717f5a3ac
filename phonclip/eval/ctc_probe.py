"""Phone-recognition probe for early-exit experiments: how much phonetic content frame states hold.

Following SUPERB, the speech encoder stays frozen (here cut after k layers, its frame states computed
by the caller) and only a small head is trained on top, so the score measures the features, not the
head. The head is trained with CTC, which needs no frame alignment, on a few words of an unseen
language, and scored by phone error rate on held-out words over several seeds. Frames are repeated
``upsample`` times before the head: CTC needs an output frame per phone, and a blank between
repeated ones, and 40 ms encoder frames leave too few for fast speech.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torchmetrics.functional.text import word_error_rate

from phonclip.encoders.pooling import lengths_to_mask

BLANK = 0


@dataclass
class CtcProbeConfig:
    """The probe head and its training budget (per language and seed)."""

    hidden: int = 256
    kernel_size: int = 3  # a conv over time before the output layer: a frame sees its neighbours
    upsample: int = 2  # frames repeated before the head: room for CTC on fast speech at 40 ms frames
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    train_fraction: float = 0.5  # of a language's distinct words, the rest are the test words
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


def split_by_word(
    words: list[str], train_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Row indices for training and testing, split by distinct word so test words are unseen."""
    distinct = sorted(set(words))
    random.Random(seed).shuffle(distinct)
    n_train = round(train_fraction * len(distinct))
    if not 0 < n_train < len(distinct):
        raise ValueError(
            f"train_fraction={train_fraction} of {len(distinct)} distinct words leaves a side empty"
        )
    train_words = set(distinct[:n_train])
    train = [i for i, w in enumerate(words) if w in train_words]
    test = [i for i, w in enumerate(words) if w not in train_words]
    return train, test


class PhoneVocab:
    """Phones of the training rows, sorted, after the CTC blank at index 0."""

    def __init__(self, phones: list[str]) -> None:
        self.phones = phones
        self._index = {p: i + 1 for i, p in enumerate(phones)}

    @classmethod
    def from_sequences(cls, seqs: list[list[str]]) -> PhoneVocab:
        """The vocabulary of every phone in ``seqs``."""
        return cls(sorted({p for seq in seqs for p in seq}))

    def encode(self, phones: list[str]) -> list[int]:
        """Ids of known phones; unknown ones are dropped (the head could never emit them)."""
        return [self._index[p] for p in phones if p in self._index]

    def decode(self, ids: list[int]) -> list[str]:
        """Phones of non-blank ids."""
        return [self.phones[i - 1] for i in ids if i != BLANK]

    def __len__(self) -> int:
        return len(self.phones) + 1


class CtcHead(nn.Module):
    """LayerNorm, frame repetition, a conv over time and a linear layer to phone log-probs."""

    def __init__(self, dim: int, vocab_size: int, cfg: CtcProbeConfig) -> None:
        super().__init__()
        self.upsample = cfg.upsample
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, cfg.hidden, cfg.kernel_size, padding="same")
        self.out = nn.Linear(cfg.hidden, vocab_size)

    def forward(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probs [B, T*upsample, V] and their lengths; padding never reaches a real frame."""
        mask = lengths_to_mask(lens, feats.shape[1])
        x = self.norm(feats).masked_fill(~mask[..., None], 0.0)
        x = x.repeat_interleave(self.upsample, dim=1)
        x = F.gelu(self.conv(x.transpose(1, 2)).transpose(1, 2).contiguous())  # fast GELU backward
        return self.out(x).log_softmax(-1), lens * self.upsample


def _pad(feats: list[Tensor]) -> tuple[Tensor, Tensor]:
    """A padded batch [B, T_max, D] and its lengths."""
    lens = torch.tensor([f.shape[0] for f in feats], device=feats[0].device)
    return pad_sequence(feats, batch_first=True), lens


def _init_head(dim: int, vocab_size: int, cfg: CtcProbeConfig, seed: int) -> CtcHead:
    """A seeded head, leaving the caller's RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return CtcHead(dim, vocab_size, cfg)


def train_head(
    feats: list[Tensor], targets: list[list[int]], vocab_size: int, cfg: CtcProbeConfig, seed: int
) -> CtcHead:
    """Fit a CTC head on frozen clip features [T_i, D] and their phone ids; deterministic per seed."""
    if len(feats) != len(targets) or not feats:
        raise ValueError(f"need as many targets as clips (>0), got {len(targets)} and {len(feats)}")
    device = feats[0].device
    head = _init_head(feats[0].shape[1], vocab_size, cfg, seed).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    padded, lens = _pad([f.detach().float() for f in feats])  # once; each batch is cut to its longest
    target_lens = torch.tensor([len(t) for t in targets], device=device)
    padded_targets = pad_sequence(
        [torch.tensor(t, dtype=torch.long, device=device) for t in targets], batch_first=True
    )
    head.train()
    for _ in range(cfg.steps):
        idx = torch.randperm(len(feats), generator=gen)[: cfg.batch_size].to(device)
        log_probs, out_lens = head(padded[idx, : int(lens[idx].max())], lens[idx])
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),
            padded_targets[idx],
            out_lens,
            target_lens[idx],
            blank=BLANK,
            zero_infinity=True,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head.eval()


def collapse_path(path: list[int]) -> list[int]:
    """Label sequence of a CTC frame path: repeats merged, then blanks dropped."""
    return [p for i, p in enumerate(path) if p != BLANK and (i == 0 or p != path[i - 1])]


@torch.no_grad()
def greedy_decode(head: CtcHead, feats: list[Tensor], batch_size: int = 64) -> list[list[int]]:
    """Best-path phone ids per clip: cheap, and what probes conventionally report."""
    hyps: list[list[int]] = []
    for start in range(0, len(feats), batch_size):
        log_probs, out_lens = head(*_pad([f.float() for f in feats[start : start + batch_size]]))
        best = log_probs.argmax(-1).tolist()
        hyps.extend(collapse_path(p[:n]) for p, n in zip(best, out_lens.tolist()))
    return hyps


def phone_error_rate(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """Corpus PER: Levenshtein edits summed over clips / reference phones (torchmetrics' WER)."""
    if len(hyps) != len(refs):
        raise ValueError(f"need one hypothesis per reference, got {len(hyps)} and {len(refs)}")
    if not any(refs):
        raise ValueError("PER is undefined without reference phones")
    ids: dict[str, int] = {}  # phones as space-free tokens, whatever characters they hold

    def tokens(seq: list[str]) -> str:
        return " ".join(str(ids.setdefault(p, len(ids))) for p in seq)

    return float(word_error_rate([tokens(h) for h in hyps], [tokens(r) for r in refs]))


def probe_language(
    feats: list[Tensor], phones: list[list[str]], words: list[str], cfg: CtcProbeConfig
) -> dict[str, Any]:
    """PER of CTC heads trained on half of a language's words, on the other half, over seeds."""
    if not len(feats) == len(phones) == len(words):
        raise ValueError(f"got {len(feats)} clips, {len(phones)} transcriptions, {len(words)} words")
    train, test = split_by_word(words, cfg.train_fraction, seed=0)
    vocab = PhoneVocab.from_sequences([phones[i] for i in train])
    targets = [vocab.encode(phones[i]) for i in train]
    refs = [phones[i] for i in test]
    pers = []
    for seed in cfg.seeds:
        head = train_head([feats[i] for i in train], targets, len(vocab), cfg, seed)
        hyps = greedy_decode(head, [feats[i] for i in test])
        pers.append(phone_error_rate([vocab.decode(h) for h in hyps], refs))
    commonest = Counter(tuple(phones[i]) for i in train).most_common(1)[0][0]
    return {
        "per": statistics.fmean(pers),
        "per_std": statistics.pstdev(pers),
        "per_seeds": [round(p, 4) for p in pers],  # shown as a list in results.md
        "train_clips": len(train),
        "test_clips": len(test),
        "chance_per": phone_error_rate([list(commonest)] * len(refs), refs),
    }
