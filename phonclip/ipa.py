"""IPA normalisation, segmentation and the IPA tokenizer, so every module reads IPA the same way.

Normalisation (``normalize_ipa``) is the one place IPA strings are cleaned; segmentation and the
tokenizer always apply it first, and it is idempotent.

Segmentation follows panphon's longest-match parse, on top of which:

- a space is a word boundary and becomes the segment ``" "`` (``WORD_BOUNDARY``);
- stress marks ``ˈ`` and ``ˌ`` are segments of their own (when kept), where they were written;
- length marks, tie bars and every other diacritic belong to the segment they follow: ``t͡ʃ``,
  ``aː``, ``ã`` and ``kʰ`` are single segments; tone letters (``˥ ˦ ˧ ˨ ˩``) are segments of
  their own, as in panphon, so a contour ``˥˩`` is two segments;
- what panphon cannot parse never vanishes: the whole written segment (a base character with its
  diacritics, length marks and tie bars) becomes one segment that panphon does not know, e.g.
  ``a͡ɪ``, ``aˑ`` or a tone digit ``5``, which the tokenizer maps to ``<unk>`` and counts.
"""

from __future__ import annotations

import collections
import csv
import functools
import json
import re
import unicodedata
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import panphon
import torch

WORD_BOUNDARY = " "
PRIMARY_STRESS = "ˈ"
SECONDARY_STRESS = "ˌ"
STRESS_MARKS = (PRIMARY_STRESS, SECONDARY_STRESS)
TIE = "\u0361"  # combining double inverted breve, panphon's tie bar
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>")

# Invisible characters espeak and web text leave behind: zero-width space / non-joiner / joiner,
# word joiner and byte-order mark.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"

# Look-alikes mapped to the IPA character they stand for. Each is unambiguous in IPA text:
_LOOKALIKES = {
    # ASCII g -> IPA script g (U+0261), the voiced velar stop panphon knows
    "g": "ɡ",
    # ASCII colon and modifier letter colon -> length mark
    ":": "ː",
    "\ua789": "ː",
    # ASCII apostrophe -> primary stress (the common ASCII-IPA convention)
    "'": PRIMARY_STRESS,
    # tie bar below -> tie bar above (panphon writes ties above)
    "\u035c": TIE,
    # withdrawn IPA affricate ligatures
    "ʦ": "t͡s",
    "ʣ": "d͡z",
    "ʧ": "t͡ʃ",
    "ʤ": "d͡ʒ",
    "ʨ": "t͡ɕ",
    "ʥ": "d͡ʑ",
    # rhotacised vowels, which IPA defines as vowel + rhotic hook
    "ɚ": "ə˞",
    "ɝ": "ɜ˞",
    # non-IPA barred small capitals (espeak's reduced vowels): centralised ɪ and ʊ
    "ᵻ": "ɪ̈",
    "ᵿ": "ʊ̈",
    # turned e (U+01DD) typed for schwa; Greek letters typed for their Latin IPA look-alikes
    "ǝ": "ə",
    "ε": "ɛ",
    "φ": "ɸ",
    "γ": "ɣ",
    # superscript Chao tone numbers -> tone letters (panphon's own convention)
    "¹": "˩",
    "²": "˨",
    "³": "˧",
    "⁴": "˦",
    "⁵": "˥",
}
_MAP_KEEP_STRESS = str.maketrans(_LOOKALIKES)
_MAP_DROP_STRESS = str.maketrans(
    {**_LOOKALIKES, "'": None, PRIMARY_STRESS: None, SECONDARY_STRESS: None}
)
_DROP_INVISIBLE = str.maketrans(dict.fromkeys(_INVISIBLE))
# espeak-ng language-switch markers such as "(en)" or "(en-us)".
_LANG_MARKER = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]{1,8})*\)")


# Spellings panphon cannot parse, rewritten to the nearest one it can (pattern, replacement), applied
# after NFD:
_REWRITES = (
    # a modifier letter written twice (espeak's "zʲʲ") means it once
    (re.compile(r"([ʰʲʷˠˤⁿˡ])\1+"), r"\1"),
    # glottalisation written after a tone (espeak's Vietnamese "a˩ˀ") belongs to the vowel before
    (re.compile(r"[˥˦˧˨˩][˥˦˧˨˩ˀ]*ˀ"), lambda m: "ˀ" * m[0].count("ˀ") + m[0].replace("ˀ", "")),
    # voiceless raised r (Czech ř after a voiceless consonant): panphon has only the voiced r̝
    (re.compile("r(?:\u031d[\u030a\u0325]+|[\u030a\u0325]+\u031d)"), "r\u031d"),
)


