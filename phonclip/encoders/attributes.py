"""IPA-chart attributes of phones and IPA-CLIP's phoneme embedding p = xᵀW (Matsuhira et al. 2023).

Each token gets a sparse *magnitude* vector x over ``ATTRIBUTES``: flags (0/1) for consonant, voicing,
every place and manner of the IPA consonant chart, vowel, roundedness and the special tokens; vowel
height and backness as continuous values in [0, 1]; length as 1 (``ː``) or 0.5 (``ˑ``).
``PhonemeEmbedding`` projects x with a matrix W that is frozen at its random init ("frozen", the paper's
best), trained ("trainable"), or replaces the whole thing with a learned lookup ("lookup", the baseline).

Rules. A segment is NFD-normalised with ``normalize_ipa``; its *base* is the longest prefix (after any
pre-posed ``ˀ`` / ``ⁿ``) that is one of panphon's base segments (``ipa_bases.csv``: ``t``, ``t̪``,
``t͡ʃ``, ``ç``, ``a`` …); everything after the base is diacritics.

- Vowel: the base is a letter of the IPA vowel chart (``_VOWELS``: height close 1, near-close 5/6,
  close-mid 4/6, mid 1/2, open-mid 2/6, near-open 1/6, open 0; backness front 0, near-front 1/4,
  central 1/2, near-back 3/4, back 1). Diacritics before any tie bar move it: centralised ``̈`` sets
  backness 1/2, mid-centralised ``̽`` halves the distance to (1/2, 1/2), raised ``̝`` / lowered ``̞``
  shift height by 1/6, advanced ``̟`` / retracted ``̠`` shift backness by 1/4 (clamped to [0, 1]);
  more-rounded ``̹`` makes it rounded (less-rounded ``̜`` leaves a rounded vowel rounded). Nasalisation,
  length, tone, the rhotic hook ``˞``, voice quality and non-syllabic ``̯`` leave height, backness and
  roundedness alone, so ``i̯`` is a vowel and a diphthong panphon lacks (``a͡ɪ``) reads as its first vowel.
  espeak's Mandarin apical vowels ``ɿ ʅ`` (not IPA, not in panphon) read as ``ɨ``.
- Consonant: any other base panphon knows (syllabic consonants such as ``n̩`` are consonants).
  Voicing is panphon's ``voi`` of the whole segment (so ``̥`` devoices); for a segment panphon lacks, the
  base's ``voi`` flipped by ``̥`` / ``̊`` / ``̬``.
  Manner, from the base's panphon features: ``velaric+`` click; ``son-``: ``cont-`` plosive, or affricate
  when ``delrel+``; ``cont+`` fricative, lateral fricative when ``lat+``; ``son+``: ``nas+ cont-`` nasal,
  other ``cont-`` plosive (``ʔ``), ``cont+`` approximant, lateral approximant when ``lat+``.
  Place, from the base's panphon features: ``lab+`` bilabial; ``cor+``: ``ant+`` dental when ``distr+``
  else alveolar, ``ant-`` postalveolar when ``distr+`` else retroflex; dorsal (skipped for clicks, whose
  velar rear closure is common to all of them): ``hi+`` palatal when ``back-`` else velar, ``hi- back+``
  uvular, ``lo+ back+`` pharyngeal; none of these: glottal (``h ɦ ʔ`` via the table below). Several
  places are kept for doubly articulated and alveolo-palatal segments (``w`` {bilabial, velar}, ``k͡p``,
  ``ɕ`` {postalveolar, palatal}, ``ɧ``). Modifier letters add secondary places: ``ʷ`` bilabial + velar,
  ``ᶣ`` bilabial + palatal, ``ʲ`` palatal, ``ˠ`` and ``̴`` velar, ``ˤ`` pharyngeal.
  Length ``ː`` anywhere in a vowel or consonant sets ``long`` (``ˑ``: 0.5). ``voiced`` is set for
  consonants only (vowels are voiced by default, so it would only blur the consonant block).
- Base-letter tables, only where panphon's features cannot decide or disagree with the IPA chart:
  ``_MANNER_BY_BASE``: trills (``r r̪ ʀ ʙ``) and taps (``ɾ ɽ ɺ``) have the same features as approximants in
  panphon (it has no trill / tap features); implosives (``ɓ ɗ ʄ ɠ ʛ``) share ``cg+ voi+`` with creaky and
  glottalised stops; ``h ɦ`` are ``son+`` in panphon but glottal fricatives on the chart.
  ``_PLACE_BY_BASE``: panphon has no labiodental feature (``ɱ f v ʋ p͡f b͡v``, an affricate taking its
  release's place as ``t͡ʃ`` does); it gives the glottals ``h ɦ ʔ`` the uvulars' ``hi- lo- back+``; and
  it disagrees with the chart on ``ɹ`` (``hi+``: palatal), ``ɫ`` (no velarisation), ``ɮ d͡ɮ`` (``ant-
  distr-``: retroflex), ``d̪͡ɮ̪`` (``distr-``: alveolar), ``ʎ c͡ç ɟ͡ʝ`` (coronal, where the chart has
  palatal) and ``ɧ`` (``back-``, where it is the simultaneous postalveolar-velar fricative).
- Tokens: ``" "`` word boundary, ``ˈ`` / ``ˌ`` primary / secondary stress, ``.`` syllable boundary,
  punctuation (Unicode category P*, plus ``| ‖``) punctuation, ``<unk> <bos> <eos> <mask>`` their own
  columns, ``<pad>`` all zeros. Tone letters (``˥ ˦ ˧ ˨ ˩``, with any diacritic) are all zeros: the
  chart attributes have no tone column, so under the attribute embeddings every tone embeds as the zero
  vector (position embeddings still tell where it stood). Anything else (a symbol panphon has no base
  for) gets the ``unknown`` column, as the tokenizer would map it to ``<unk>``.
"""

