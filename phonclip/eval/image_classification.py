"""IPA-CLIP's Table 4: ImageNet images classified by CLIP's image tower against class embeddings from
pronunciations, from CLIP's own text tower, and from both; accuracy by how frequent the label word is
(English Zipf frequency), and nonword → image Recall@K."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import wordfreq
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor
from tqdm import tqdm
from transformers import CLIPModel, CLIPProcessor

from data_modules.imagenet import ImageFolderClasses
from phonclip.eval.plots import save_figure
from phonclip.eval.retrieval import cosine_scores

ZIPF_THRESHOLDS = (0.0, 1.5, 3.0, 4.5)  # the paper's Table 4 buckets: labels whose English Zipf frequency ≥ t
ARMS = ("pronunciation", "text", "pronunciation+text")
_CHUNK_ELEMENTS = 1 << 22  # scores per chunk of rows: 20k nonwords × 50k images never sit in memory at once


class ClipImageTower:
    """CLIP's image and text towers from transformers, so pronunciations can be compared with images."""

    def __init__(self, name_or_path: str, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(name_or_path).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(name_or_path)
        self.max_tokens = self.model.config.text_config.max_position_embeddings  # longer prompts are truncated

    def _finish(self, parts: list[Tensor]) -> Tensor:
        """Normalised float32 rows on CPU, so every arm is compared by cosine on the same device."""
        if not parts:
            return torch.empty(0, self.model.config.projection_dim)
        return F.normalize(torch.cat(parts).float(), dim=-1).cpu()

    @torch.no_grad()
    def embed_images(self, paths: Sequence[Path], batch_size: int = 64) -> Tensor:
        """[N, D] L2-normalised image embeddings, read and preprocessed a batch at a time."""
        parts = []
        for start in tqdm(range(0, len(paths), batch_size), desc="CLIP images", unit="batch", leave=False):
            images = [_rgb(p) for p in paths[start : start + batch_size]]
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
            parts.append(self.model.get_image_features(pixel_values=pixels))
        return self._finish(parts)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> Tensor:
        """[N, D] L2-normalised text embeddings: CLIP's own class prompts, the paper's "CLIP" arm."""
        parts = []
        for start in range(0, len(texts), batch_size):
            tokens = self.processor(text=list(texts[start : start + batch_size]), padding=True, truncation=True,
                                    max_length=self.max_tokens, return_tensors="pt").to(self.device)
            parts.append(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                      attention_mask=tokens["attention_mask"]))
        return self._finish(parts)


def _rgb(path: Path) -> Image.Image:
    """An image as RGB (ImageNet val has some greyscale and CMYK JPEGs), its file closed."""
    with Image.open(path) as image:
        return image.convert("RGB")