def _strip_markers(s: str) -> str:
    while "(" in s:
        stripped = _LANG_MARKER.sub("", s)
        if stripped == s:
            break
        s = stripped
    return s


def normalize_ipa(s: str, keep_stress: bool = True) -> str:
    """The one IPA clean-up, so strings from espeak, G2P and corpora compare and tokenise alike.

    NFD; invisible joiners and espeak language markers such as ``(en)`` removed; look-alikes in
    ``_LOOKALIKES`` mapped to IPA; stress marks optionally dropped; whitespace runs become a space;
    spellings panphon cannot parse rewritten by ``_REWRITES``.
    """
    s = unicodedata.normalize("NFD", s).translate(_DROP_INVISIBLE)
    s = _strip_markers(s).translate(_MAP_KEEP_STRESS if keep_stress else _MAP_DROP_STRESS)
    s = unicodedata.normalize("NFD", " ".join(_strip_markers(s).split()))
    for pattern, replacement in _REWRITES:
        s = pattern.sub(replacement, s)
    return s


def phonemize(text: str, lang: str) -> str:
    """Normalised IPA of ``text`` as espeak-ng reads it in language ``lang`` (raises
    ``data_modules.espeak.UnknownVoiceError`` for a language espeak lacks)."""
    from data_modules.espeak import Espeak

    return normalize_ipa(Espeak.shared().phonemize(text, voice=lang))


@functools.cache
def _table() -> panphon.FeatureTable:
    return panphon.FeatureTable()


def feature_names() -> list[str]:
    """panphon's articulatory feature names, in the column order of every feature vector here."""
    return list(_table().names)


@functools.cache
def inventory() -> tuple[str, ...]:
    """Every segment panphon knows, sorted: the corpus-independent core of the IPA vocabulary."""
    return tuple(sorted(_table().seg_dict))


@functools.cache
def _feature_rows() -> dict[str, np.ndarray]:
    names = feature_names()
    return {
        seg: np.array(feats.numeric(names), dtype=np.int8)
        for seg, feats in _table().seg_dict.items()
    }


def segment_features(segments: Iterable[str]) -> np.ndarray:
    """panphon feature vectors [n, n_features] in {-1, 0, 1}; zero rows for segments it lacks."""
    rows = _feature_rows()
    zero = np.zeros(len(feature_names()), dtype=np.int8)
    out = [rows.get(seg, zero) for seg in segments]
    return np.stack(out) if out else np.zeros((0, len(zero)), dtype=np.int8)


@functools.cache
def feature_weights() -> np.ndarray:
    """panphon's feature saliences by feature name; tone features, which it leaves out, get 0.25."""
    with files("panphon").joinpath("data", "feature_weights.csv").open() as f:
        row = next(csv.DictReader(f))
    return np.array([float(row.get(name, 0.25)) for name in feature_names()])


def _is_diacritic(ch: str) -> bool:
    """Combining marks and modifier letters (length, aspiration, rhotic hook); not stress, tone."""
    cat = unicodedata.category(ch)
    return (cat[0] == "M" or cat == "Lm" or ch == "˞") and ch not in STRESS_MARKS


def _known_prefix(word: str, start: int) -> int:
    """Length of the longest segment panphon knows at ``word[start:]`` (0 when none)."""
    node, best = _table().seg_trie, 0
    leaf = panphon.FeatureTable.TRIE_LEAF_MARKER
    for pos in range(start, len(word)):
        node = node.get(word[pos])
        if node is None:
            break
        if leaf in node:
            best = pos + 1 - start
    return best


def _written_segment_end(word: str, pos: int) -> int:
    """End of the written segment whose diacritics, length marks and tie bars start at ``pos``."""
    while pos < len(word):
        ch = word[pos]
        if ch == TIE:
            pos += 2
        elif _is_diacritic(ch) and not _known_prefix(word, pos):
            pos += 1
        else:
            break
    return min(pos, len(word))


@functools.lru_cache(maxsize=1 << 17)
def _segment_word(word: str) -> tuple[str, ...]:
    """Segments of one normalised word (no spaces); see the module docstring for the rules."""
    out, i = [], 0
    while i < len(word):
        if word[i] in STRESS_MARKS:
            out.append(word[i])
            i += 1
            continue
        known = _known_prefix(word, i)
        end = _written_segment_end(word, i + max(known, 1))
        out.append(word[i:end])
        i = end
    return tuple(out)