from __future__ import annotations

import csv
import functools
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phonclip.ipa import (
    PRIMARY_STRESS,
    SECONDARY_STRESS,
    TIE,
    WORD_BOUNDARY,
    feature_names,
    normalize_ipa,
    segment_features,
)

PLACES: tuple[str, ...] = ("bilabial", "labiodental", "dental", "alveolar", "postalveolar", "retroflex",
                           "palatal", "velar", "uvular", "pharyngeal", "glottal")
MANNERS: tuple[str, ...] = ("plosive", "nasal", "trill", "tap", "fricative", "lateral fricative", "affricate",
                            "approximant", "lateral approximant", "implosive", "click")
# One flag per special token except <pad>, which embeds as all zeros.
_SPECIAL_COLUMNS = {"<unk>": "unknown", "<bos>": "bos", "<eos>": "eos", "<mask>": "mask"}
ATTRIBUTES: tuple[str, ...] = (
    "consonant", "voiced", *PLACES, *MANNERS, "vowel", "height", "backness", "rounded", "long",
    "primary stress", "secondary stress", "syllable boundary", "word boundary", "punctuation",
    *_SPECIAL_COLUMNS.values(),
)
_COLUMN = {name: i for i, name in enumerate(ATTRIBUTES)}

SYLLABLE_BOUNDARY = "."
TONE_LETTERS = "˥˦˧˨˩\ua712\ua713\ua714\ua715\ua716"
_EXTRA_PUNCTUATION = "|‖"  # IPA minor / major group marks: U+007C is a math symbol, not P*
LONG, HALF_LONG = "ː", "ˑ"


@dataclass(frozen=True)
class Consonant:
    """Voicing, place(s) and manner: the three consonant attributes IPA-CLIP's analyses compare."""

    voiced: bool
    places: frozenset[str]  # ⊆ PLACES, never empty; several for doubly articulated / secondary places
    manner: str  # one of MANNERS


@dataclass(frozen=True)
class Vowel:
    """Position on the vowel chart, continuous so nearby vowels get nearby attribute vectors."""

    height: float  # 1.0 close … 0.0 open
    backness: float  # 0.0 front, 0.5 central, 1.0 back
    rounded: bool


_H = {"close": 1.0, "near-close": 5 / 6, "close-mid": 4 / 6, "mid": 0.5, "open-mid": 2 / 6,
      "near-open": 1 / 6, "open": 0.0}
