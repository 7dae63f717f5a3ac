"""ImageNet val in ImageFolder layout with readable class names, for classifying images by pronunciation.

Layout: ``<root>/<class id>/<image files>`` (class ids are usually WordNet ids such as ``n01440764``).
Readable names come from the folder names or from a names file, detected by suffix:

- ``.json``: a list of names in sorted-id order, a dict ``{id: name}``, or the common
  ``imagenet_class_index.json`` format ``{"0": ["n01440764", "tench"], ...}``;
- ``.tsv`` / ``.txt``: one ``id<TAB>name`` per line (without a tab, the first space separates them, as
  in ``LOC_synset_mapping.txt``).

Each name is the first synonym before a comma, with underscores as spaces: ``"tench, Tinca tinca"`` and
``"great_white_shark"`` become ``"tench"`` and ``"great white shark"``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})  # compared lower-cased


@dataclass
class ImageNetConfig:
    """Where ImageNet val is, how its classes are named, and an optional seeded subset for quick runs."""

    root: str = "data/imagenet/val"  # ImageFolder layout: root/<class id>/<image files>
    class_names: str | None = None  # file mapping class id -> readable name; None: the folder names
    max_images_per_class: int | None = None  # a seeded subset per class for quick runs
    seed: int = 0


def readable_name(name: str) -> str:
    """The first synonym, so a class is named the way a person would say it."""
    return name.split(",")[0].replace("_", " ").strip()


def _parse_json(data: Any, ids: list[str], path: Path) -> dict[str, str]:
    """``{id: raw name}`` from any of the three JSON layouts in the module docstring."""
    if isinstance(data, list):
        if len(data) != len(ids) or not all(isinstance(x, str) for x in data):
            raise ValueError(
                f"{path}: a JSON list must hold one name string per class folder in sorted-id order "
                f"({len(ids)} folders, {len(data)} entries); or use a dict {{id: name}}"
            )
        return dict(zip(ids, data, strict=True))
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if isinstance(value, str):
                out[str(key)] = value
            elif isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) for x in value):
                out[value[0]] = value[1]  # imagenet_class_index.json: {"0": ["n01440764", "tench"]}
            else:
                raise ValueError(
                    f"{path}: entry {key!r} must be a name or an [id, name] pair, got {value!r}"
                )
        return out
    raise ValueError(f"{path}: expected a JSON list of names or a dict {{id: name}}, got {type(data).__name__}")


def _parse_lines(text: str, path: Path) -> dict[str, str]:
    """``{id: raw name}`` from ``id<TAB>name`` lines (or ``id name`` when a line has no tab)."""
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 1) if "\t" in line else line.strip().split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise ValueError(f"{path}:{number}: expected 'id<TAB>name', got {line!r}")
        out[parts[0].strip()] = parts[1]
    return out


def read_class_names(path: Path, ids: list[str]) -> list[str]:
    """Readable name of each of ``ids`` from a names file; errors say which file and what to fix."""
    if not path.is_file():
        raise FileNotFoundError(f"class names file {path} does not exist; set class_names to a .json/.tsv/.txt "
                                "file mapping class id -> name, or to None to use the folder names")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".json":
            raw = _parse_json(json.loads(text), ids, path)
        elif suffix in (".tsv", ".txt"):
            raw = _parse_lines(text, path)
        else:
            raise ValueError(f"{path}: unknown class names format {suffix!r}; use .json, .tsv or .txt")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read class names file {path} ({error}); it must be UTF-8 .json/.tsv/.txt") from error
    missing = [i for i in ids if i not in raw]
    if missing:
        raise ValueError(f"{path} has no name for class folder(s) {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}; add them or remove those folders")
    names = [readable_name(raw[i]) for i in ids]
    empty = [i for i, n in zip(ids, names, strict=True) if not n]
    if empty:
        raise ValueError(f"{path}: empty name for class(es) {empty[:5]}")
    return names


class ImageFolderClasses:
    """ImageNet val in ImageFolder layout with readable class names, so classes can be named by text or
    pronunciation."""

    def __init__(self, cfg: ImageNetConfig) -> None:
        root = Path(cfg.root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageNet root {root} does not exist or is not a folder; set root to ImageNet "
                                    "val in ImageFolder "
                                    "layout (root/<class id>/<image files>)")
        if cfg.max_images_per_class is not None and cfg.max_images_per_class < 1:
            raise ValueError(f"max_images_per_class must be positive or None, got {cfg.max_images_per_class}")
        self.ids: list[str] = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.ids:
            raise ValueError(f"ImageNet root {root} has no class folders; expected root/<class id>/<image files>")
        self.samples: list[tuple[Path, int]] = []
        for index, class_id in enumerate(self.ids):
            files = sorted(p for p in (root / class_id).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not files:
                raise ValueError(f"class folder {root / class_id} has no images "
                                 f"({', '.join(sorted(IMAGE_SUFFIXES))}); add some or remove the folder")
            if cfg.max_images_per_class is not None and len(files) > cfg.max_images_per_class:
                rng = random.Random(f"{cfg.seed}/{class_id}")  # per class: other folders do not change it
                files = sorted(rng.sample(files, cfg.max_images_per_class))
            self.samples += [(p, index) for p in files]
        self.names: list[str] = (
            [readable_name(i) for i in self.ids] if cfg.class_names is None
            else read_class_names(Path(cfg.class_names), self.ids)
        )

    def __len__(self) -> int:
        return len(self.samples)
