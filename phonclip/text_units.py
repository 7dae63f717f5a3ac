"""Orthographic units with the IpaTokenizer interface, for the ablation "text units vs IPA units".

Units are the UTF-8 bytes of the lowercased, NFD-normalised, whitespace-collapsed orthography
(the byte-level scheme of ByT5): the vocabulary is ``SPECIALS`` + all 256 bytes, fixed and
corpus-independent, so text in any script, seen or unseen, is representable and nothing is ever
unknown. ASCII letters (and, after NFD, the base letters of most Latin-script text) are one unit
each; other characters take two to four units.
"""

from __future__ import annotations

import collections
import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from phonclip.ipa import SPECIALS, feature_names

_BYTE_OFFSET = len(SPECIALS)


def normalize_text(text: str) -> str:
    """The orthography the units are taken from: lowercased, NFD, single spaces."""
    return unicodedata.normalize("NFD", " ".join(text.lower().split()))


def _byte_name(b: int) -> str:
    return chr(b) if 0x20 <= b < 0x7F else f"<0x{b:02X}>"


class CharTokenizer:
    """Byte-level orthographic tokenizer, a drop-in for ``IpaTokenizer`` in models and data."""

    def __init__(self) -> None:
        self.vocab = [*SPECIALS, *(_byte_name(b) for b in range(256))]
        self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.mask_id = range(len(SPECIALS))
        self.word_boundary_id = _BYTE_OFFSET + ord(" ")
        self.unknown: collections.Counter[str] = (
            collections.Counter()
        )  # always empty: every byte has an id

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def n_features(self) -> int:
        return len(feature_names())

    def segments(self, text: str) -> list[str]:
        """One unit per id of ``encode``: printable ASCII as is, other bytes as ``<0xNN>``."""
        return [self.vocab[i] for i in self.encode(text)]

    def encode(self, text: str) -> list[int]:
        """Unit ids of ``text`` (normalised first), no ``<bos>``/``<eos>``."""
        return [_BYTE_OFFSET + b for b in normalize_text(text).encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        """Text for ``ids``; specials are skipped and broken UTF-8 becomes U+FFFD."""
        data = bytes(int(i) - _BYTE_OFFSET for i in ids if int(i) >= _BYTE_OFFSET)
        return data.decode("utf-8", errors="replace")

    def feature_matrix(self) -> torch.Tensor:
        """All-zero [vocab_size, n_features]: letters have no articulatory features.

        Zeros (not None) keep the phone encoder's architecture identical across the two arms of the
        ablation; the feature term then contributes nothing.
        """
        return torch.zeros(self.vocab_size, self.n_features)

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer (for checkpoints)."""
        return {"type": "CharTokenizer", "vocab": self.vocab}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """The tokenizer ``to_dict`` described; refuses another tokenizer's or vocabulary's dict."""
        tok = cls()
        if d.get("type") != "CharTokenizer" or d.get("vocab") != tok.vocab:
            raise ValueError(f"not a CharTokenizer dict of this version: type={d.get('type')!r}")
        return tok

    def save(self, path: str | Path) -> None:
        """Write ``to_dict`` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Read a tokenizer written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