_B = {"front": 0.0, "near-front": 0.25, "central": 0.5, "near-back": 0.75, "back": 1.0}
# The IPA vowel chart: letter -> (height, backness, rounded).
_VOWELS: dict[str, Vowel] = {
    letter: Vowel(_H[h], _B[b], r)
    for letter, h, b, r in (
        ("i", "close", "front", False), ("y", "close", "front", True),
        ("ɨ", "close", "central", False), ("ʉ", "close", "central", True),
        ("ɯ", "close", "back", False), ("u", "close", "back", True),
        ("ɪ", "near-close", "near-front", False), ("ʏ", "near-close", "near-front", True),
        ("ʊ", "near-close", "near-back", True),
        ("e", "close-mid", "front", False), ("ø", "close-mid", "front", True),
        ("ɘ", "close-mid", "central", False), ("ɵ", "close-mid", "central", True),
        ("ɤ", "close-mid", "back", False), ("o", "close-mid", "back", True),
        ("ə", "mid", "central", False),
        ("ɛ", "open-mid", "front", False), ("œ", "open-mid", "front", True),
        ("ɜ", "open-mid", "central", False), ("ɞ", "open-mid", "central", True),
        ("ʌ", "open-mid", "back", False), ("ɔ", "open-mid", "back", True),
        ("æ", "near-open", "front", False), ("ɐ", "near-open", "central", False),
        ("a", "open", "front", False), ("ɶ", "open", "front", True),
        ("ɑ", "open", "back", False), ("ɒ", "open", "back", True),
        # espeak's Mandarin apical vowels (not IPA, unknown to panphon): close central unrounded like ɨ
        ("ɿ", "close", "central", False), ("ʅ", "close", "central", False),
    )
}
_CENTRALISED, _MID_CENTRALISED = "\u0308", "\u033d"
_RAISED, _LOWERED, _ADVANCED, _RETRACTED = "\u031d", "\u031e", "\u031f", "\u0320"
_MORE_ROUNDED = "\u0339"
_VOICELESS, _VOICED = "\u0325\u030a", "\u032c"
_PRE_MODIFIERS = "ˀⁿ"  # written before the base (pre-glottalised, pre-nasalised)

# Manner where panphon's features cannot decide (see the module docstring).
_MANNER_BY_BASE = {
    **dict.fromkeys(("r", "r̪", "ʀ", "ʙ"), "trill"),
    **dict.fromkeys(("ɾ", "ɽ", "ɺ"), "tap"),
    **dict.fromkeys(("ɓ", "ɗ", "ʄ", "ɠ", "ʛ"), "implosive"),
    **dict.fromkeys(("h", "ɦ"), "fricative"),
}
# Primary place where panphon's features cannot decide or disagree with the IPA chart (see above).
_PLACE_BY_BASE = {
    **dict.fromkeys(("ɱ", "f", "v", "ʋ", "p͡f", "b͡v"), frozenset({"labiodental"})),
    **dict.fromkeys(("h", "ɦ", "ʔ"), frozenset({"glottal"})),
    "ɹ": frozenset({"alveolar"}),
    "ɫ": frozenset({"alveolar", "velar"}),
    **dict.fromkeys(("ɮ", "d͡ɮ"), frozenset({"alveolar"})),
    "d̪͡ɮ̪": frozenset({"dental"}),
    **dict.fromkeys(("ʎ", "c͡ç", "ɟ͡ʝ"), frozenset({"palatal"})),
    "ɧ": frozenset({"postalveolar", "velar"}),
}
# Secondary articulations written as modifier letters (or the velarised-or-pharyngealised overlay).
_SECONDARY_PLACES = {
    "ʷ": ("bilabial", "velar"), "ᶣ": ("bilabial", "palatal"), "ʲ": ("palatal",), "ˠ": ("velar",),
    "\u0334": ("velar",), "ˤ": ("pharyngeal",),
}


def _nfd_keys(table: Mapping[str, object]) -> dict:
    return {unicodedata.normalize("NFD", k): v for k, v in table.items()}


_VOWELS = _nfd_keys(_VOWELS)
_MANNER_BY_BASE = _nfd_keys(_MANNER_BY_BASE)
_PLACE_BY_BASE = _nfd_keys(_PLACE_BY_BASE)


@functools.cache
def _bases() -> frozenset[str]:
    """panphon's base segments (letters, ties and the few base + diacritic entries such as ``t̪``)."""
    with files("panphon").joinpath("data", "ipa_bases.csv").open(encoding="utf-8") as f:
        return frozenset(unicodedata.normalize("NFD", row["ipa"]) for row in csv.DictReader(f))


@functools.cache
def _longest_base() -> int:
    return max(map(len, _bases()))


@functools.lru_cache(maxsize=1 << 14)
def _split(segment: str) -> tuple[str, str] | None:
    """(base, diacritics after it) of a normalised segment, or None when no base starts it."""
    s = segment.lstrip(_PRE_MODIFIERS)
    for n in range(min(len(s), _longest_base()), 0, -1):
        if s[:n] in _bases():
            return s[:n], s[n:]
    return None