def _row_chunks(rows: int, cols: int) -> Iterator[slice]:
    """Row slices whose score matrices hold about ``_CHUNK_ELEMENTS`` entries, so big galleries fit in memory."""
    step = max(1, _CHUNK_ELEMENTS // max(cols, 1))
    for start in range(0, rows, step):
        yield slice(start, start + step)


def label_zipf(names: Sequence[str]) -> list[float]:
    """English Zipf frequency of each label (phrases included): the paper buckets accuracy by it."""
    return [wordfreq.zipf_frequency(name, "en") for name in names]


def accuracy_by_zipf(image_emb: Tensor, labels: Tensor, class_emb: Tensor, zipf: Sequence[float],
                     thresholds: Sequence[float] = ZIPF_THRESHOLDS) -> dict[str, float]:
    """Top-1 accuracy over the images whose class has Zipf ≥ t, per t (NaN when none); chance 1/classes."""
    if len(zipf) != class_emb.shape[0]:
        raise ValueError(f"zipf has {len(zipf)} values for {class_emb.shape[0]} classes")
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    class_emb = class_emb.float().cpu()
    image_emb = image_emb.float().cpu()
    pred = torch.cat([cosine_scores(image_emb[s], class_emb).argmax(1)
                      for s in _row_chunks(len(image_emb), len(class_emb))] or [torch.empty(0, dtype=torch.long)])
    correct = (pred == labels).float()
    image_zipf = torch.tensor(list(zipf), dtype=torch.float64)[labels]
    out = {}
    for t in thresholds:
        mask = image_zipf >= t
        out[f"zipf≥{t:g}"] = correct[mask].mean().item() if mask.any() else math.nan
    out["chance"] = 1 / class_emb.shape[0]
    return out


def recall_at_k(query_emb: Tensor, query_class: Sequence[int], image_emb: Tensor, image_labels: Tensor,
                k: int = 50) -> float:
    """Mean over queries of the share of their class's images among their k nearest images (cosine)."""
    if len(query_class) != query_emb.shape[0]:
        raise ValueError(f"{len(query_class)} query classes for {query_emb.shape[0]} queries")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if len(query_class) == 0:
        return math.nan
    query_class = torch.as_tensor(list(query_class), dtype=torch.long)
    image_labels = torch.as_tensor(image_labels, dtype=torch.long).cpu()
    sizes = torch.bincount(image_labels, minlength=int(query_class.max()) + 1)[query_class]
    if (sizes == 0).any():
        raise ValueError(f"queries of class(es) {sorted(set(query_class[sizes == 0].tolist()))[:5]} have no images")
    k = min(k, len(image_labels))
    query_emb, image_emb = query_emb.float().cpu(), image_emb.float().cpu()
    hits = torch.cat([
        (image_labels[cosine_scores(query_emb[s], image_emb).topk(k, dim=1).indices] == query_class[s, None]).sum(1)
        for s in _row_chunks(len(query_class), len(image_labels))
    ])
    return (hits / sizes).mean().item()


def accuracy_figure(results: dict[str, dict[str, float]]) -> Figure:
    """Accuracy by Zipf bucket, one bar per arm, chance as a dashed line: Table 4 at a glance."""
    buckets = [key for key in results[ARMS[0]] if key.startswith("zipf")]
    width = 0.8 / len(ARMS)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, arm in enumerate(ARMS):
        xs = [b + (i - (len(ARMS) - 1) / 2) * width for b in range(len(buckets))]
        ax.bar(xs, [results[arm][b] for b in buckets], width, label=arm)
    ax.axhline(results[ARMS[0]]["chance"], color="grey", linestyle="--", label="chance")
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("label English Zipf frequency")
    ax.set_ylabel("ImageNet top-1 accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return fig


def evaluate_imagenet(tower: ClipImageTower, images: ImageFolderClasses,
                      embed_pronunciations: Callable[[list[str]], Tensor], class_ipa: Sequence[str],
                      template: str = "a photo of a {}", nonwords: Sequence[tuple[str, int]] = (),
                      k: int = 50, out_dir: Path | None = None) -> dict[str, Any]:
    """Table 4: classes named by pronunciation, by CLIP text and by both, accuracy by label Zipf bucket;
    nonword → image Recall@K when nonwords are given.

    ``class_ipa`` are complete IPA prompts (the phonemised ``template`` with each class name), in the order
    of ``images.names``; ``nonwords`` are (complete IPA prompt, source class index) pairs. With ``out_dir``,
    the bars are saved as ``out_dir/plots/imagenet_accuracy.png``.
    """
    if len(class_ipa) != len(images.names):
        raise ValueError(f"class_ipa has {len(class_ipa)} prompts for {len(images.names)} classes")
    labels = torch.tensor([c for _, c in images.samples], dtype=torch.long)
    image_emb = tower.embed_images([p for p, _ in images.samples])
    with torch.no_grad():
        pron = F.normalize(embed_pronunciations(list(class_ipa)).detach().float().cpu(), dim=-1)
    text = tower.embed_texts([template.format(name) for name in images.names])
    classes = {"pronunciation": pron, "text": text, "pronunciation+text": F.normalize(pron + text, dim=-1)}
    zipf = label_zipf(images.names)
    results: dict[str, Any] = {"classes": len(images.names), "images": len(labels)}
    results |= {arm: accuracy_by_zipf(image_emb, labels, emb, zipf) for arm, emb in classes.items()}
    if nonwords:
        with torch.no_grad():
            queries = embed_pronunciations([ipa for ipa, _ in nonwords]).detach()
        results["nonword→image"] = {
            f"recall@{k}": recall_at_k(queries, [c for _, c in nonwords], image_emb, labels, k),
            "queries": len(nonwords),
            "chance": min(k, len(labels)) / len(labels),  # expected recall of a random ranking
        }
    if out_dir is not None:
        save_figure(accuracy_figure(results), "imagenet_accuracy", Path(out_dir))
    return results