def _segment_normalized(ipa: str) -> list[str]:
    out: list[str] = []
    for k, word in enumerate(ipa.split(WORD_BOUNDARY)):
        if k:
            out.append(WORD_BOUNDARY)
        out.extend(_segment_word(word))
    return out


def segment(ipa: str) -> list[str]:
    """Phone segments of normalised ``ipa`` (stress kept if written), with ``" "`` between words."""
    return _segment_normalized(normalize_ipa(ipa))


def is_known(seg: str) -> bool:
    """Whether ``seg`` is a word boundary, a stress mark or a segment panphon has features for."""
    return seg == WORD_BOUNDARY or seg in STRESS_MARKS or seg in _table().seg_dict


def unknown_segments(ipa: str) -> list[str]:
    """The segments of ``ipa`` panphon cannot parse, in order, for filtering and reporting data."""
    return [seg for seg in segment(ipa) if not is_known(seg)]


class IpaTokenizer:
    """IPA segments to ids from a fixed vocabulary, so ids agree across runs, corpora and languages.

    Vocabulary: ``SPECIALS`` (``<pad>`` = 0), the word boundary ``" "``, the stress marks, then
    panphon's full segment inventory sorted by code point. Unknown segments encode as ``<unk>`` and
    are counted in ``self.unknown`` (per process: each DataLoader worker counts its own).
    """

    def __init__(self, keep_stress: bool = True, vocab: list[str] | None = None) -> None:
        self.keep_stress = keep_stress
        self.vocab = (
            list(vocab)
            if vocab is not None
            else [*SPECIALS, WORD_BOUNDARY, *STRESS_MARKS, *inventory()]
        )
        self.ids = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            raise ValueError("IpaTokenizer vocab has duplicate entries")
        missing = [tok for tok in (*SPECIALS, WORD_BOUNDARY, *STRESS_MARKS) if tok not in self.ids]
        if missing:
            raise ValueError(f"IpaTokenizer vocab lacks the special tokens {missing}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.mask_id = (
            self.ids[t] for t in SPECIALS
        )
        self.word_boundary_id = self.ids[WORD_BOUNDARY]
        self.unknown: collections.Counter[str] = collections.Counter()
        self._word_cache: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def n_features(self) -> int:
        return len(feature_names())

    def segments(self, ipa: str) -> list[str]:
        """The segments ``encode`` maps to ids, one per id."""
        return _segment_normalized(normalize_ipa(ipa, self.keep_stress))

    def _encode_word(self, word: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
        hit = self._word_cache.get(word)
        if hit is None:
            segs = _segment_word(word)
            hit = (
                tuple(self.ids.get(s, self.unk_id) for s in segs),
                tuple(s for s in segs if s not in self.ids),
            )
            if len(self._word_cache) >= 1 << 18:
                self._word_cache.clear()
            self._word_cache[word] = hit
        return hit

    def encode(self, ipa: str) -> list[int]:
        """Ids of the segments of normalised ``ipa`` (no bos/eos added), counting unknowns."""
        ids: list[int] = []
        for k, word in enumerate(normalize_ipa(ipa, self.keep_stress).split(WORD_BOUNDARY)):
            if k:
                ids.append(self.word_boundary_id)
            word_ids, unknown = self._encode_word(word)
            ids.extend(word_ids)
            if unknown:
                self.unknown.update(unknown)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """IPA for ``ids``: pad, bos and eos skipped, ``<unk>`` and ``<mask>`` written by name."""
        skip = (self.pad_id, self.bos_id, self.eos_id)
        return "".join(self.vocab[int(i)] for i in ids if int(i) not in skip)

    def feature_matrix(self) -> torch.Tensor:
        """Articulatory features [vocab_size, n_features] in {-1, 0, 1}, zero for specials.

        The phone encoder adds a projection of these rows to each token embedding, so segments never
        seen in training still embed near the segments they share features with.
        """
        return torch.from_numpy(segment_features(self.vocab).astype(np.float32))

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer with identical ids (for checkpoints)."""
        return {"type": "IpaTokenizer", "keep_stress": self.keep_stress, "vocab": self.vocab}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IpaTokenizer:
        """The tokenizer ``to_dict`` described, with its stored vocabulary."""
        if d.get("type") != "IpaTokenizer":
            raise ValueError(f"not an IpaTokenizer dict: type={d.get('type')!r}")
        return cls(keep_stress=bool(d["keep_stress"]), vocab=list(d["vocab"]))

    def save(self, path: str | Path) -> None:
        """Write ``to_dict`` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> IpaTokenizer:
        """Read a tokenizer written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