@functools.lru_cache(maxsize=1 << 14)
def _features(segment: str) -> dict[str, int] | None:
    """panphon's features of ``segment`` by name, or None when panphon lacks the segment."""
    row = segment_features([segment])[0]
    if not row.any():
        return None
    return dict(zip(feature_names(), (int(v) for v in row)))


def _norm(segment: str) -> str:
    return normalize_ipa(segment) if segment.strip() else segment


@functools.lru_cache(maxsize=1 << 14)
def vowel(segment: str) -> Vowel | None:
    """The vowel-chart position of ``segment``, or None when it is not a vowel (see module docstring)."""
    seg = _norm(segment)
    split = _split(seg) or ((seg[0], seg[1:]) if seg and seg[0] in _VOWELS else None)
    if split is None or split[0] not in _VOWELS:
        return None
    base, rest = split
    v = _VOWELS[base]
    height, backness, rounded = v.height, v.backness, v.rounded
    for ch in rest.split(TIE)[0]:
        if ch == _CENTRALISED:
            backness = 0.5
        elif ch == _MID_CENTRALISED:
            height, backness = (height + 0.5) / 2, (backness + 0.5) / 2
        elif ch == _RAISED:
            height += 1 / 6
        elif ch == _LOWERED:
            height -= 1 / 6
        elif ch == _ADVANCED:
            backness -= 0.25
        elif ch == _RETRACTED:
            backness += 0.25
        elif ch == _MORE_ROUNDED:
            rounded = True
    return Vowel(min(max(height, 0.0), 1.0), min(max(backness, 0.0), 1.0), rounded)


def _feature_places(f: Mapping[str, int]) -> set[str]:
    """Places read off panphon features (module docstring); empty when none is set."""
    places = set()
    if f["lab"] == 1:
        places.add("bilabial")
    if f["cor"] == 1:
        if f["ant"] == 1:
            places.add("dental" if f["distr"] == 1 else "alveolar")
        else:
            places.add("postalveolar" if f["distr"] == 1 else "retroflex")
    if f["velaric"] != 1:
        if f["hi"] == 1:
            places.add("palatal" if f["back"] == -1 else "velar")
        elif f["back"] == 1 and f["lo"] != 1:
            places.add("uvular")
        if f["lo"] == 1 and f["back"] == 1:
            places.add("pharyngeal")
    return places


def _feature_manner(f: Mapping[str, int]) -> str:
    """Manner read off panphon features (module docstring)."""
    if f["velaric"] == 1:
        return "click"
    if f["son"] != 1:
        if f["cont"] != 1:
            return "affricate" if f["delrel"] == 1 else "plosive"
        return "lateral fricative" if f["lat"] == 1 else "fricative"
    if f["cont"] != 1:
        return "nasal" if f["nas"] == 1 else "plosive"
    return "lateral approximant" if f["lat"] == 1 else "approximant"


@functools.lru_cache(maxsize=1 << 14)
def consonant(segment: str) -> Consonant | None:
    """Voicing, places and manner of ``segment``, or None when it is not a consonant (module docstring)."""
    seg = _norm(segment)
    split = _split(seg)
    if split is None or split[0] in _VOWELS:
        return None
    base, rest = split
    base_features = _features(base)
    if base_features is None or base_features["syl"] == 1 or base in TONE_LETTERS:
        return None
    seg_features = _features(seg)
    if seg_features is not None:
        voiced = seg_features["voi"] == 1
    else:
        voiced = base_features["voi"] == 1
        for ch in rest:
            if ch in _VOICELESS:
                voiced = False
            elif ch in _VOICED:
                voiced = True
    places = set(_PLACE_BY_BASE.get(base) or _feature_places(base_features) or {"glottal"})
    for ch in rest:
        places.update(_SECONDARY_PLACES.get(ch, ()))
    manner = _MANNER_BY_BASE.get(base) or _feature_manner(base_features)
    return Consonant(voiced, frozenset(places), manner)


def shared_attributes(a: Consonant, b: Consonant) -> int:
    """How many of (voicing, place set, manner) two consonants share, 0..3: the nonword analysis' axis."""
    return int(a.voiced == b.voiced) + int(a.places == b.places) + int(a.manner == b.manner)


