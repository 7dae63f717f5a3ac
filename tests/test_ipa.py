"""IPA normalisation, segmentation and the IPA tokenizer."""

import pickle
import unicodedata

import numpy as np
import panphon
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from phonclip.ipa import (
    SPECIALS,
    WORD_BOUNDARY,
    IpaTokenizer,
    inventory,
    normalize_ipa,
    segment,
    unknown_segments,
)

# Words of several languages, all parseable by panphon.
LANGUAGE_SAMPLES = [
    "ðə bˈɜːd hˈɜːt t͡ʃˈɜːt͡ʃ",
    "pˈero ɣˈato xamˈon",
    "bˈyːçɐ ɪç t͡sˈaɪtʊŋ",
    "œ̃ bˈɔ̃ vˈɛ̃ blˈɑ̃",
    "ni˨˩˦ xau˨˩˦",
    "prʲɪvʲˈet ɕˈukə",
    "nəmˈʌsteː",
    "marħabaː",
    "ŋɡˈoma ˈm̩bwa",
    "ukut͡ʃʼaza ǀa",
    "kʷɔŋ˧˥ tʊŋ˥",
    "kˌo̞nnit͡ɕˈiwä",
]
TRICKY = "ɡg:'ˈˌ ()enfr-͜͡ʧʤɚᵻ\u200d\u200bãçc\u0327\u0303¹⁵ː˥˩ˀʰʲtʃa5.\t\n\u031d\u030a\u0325"


@pytest.fixture(scope="module")
def ft() -> panphon.FeatureTable:
    return panphon.FeatureTable()


@pytest.mark.parametrize("keep_stress", [True, False])
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(s=st.one_of(st.text(alphabet=TRICKY, max_size=30), st.text(max_size=30)))
def test_normalize_is_idempotent_and_nfd(s: str, keep_stress: bool) -> None:
    once = normalize_ipa(s, keep_stress)
    assert normalize_ipa(once, keep_stress) == once
    assert unicodedata.normalize("NFD", once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\u00e7a", "c\u0327a"),  # NFC ç decomposed
        ("(en)hɛloʊ(en-us) wɜːld", "hɛloʊ wɜːld"),
        ("ha\u200dlo\u200c", "halo"),
        ("  a \t b\n", "a b"),
        ("'gato", "ˈɡato"),
        ("ba:", "baː"),
        ("t͜s", "t͡s"),
        ("ʧa", "t͡ʃa"),
        ("bɚd", "bə˞d"),
        ("ɹoʊzᵻz", "ɹoʊzɪ̈z"),
        ("ma⁵¹", "ma˥˩"),
        ("zʲʲa", "zʲa"),  # doubled modifier letter
        ("ŋa˩ˀ", "ŋaˀ˩"),  # glottalisation moved before the tone, onto the vowel
        ("br\u031d\u030a", "br\u031d"),  # voiceless raised r -> r̝ (panphon has no voiceless one)
    ],
)
def test_normalize_cases(raw: str, expected: str) -> None:
    assert normalize_ipa(raw) == unicodedata.normalize("NFD", expected)


def test_stress_kept_or_dropped() -> None:
    assert normalize_ipa("ˈɡa.ˌto 'la") == "ˈɡa.ˌto ˈla"
    assert normalize_ipa("ˈɡa.ˌto 'la", keep_stress=False) == "ɡa.to la"
    assert normalize_ipa("(eˈn)a", keep_stress=False) == "a"


@pytest.mark.parametrize(
    ("ipa", "segments"),
    [
        ("t͡ʃa", ["t͡ʃ", "a"]),
        ("tʃa", ["t", "ʃ", "a"]),
        ("aːb", ["aː", "b"]),
        ("ɐ̃ʊ̃", ["ɐ̃", "ʊ̃"]),
        ("ma˥˩", ["m", "a", "˥", "˩"]),
        ("ma⁵⁵", ["m", "a", "˥", "˥"]),
        ("kʰat̪ʼ", ["kʰ", "a", "t̪ʼ"]),
        ("n̩t͡ɕʲ", ["n̩", "t͡ɕʲ"]),
        ("ˈɡa ˌto", ["ˈ", "ɡ", "a", WORD_BOUNDARY, "ˌ", "t", "o"]),
        ("ˀta", ["ˀt", "a"]),
    ],
)
def test_segment_tricky_strings(ipa: str, segments: list[str]) -> None:
    assert segment(ipa) == [unicodedata.normalize("NFD", s) for s in segments]
    assert unknown_segments(ipa) == []


