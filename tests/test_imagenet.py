"""ImageNet (Table 4) side of IPA-CLIP: ImageFolder classes and their names files, a tiny random CLIP
saved and loaded offline, and accuracy / Recall@K on embeddings whose answers are known."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import TINY_IMAGE_CLASSES, TINY_IMAGES_PER_CLASS, TinyClip

from data_modules.imagenet import ImageFolderClasses, ImageNetConfig
from phonclip.eval.image_classification import (
    ZIPF_THRESHOLDS,
    ClipImageTower,
    accuracy_by_zipf,
    evaluate_imagenet,
    label_zipf,
    recall_at_k,
)

CLASSES = TINY_IMAGE_CLASSES
IDS = sorted(CLASSES)
NAMES = ["tench", "goldfish", "great white shark", "dog"]
IMAGES_PER_CLASS = TINY_IMAGES_PER_CLASS


@pytest.fixture(scope="module")
def image_root(tiny_clip: TinyClip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny ImageFolder, copied so a stray non-image file can be added to it."""
    root = tmp_path_factory.mktemp("imagenet") / "val"
    shutil.copytree(tiny_clip.images, root)
    (root / IDS[0] / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def names_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same names in every accepted format."""
    d = tmp_path_factory.mktemp("names")
    raw = {i: CLASSES[i][0] for i in IDS}
    files = {
        "json_list": ("names_list.json", json.dumps([raw[i] for i in IDS])),
        "json_dict": ("names_dict.json", json.dumps(raw)),
        "class_index": ("imagenet_class_index.json",
                        json.dumps({str(n): [i, raw[i]] for n, i in enumerate(IDS)} | {"4": ["n09999999", "extra"]})),
        "tsv": ("names.tsv", "".join(f"{i}\t{raw[i]}\n" for i in IDS) + "\n"),
        "synset_mapping": ("LOC_synset_mapping.txt", "".join(f"{i} {raw[i]}\n" for i in IDS)),
    }
    for name, text in files.values():
        (d / name).write_text(text, encoding="utf-8")
    return {key: d / name for key, (name, _) in files.items()}


@pytest.fixture(scope="module")
def clip_dir(tiny_clip: TinyClip) -> Path:
    return tiny_clip.model


@pytest.fixture(scope="module")
def tower(clip_dir: Path) -> ClipImageTower:
    return ClipImageTower(str(clip_dir))


# --- ImageFolderClasses ----------------------------------------------------------------------------------


def test_folder_names_and_samples(image_root: Path) -> None:
    images = ImageFolderClasses(ImageNetConfig(root=str(image_root)))
    assert images.ids == IDS
    assert images.names == IDS
    assert len(images) == len(images.samples) == len(IDS) * IMAGES_PER_CLASS
    assert images.samples == sorted(images.samples)
    assert [c for _, c in images.samples] == [i for i in range(len(IDS)) for _ in range(IMAGES_PER_CLASS)]
    assert all(p.suffix == ".png" and p.parent.name == IDS[c] for p, c in images.samples)


@pytest.mark.parametrize("fmt", ["json_list", "json_dict", "class_index", "tsv", "synset_mapping"])
def test_names_file_formats(image_root: Path, names_files: dict[str, Path], fmt: str) -> None:
    images = ImageFolderClasses(ImageNetConfig(root=str(image_root), class_names=str(names_files[fmt])))
    assert images.names == NAMES


def test_subset_is_seeded(image_root: Path) -> None:
    def subset(seed: int) -> list[tuple[Path, int]]:
        return ImageFolderClasses(ImageNetConfig(root=str(image_root), max_images_per_class=2, seed=seed)).samples

    first = subset(0)
    assert first == subset(0) == sorted(first)
    assert [c for _, c in first] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert any(subset(seed) != first for seed in range(1, 6))
    everything = ImageFolderClasses(ImageNetConfig(root=str(image_root), max_images_per_class=10)).samples
    assert len(everything) == len(IDS) * IMAGES_PER_CLASS


def test_image_suffixes_case_insensitive(tmp_path: Path) -> None:
    (tmp_path / "n1" / "sub").mkdir(parents=True)
    for name in ("a.JPEG", "b.Png", "c.webp", "d.jpg", "e.bmp", ".hidden.png", "f.gif", "g.jpeg.txt"):
        (tmp_path / "n1" / name).write_bytes(b"")  # listing does not open files
    (tmp_path / "n1" / "sub" / "h.jpeg").write_bytes(b"")
    (tmp_path / ".cache").mkdir()
    images = ImageFolderClasses(ImageNetConfig(root=str(tmp_path)))
    assert images.ids == ["n1"]
    assert [p.relative_to(tmp_path / "n1").as_posix() for p, _ in images.samples] == [
        "a.JPEG", "b.Png", "c.webp", "d.jpg", "e.bmp", "sub/h.jpeg"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_errors(image_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing.*does not exist.*ImageFolder"):
        ImageFolderClasses(ImageNetConfig(root=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no class folders"):
        ImageFolderClasses(ImageNetConfig(root=str(tmp_path / "empty")))
    (tmp_path / "noimg" / "n000").mkdir(parents=True)
    _write(tmp_path / "noimg" / "n000" / "readme.txt", "x")
    with pytest.raises(ValueError, match=r"n000 has no images.*remove the folder"):
        ImageFolderClasses(ImageNetConfig(root=str(tmp_path / "noimg")))
    with pytest.raises(ValueError, match="max_images_per_class must be positive"):
        ImageFolderClasses(ImageNetConfig(root=str(image_root), max_images_per_class=0))

    def names_error(path: Path, error: type[Exception], match: str) -> None:
        with pytest.raises(error, match=match) as info:
            ImageFolderClasses(ImageNetConfig(root=str(image_root), class_names=str(path)))
        assert str(path) in str(info.value)

    names_error(tmp_path / "nope.json", FileNotFoundError, "does not exist.*None to use the folder names")
    partial = {i: CLASSES[i][0] for i in IDS[:-1]}
    names_error(_write(tmp_path / "partial.json", json.dumps(partial)), ValueError, f"no name for.*{IDS[-1]}")
    partial_tsv = "".join(f"{i}\t{n}\n" for i, n in partial.items())
    names_error(_write(tmp_path / "partial.tsv", partial_tsv), ValueError, f"no name for.*{IDS[-1]}")
    names_error(_write(tmp_path / "short.json", json.dumps(NAMES[:2])), ValueError, "one name string per class")
    names_error(_write(tmp_path / "broken.json", "{not json"), ValueError, "cannot read class names file")
    names_error(_write(tmp_path / "number.json", json.dumps({IDS[0]: 3})), ValueError, "name or an \\[id, name\\]")
    names_error(_write(tmp_path / "noname.tsv", f"{IDS[0]}\n"), ValueError, r"noname.tsv:1: expected 'id<TAB>name'")
    names_error(_write(tmp_path / "names.csv", "x"), ValueError, "unknown class names format '.csv'")
    (tmp_path / "latin1.txt").write_bytes(b"n01440764\tt\xe9nch\n")
    names_error(tmp_path / "latin1.txt", ValueError, "cannot read class names file")


# --- CLIP tower --------------------------------------------------------------------------------------------


def test_embed_images_and_texts(tower: ClipImageTower, image_root: Path) -> None:
    paths = [p for p, _ in ImageFolderClasses(ImageNetConfig(root=str(image_root))).samples]
    emb = tower.embed_images(paths)
    assert emb.shape == (len(paths), 16) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(paths)), atol=1e-5)
    assert torch.allclose(tower.embed_images(paths, batch_size=5), emb, atol=1e-5)
    assert tower.embed_images([]).shape == (0, 16)
    texts = [f"a photo of a {n}" for n in NAMES] + ["x" * 200]  # the last is longer than 32 positions
    text_emb = tower.embed_texts(texts)
    assert text_emb.shape == (len(texts), 16) and not text_emb.requires_grad
    assert torch.allclose(text_emb.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)
    assert torch.allclose(tower.embed_texts(texts, batch_size=2), text_emb, atol=1e-5)


# --- metrics ---------------------------------------------------------------------------------------------


def test_label_zipf() -> None:
    zipf = label_zipf(["dog", "tench", "great white shark", "qxzvbnq"])
    assert zipf[0] > 4.5 > zipf[1] > 0
    assert 0 < zipf[2] < zipf[0]
    assert zipf[3] == 0


def test_accuracy_by_zipf_known_answers() -> None:
    classes = torch.eye(4) * 3  # unnormalised on purpose
    labels = torch.tensor([0, 0, 1, 2, 3, 3])
    images = torch.eye(4)[labels] + 0.1
    zipf = [0.5, 2.0, 3.5, 5.0]
    right = accuracy_by_zipf(images, labels, classes, zipf)
    assert list(right) == ["zipf≥0", "zipf≥1.5", "zipf≥3", "zipf≥4.5", "chance"]
    assert right == {"zipf≥0": 1.0, "zipf≥1.5": 1.0, "zipf≥3": 1.0, "zipf≥4.5": 1.0, "chance": 0.25}
    wrong = accuracy_by_zipf(images, labels, classes[[1, 2, 3, 0]], zipf)
    assert all(wrong[f"zipf≥{t:g}"] == 0.0 for t in ZIPF_THRESHOLDS)
    # class 1 (zipf 2) and class 3 (zipf 5) swapped: images of classes 0 and 2 right, 1 and 3 wrong
    mixed = accuracy_by_zipf(images, labels, classes[[0, 3, 2, 1]], zipf, thresholds=(0, 1.5, 3, 4.5, 6))
    assert mixed["zipf≥0"] == pytest.approx(3 / 6)  # 0, 0, 2 of 0, 0, 1, 2, 3, 3
    assert mixed["zipf≥1.5"] == pytest.approx(1 / 4)  # 2 of 1, 2, 3, 3
    assert mixed["zipf≥3"] == pytest.approx(1 / 3)  # 2 of 2, 3, 3
    assert mixed["zipf≥4.5"] == 0.0
    assert math.isnan(mixed["zipf≥6"])
    with pytest.raises(ValueError, match="zipf has 3 values for 4 classes"):
        accuracy_by_zipf(images, labels, classes, zipf[:3])


def test_recall_at_k_known_answers() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])  # each class has one image near x and one near y
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # nearest: x -> 0, 2, 3, 1; y -> 1, 3, 2, 0
    assert recall_at_k(queries, [0, 0], images, labels, k=1) == pytest.approx(0.5)  # 1 of class 0's 2 images
    assert recall_at_k(queries, [1, 1], images, labels, k=1) == pytest.approx(0.0)
    assert recall_at_k(queries, [0, 1], images, labels, k=2) == pytest.approx(0.5)  # x: 0 (of 0, 2); y: 3 (of 1, 3)
    assert recall_at_k(queries, [1, 0], images, labels, k=3) == pytest.approx(0.75)  # x: 2, 3 of 2, 3; y: 1 of 0, 1
    assert recall_at_k(queries, [0, 1], images, labels, k=50) == pytest.approx(1.0)  # k clipped to 4
    assert math.isnan(recall_at_k(torch.empty(0, 2), [], images, labels))
    with pytest.raises(ValueError, match="have no images"):
        recall_at_k(queries, [0, 2], images, labels)


# --- end to end ------------------------------------------------------------------------------------------


def test_evaluate_imagenet_end_to_end(tower: ClipImageTower, image_root: Path, names_files: dict[str, Path],
                                      tmp_path: Path) -> None:
    images = ImageFolderClasses(ImageNetConfig(root=str(image_root), class_names=str(names_files["tsv"])))
    template = "a photo of a {}"
    prompts = [template.format(n) for n in images.names]
    calls: list[list[str]] = []

    def embed_pronunciations(ipa: list[str]) -> torch.Tensor:
        """Stands in for IPA-CLIP: the 'IPA' here is the text prompt, read by CLIP and scaled."""
        calls.append(ipa)
        return 3 * tower.embed_texts(ipa)

    nonwords = [(prompts[c], c) for c in range(len(prompts))]
    results = evaluate_imagenet(tower, images, embed_pronunciations, prompts, template=template,
                                nonwords=nonwords, k=5, out_dir=tmp_path)
    assert calls == [prompts, prompts]
    assert set(results) == {"classes", "images", "pronunciation", "text", "pronunciation+text", "nonword→image"}
    assert (results["classes"], results["images"]) == (4, 12)
    buckets = [f"zipf≥{t:g}" for t in ZIPF_THRESHOLDS]
    for arm in ("pronunciation", "text", "pronunciation+text"):
        assert list(results[arm]) == [*buckets, "chance"]
        assert results[arm]["chance"] == 0.25
        assert all(0 <= v <= 1 for v in results[arm].values())  # no empty bucket: "dog" has Zipf > 4.5
        assert results[arm] == results["text"]  # the fake pronunciations are the text prompts: all arms agree
    nonword = results["nonword→image"]
    assert nonword["queries"] == 4 and nonword["chance"] == pytest.approx(5 / 12)
    assert 0 <= nonword["recall@5"] <= 1
    labels = torch.tensor([c for _, c in images.samples])
    image_emb = tower.embed_images([p for p, _ in images.samples])
    assert nonword["recall@5"] == pytest.approx(
        recall_at_k(tower.embed_texts(prompts), range(4), image_emb, labels, k=5))
    assert (tmp_path / "plots" / "imagenet_accuracy.png").stat().st_size > 0
    with pytest.raises(ValueError, match="class_ipa has 3 prompts for 4 classes"):
        evaluate_imagenet(tower, images, embed_pronunciations, prompts[:3])


def test_pronunciation_plus_text_is_the_normalised_mean(tower: ClipImageTower, image_root: Path) -> None:
    """The "pronunciation+text" arm classifies with the renormalised sum of the two normalised arms."""
    images = ImageFolderClasses(ImageNetConfig(root=str(image_root)))
    labels = torch.tensor([c for _, c in images.samples])
    image_emb = tower.embed_images([p for p, _ in images.samples])
    centroids = F.normalize(torch.stack([image_emb[labels == c].mean(0) for c in range(4)]), dim=-1)
    fake = torch.roll(centroids, 1, dims=0)
    results = evaluate_imagenet(tower, images, lambda ipa: fake[: len(ipa)], ["ipa"] * 4)
    both = F.normalize(fake + F.normalize(tower.embed_texts([f"a photo of a {n}" for n in images.names])), dim=-1)
    expected = accuracy_by_zipf(image_emb, labels, both, label_zipf(images.names))
    assert results["pronunciation+text"] == expected
    assert results["pronunciation"] == accuracy_by_zipf(image_emb, labels, fake, label_zipf(images.names))
    assert "nonword→image" not in results