def _is_punctuation(segment: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") or ch in _EXTRA_PUNCTUATION for ch in segment)


@functools.lru_cache(maxsize=1 << 14)
def _attribute_vector(segment: str) -> np.ndarray:
    x = np.zeros(len(ATTRIBUTES), dtype=np.float32)
    flag = {WORD_BOUNDARY: "word boundary", PRIMARY_STRESS: "primary stress",
            SECONDARY_STRESS: "secondary stress", SYLLABLE_BOUNDARY: "syllable boundary",
            **_SPECIAL_COLUMNS}.get(segment)
    if segment == "<pad>" or segment[:1] in tuple(TONE_LETTERS):
        return x
    if flag is not None:
        x[_COLUMN[flag]] = 1.0
        return x
    v, c = vowel(segment), consonant(segment)
    if v is not None:
        x[_COLUMN["vowel"]] = 1.0
        x[_COLUMN["height"]] = v.height
        x[_COLUMN["backness"]] = v.backness
        x[_COLUMN["rounded"]] = float(v.rounded)
    elif c is not None:
        x[_COLUMN["consonant"]] = 1.0
        x[_COLUMN["voiced"]] = float(c.voiced)
        for place in c.places:
            x[_COLUMN[place]] = 1.0
        x[_COLUMN[c.manner]] = 1.0
    elif segment and _is_punctuation(segment):
        x[_COLUMN["punctuation"]] = 1.0
        return x
    else:
        x[_COLUMN["unknown"]] = 1.0
        return x
    if LONG in segment:
        x[_COLUMN["long"]] = 1.0
    elif HALF_LONG in segment:
        x[_COLUMN["long"]] = 0.5
    return x


def attribute_vector(segment: str) -> np.ndarray:
    """The magnitude vector x [len(ATTRIBUTES)] of one token, the input of IPA-CLIP's p = xᵀW."""
    return _attribute_vector(segment).copy()


def attribute_matrix(vocab: Sequence[str]) -> torch.Tensor:
    """Attribute vectors of a whole vocabulary [len(vocab), len(ATTRIBUTES)], the fixed x of every token."""
    if not len(vocab):
        return torch.zeros(0, len(ATTRIBUTES))
    return torch.from_numpy(np.stack([_attribute_vector(tok) for tok in vocab]))


class PhonemeEmbedding(nn.Module):
    """Token embedding for the pronunciation encoder: 'lookup' (baseline), 'trainable' or 'frozen' attribute projection.

    ``lookup`` is ``self.embedding``, an ``nn.Embedding`` with its default N(0, 1) init. The attribute kinds
    embed token t as ``attributes[t] @ W``: ``attributes`` is the buffer ``attribute_matrix(vocab)`` and W
    [len(ATTRIBUTES), dim] is drawn N(0, 1/m), m the mean squared norm of the vocabulary's non-zero attribute
    rows, so the embeddings' entries have about unit variance, as the lookup's do. Frozen W is a parameter
    with ``requires_grad=False``, so it is saved with checkpoints and no optimiser moves it.
    """

    KINDS = ("lookup", "trainable", "frozen")

    def __init__(self, kind: str, vocab: Sequence[str], dim: int, pad_id: int = 0) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"PhonemeEmbedding kind={kind!r}; use one of {self.KINDS}")
        self.kind = kind
        self.num_embeddings = len(vocab)
        self.embedding_dim = dim
        self.padding_idx = pad_id
        self.embedding: nn.Embedding | None = None
        self.W: nn.Parameter | None = None
        if kind == "lookup":
            self.embedding = nn.Embedding(len(vocab), dim, padding_idx=pad_id)
            return
        attributes = attribute_matrix(vocab)
        self.register_buffer("attributes", attributes)
        sq_norms = attributes.square().sum(1)
        mean_sq = float(sq_norms[sq_norms > 0].mean()) if bool((sq_norms > 0).any()) else 1.0
        self.W = nn.Parameter(torch.randn(len(ATTRIBUTES), dim) / math.sqrt(mean_sq),
                              requires_grad=kind == "trainable")

    def forward(self, ids: Tensor) -> Tensor:
        """Embeddings [*ids.shape, dim] of token ids (any shape, typically [B, L])."""
        if self.embedding is not None:
            return self.embedding(ids)
        return F.embedding(ids, self.attributes) @ self.W

    def table(self) -> Tensor:
        """Every token's embedding [len(vocab), dim], for the phoneme-space evaluation."""
        if self.embedding is not None:
            return self.embedding.weight
        return self.attributes @ self.W

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, vocab={self.num_embeddings}, dim={self.embedding_dim}"