@pytest.mark.parametrize(
    ("ipa", "unknown"),
    [
        ("a͡ɪ", ["a͡ɪ"]),
        ("baˑ", ["aˑ"]),
        ("ma55", ["5", "5"]),
        ("ts.on", ["."]),
        ("ʘ\u0488", ["ʘ\u0488"]),
    ],
)
def test_unparseable_text_becomes_whole_unknown_segments(ipa: str, unknown: list[str]) -> None:
    assert unknown_segments(ipa) == unknown


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(s=st.one_of(st.text(alphabet=TRICKY, max_size=30), st.text(max_size=30)))
def test_segmentation_loses_nothing(s: str) -> None:
    assert "".join(segment(s)) == normalize_ipa(s)
    assert all(seg for seg in segment(s))


@pytest.mark.parametrize("ipa", LANGUAGE_SAMPLES)
def test_encode_decode_round_trip(ipa: str) -> None:
    tok = IpaTokenizer()
    ids = tok.encode(ipa)
    assert unknown_segments(ipa) == []
    assert tok.unk_id not in ids
    assert len(ids) == len(tok.segments(ipa))
    assert tok.decode(ids) == normalize_ipa(ipa)
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == normalize_ipa(ipa)
    unstressed = IpaTokenizer(keep_stress=False)
    assert unstressed.decode(unstressed.encode(ipa)) == normalize_ipa(ipa, keep_stress=False)


def test_unknown_segments_are_counted_not_dropped() -> None:
    tok = IpaTokenizer()
    ids = tok.encode("ma55 a͡ɪ")
    assert ids.count(tok.unk_id) == 3
    assert len(ids) == 6
    tok.encode("ma55")  # cached words count again
    assert tok.unknown == {"5": 4, "a͡ɪ": 1}
    assert tok.decode(ids) == "ma<unk><unk> <unk>"


def test_vocab_is_fixed_and_stable() -> None:
    a, b = IpaTokenizer(), IpaTokenizer(keep_stress=False)
    assert a.vocab == b.vocab
    assert a.vocab[: len(SPECIALS)] == list(SPECIALS)
    assert a.pad_id == 0
    assert a.vocab_size == len(SPECIALS) + 3 + len(inventory())
    assert a.encode("ˈɡato") == [a.ids["ˈ"], *b.encode("ˈɡato")]


def test_feature_matrix_matches_panphon(ft: panphon.FeatureTable) -> None:
    tok = IpaTokenizer()
    fm = tok.feature_matrix()
    assert fm.shape == (tok.vocab_size, tok.n_features)
    assert set(torch.unique(fm).tolist()) <= {-1.0, 0.0, 1.0}
    for seg in ["p", "a", "t͡ʃ", "ã", "aː", "˥", "kʰ"]:
        seg = unicodedata.normalize("NFD", seg)
        assert fm[tok.ids[seg]].tolist() == ft.fts(seg).numeric(ft.names)
    for special in [*SPECIALS, WORD_BOUNDARY, "ˈ", "ˌ"]:
        assert not fm[tok.ids[special]].any()
    assert not np.array_equal(fm[tok.ids["p"]].numpy(), fm[tok.ids["b"]].numpy())


def test_serialisation_round_trips(tmp_path) -> None:
    tok = IpaTokenizer(keep_stress=False)
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = IpaTokenizer.load(path)
    assert loaded.vocab == tok.vocab and loaded.keep_stress is False
    assert loaded.encode(LANGUAGE_SAMPLES[0]) == tok.encode(LANGUAGE_SAMPLES[0])
    assert pickle.loads(pickle.dumps(tok)).encode("ˈa") == tok.encode("ˈa")
    with pytest.raises(ValueError, match="not an IpaTokenizer"):
        IpaTokenizer.from_dict({"type": "CharTokenizer", "vocab": []})
    with pytest.raises(ValueError, match="special tokens"):
        IpaTokenizer(vocab=["a", "b"])


def test_empty_string_encodes_to_nothing() -> None:
    assert IpaTokenizer().encode(" (en) ") == []
