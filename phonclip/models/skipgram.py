"""Stage 2 of the semantic AWEs: from phonetic word embeddings to semantic ones, without transcriptions.

- ``pseudo_labels``: K-means (scikit-learn) over the target language's phonetic AWEs, and each segment's
  soft pseudo-word label: a softmax over minus its squared distances to the ``top_k`` nearest centroids.
- ``Skipgram``: predicts the (soft) labels of a segment's context words from its own (soft) label; its
  input projection is the semantic AWE. The same model over one-hot true word identities is the text
  topline.
- ``Projection``: the cheap alternative: an MLP on the phonetic AWE trained so that a word's image
  picks its context words' images out of the batch (InfoNCE).
- ``fine_tune_on_context``: the multilingual ContrastiveRNN itself, fine-tuned on target-language
  pseudo-pairs (words spoken near each other) with the same InfoNCE.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor, nn
from tqdm import tqdm


@dataclass
class Stage2Config:
    """Pseudo-labels and the Skipgram / projection trained on them."""

    clusters: int = 1000  # K of K-means
    top_k: int = 10  # centroids in each soft label
    soft_temperature: float = 0.05  # of the softmax over minus squared distances (unit-norm embeddings)
    window: int = 2  # context words on each side
    dim: int = 128  # semantic embedding width
    epochs: int = 5
    batch_size: int = 4096
    lr: float = 0.01
    projection_temperature: float = 0.1  # of the InfoNCE of the projection and of the context RNN
    context_rnn_steps: int = 300  # fine-tuning steps of the stage-1 ContrastiveRNN on context pairs
    context_rnn_pairs: int = 64  # context pairs per step
    context_rnn_lr: float = 1e-4


Labels = tuple[Tensor, Tensor]  # (indices [N, k] long, weights [N, k] float): a sparse distribution per segment


def context_pairs(utterance: list[int], position: list[int], window: int) -> Tensor:
    """(centre, context) row pairs [P, 2] of segments at most ``window`` words apart in one utterance; rows of
    an utterance must be consecutive and in word order, as the DataModule stores them."""
    utt, pos = torch.tensor(utterance), torch.tensor(position)
    pairs = []
    for offset in range(1, window + 1):
        a = torch.arange(len(utt) - offset)
        b = a + offset
        keep = (utt[a] == utt[b]) & (pos[b] - pos[a] == offset)
        pairs += [torch.stack([a[keep], b[keep]], 1), torch.stack([b[keep], a[keep]], 1)]
    return torch.cat(pairs) if pairs else torch.empty(0, 2, dtype=torch.long)


def fit_kmeans(embeddings: Tensor, clusters: int, seed: int) -> Tensor:
    """Centroids [K, D] of K-means over unit-norm ``embeddings``."""
    if len(embeddings) < clusters:
        raise ValueError(f"model.stage2.clusters={clusters} but only {len(embeddings)} segments to cluster")
    km = KMeans(n_clusters=clusters, n_init=1, max_iter=50, random_state=seed)
    km.fit(F.normalize(embeddings, dim=-1).numpy().astype(np.float32))
    return torch.from_numpy(km.cluster_centers_).float()


def soft_labels(embeddings: Tensor, centroids: Tensor, top_k: int, temperature: float, chunk: int = 8192) -> Labels:
    """Each segment's soft pseudo-word label over its ``top_k`` nearest centroids."""
    idx, weights = [], []
    for x in F.normalize(embeddings, dim=-1).split(chunk):
        d2 = torch.cdist(x, centroids).square()
        near, i = d2.topk(min(top_k, len(centroids)), dim=1, largest=False)
        idx.append(i)
        weights.append(torch.softmax(-near / temperature, dim=1))
    return torch.cat(idx), torch.cat(weights)


def one_hot_labels(words: list[str], vocabulary: dict[str, int]) -> Labels:
    """True word identities as labels (the text topline); words outside ``vocabulary`` share one extra id."""
    ids = torch.tensor([vocabulary.get(w, len(vocabulary)) for w in words])[:, None]
    return ids, torch.ones(len(words), 1)


class Skipgram(nn.Module):
    """Predicts a context word's label distribution from the centre word's; ``embed`` is the semantic AWE."""

    def __init__(self, n_labels: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_labels, dim, mode="sum")
        self.output = nn.Linear(dim, n_labels)

    def embed(self, labels: Labels) -> Tensor:
        idx, weights = labels
        return self.embedding(idx, per_sample_weights=weights)

    def loss(self, centre: Labels, context: Labels) -> Tensor:
        """Cross-entropy of the context's (soft) label under the distribution predicted from the centre."""
        log_p = F.log_softmax(self.output(self.embed(centre)), dim=-1)
        idx, weights = context
        return -(weights * log_p.gather(1, idx)).sum(1).mean()


class Projection(nn.Module):
    """An MLP from phonetic to semantic space; a second head embeds words as contexts."""

    def __init__(self, in_dim: int, dim: int, temperature: float) -> None:
        super().__init__()
        self.centre = nn.Sequential(nn.Linear(in_dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.context = nn.Sequential(nn.Linear(in_dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.temperature = temperature

    def embed(self, phonetic: Tensor) -> Tensor:
        return self.centre(phonetic)

    def loss(self, centre: Tensor, context: Tensor) -> Tensor:
        a = F.normalize(self.centre(centre), dim=-1)
        b = F.normalize(self.context(context), dim=-1)
        logits = a @ b.T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(a)))


def _take(labels: Labels, rows: Tensor) -> Labels:
    return labels[0][rows], labels[1][rows]


def fit(build: Callable[[], nn.Module], inputs: Labels | Tensor, pairs: Tensor, cfg: Stage2Config, seed: int,
        desc: str) -> nn.Module:
    """The model ``build()`` makes (Skipgram or Projection, initialised from ``seed``), trained on (centre,
    context) ``pairs`` of rows of ``inputs``."""
    if len(pairs) == 0:
        raise ValueError("no context pairs: the target utterances need at least two words each")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    take = _take if isinstance(inputs, tuple) else (lambda x, rows: x[rows])
    model.train()
    steps = -(-len(pairs) // cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps, desc=desc, unit="step", leave=False)
    for _ in range(cfg.epochs):
        for batch in pairs[torch.randperm(len(pairs), generator=generator)].split(cfg.batch_size):
            loss = model.loss(take(inputs, batch[:, 0]), take(inputs, batch[:, 1]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return model.eval()


def fine_tune_on_context(encoder: nn.Module, segments: Any, rows: list[int], pairs: Tensor, cfg: Stage2Config,
                         seed: int) -> nn.Module:
    """A copy of the stage-1 ``encoder`` fine-tuned so that a word segment picks its context word out of the
    batch; ``pairs`` index ``rows`` of ``segments``."""
    encoder = copy.deepcopy(encoder).train()
    device = next(encoder.parameters()).device
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.context_rnn_lr)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for _ in tqdm(range(cfg.context_rnn_steps), desc="context RNN", unit="step", leave=False):
        chosen = pairs[torch.randint(len(pairs), (cfg.context_rnn_pairs,), generator=generator)]
        batch = segments.batch([rows[i] for i in chosen.T.flatten().tolist()])  # centres, then contexts
        z = F.normalize(encoder(batch["feats"].to(device), batch["lens"]), dim=-1)
        centre, context = z.chunk(2)
        loss = F.cross_entropy(centre @ context.T / cfg.projection_temperature, torch.arange(len(centre), device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return encoder.eval()
