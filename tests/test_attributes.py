"""IPA-chart attributes of phones and IPA-CLIP's attribute phoneme embedding."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from phonclip.encoders.attributes import (
    ATTRIBUTES,
    MANNERS,
    PLACES,
    Consonant,
    PhonemeEmbedding,
    Vowel,
    attribute_matrix,
    attribute_vector,
    consonant,
    shared_attributes,
    vowel,
)
from phonclip.ipa import SPECIALS, IpaTokenizer, segment

COL = {name: i for i, name in enumerate(ATTRIBUTES)}
TONES = "˥˦˧˨˩"


@pytest.fixture(scope="module")
def tokenizer() -> IpaTokenizer:
    return IpaTokenizer()


@pytest.mark.parametrize(
    ("seg", "voiced", "places", "manner"),
    [
        ("p", False, {"bilabial"}, "plosive"),
        ("b", True, {"bilabial"}, "plosive"),
        ("m", True, {"bilabial"}, "nasal"),
        ("f", False, {"labiodental"}, "fricative"),
        ("ɱ", True, {"labiodental"}, "nasal"),
        ("θ", False, {"dental"}, "fricative"),
        ("t̪", False, {"dental"}, "plosive"),
        ("s", False, {"alveolar"}, "fricative"),
        ("ʃ", False, {"postalveolar"}, "fricative"),
        ("ʂ", False, {"retroflex"}, "fricative"),
        ("ç", False, {"palatal"}, "fricative"),
        ("k", False, {"velar"}, "plosive"),
        ("g", True, {"velar"}, "plosive"),  # ASCII g, normalised to ɡ
        ("q", False, {"uvular"}, "plosive"),
        ("ħ", False, {"pharyngeal"}, "fricative"),
        ("ʕ", True, {"pharyngeal"}, "fricative"),
        ("h", False, {"glottal"}, "fricative"),
        ("ɦ", True, {"glottal"}, "fricative"),
        ("ʔ", False, {"glottal"}, "plosive"),
        ("t͡ʃ", False, {"postalveolar"}, "affricate"),
        ("t͡s", False, {"alveolar"}, "affricate"),
        ("l", True, {"alveolar"}, "lateral approximant"),
        ("ɫ", True, {"alveolar", "velar"}, "lateral approximant"),
        ("ʎ", True, {"palatal"}, "lateral approximant"),
        ("ɬ", False, {"alveolar"}, "lateral fricative"),
        ("ɮ", True, {"alveolar"}, "lateral fricative"),
        ("r", True, {"alveolar"}, "trill"),
        ("ʀ", True, {"uvular"}, "trill"),
        ("ɾ", True, {"alveolar"}, "tap"),
        ("ɽ", True, {"retroflex"}, "tap"),
        ("ɹ", True, {"alveolar"}, "approximant"),
        ("j", True, {"palatal"}, "approximant"),
        ("w", True, {"bilabial", "velar"}, "approximant"),
        ("ʍ", False, {"bilabial", "velar"}, "approximant"),
        ("ɥ", True, {"bilabial", "palatal"}, "approximant"),
        ("k͡p", False, {"bilabial", "velar"}, "plosive"),
        ("ɕ", False, {"postalveolar", "palatal"}, "fricative"),
        ("ɓ", True, {"bilabial"}, "implosive"),
        ("ɗ", True, {"alveolar"}, "implosive"),
        ("ǀ", False, {"dental"}, "click"),
        ("ǃ", False, {"alveolar"}, "click"),
        ("n̩", True, {"alveolar"}, "nasal"),  # syllabic consonants stay consonants
        ("m̥", False, {"bilabial"}, "nasal"),  # voiceless diacritic
        ("ʈʰ", False, {"retroflex"}, "plosive"),
        ("kʼ", False, {"velar"}, "plosive"),
    ],
)
def test_known_consonants(seg: str, voiced: bool, places: set[str], manner: str) -> None:
    assert consonant(seg) == Consonant(voiced, frozenset(places), manner)
    assert vowel(seg) is None


@pytest.mark.parametrize(
    ("seg", "added"),
    [("kʷ", {"bilabial", "velar"}), ("tʲ", {"alveolar", "palatal"}), ("sˤ", {"alveolar", "pharyngeal"}),
     ("lˠ", {"alveolar", "velar"}), ("hʷ", {"glottal", "bilabial", "velar"})],
)
def test_secondary_articulations_add_places(seg: str, added: set[str]) -> None:
    c = consonant(seg)
    assert c is not None and c.places == frozenset(added)


@pytest.mark.parametrize(
    ("seg", "height", "backness", "rounded"),
    [
        ("i", 1.0, 0.0, False),
        ("u", 1.0, 1.0, True),
        ("y", 1.0, 0.0, True),
        ("a", 0.0, 0.0, False),
        ("ɑ", 0.0, 1.0, False),
        ("ə", 0.5, 0.5, False),
        ("ɔ", 2 / 6, 1.0, True),
        ("e", 4 / 6, 0.0, False),
        ("ɪ", 5 / 6, 0.25, False),
        ("æ", 1 / 6, 0.0, False),
        ("ɪ̈", 5 / 6, 0.5, False),  # centralised
        ("ᵻ", 5 / 6, 0.5, False),  # espeak's barred ɪ, normalised to ɪ̈
        ("ʊ̈", 5 / 6, 0.5, True),
        ("e̞", 0.5, 0.0, False),  # lowered close-mid is mid
        ("ə˞", 0.5, 0.5, False),  # rhotic hook keeps the vowel
        ("ɚ", 0.5, 0.5, False),
        ("ã", 0.0, 0.0, False),  # nasalisation ignored
        ("aː", 0.0, 0.0, False),
        ("i̯", 1.0, 0.0, False),  # non-syllabic vowels are vowels
        ("a͡ɪ", 0.0, 0.0, False),  # a tied diphthong panphon lacks reads as its first vowel
    ],
)
def test_known_vowels(seg: str, height: float, backness: float, rounded: bool) -> None:
    v = vowel(seg)
    assert isinstance(v, Vowel) and consonant(seg) is None
    assert (v.height, v.backness, v.rounded) == pytest.approx((height, backness, rounded))


@pytest.mark.parametrize("seg", ["", " ", "ˈ", "<unk>", "<pad>", ".", ",", "˥", "˧ˤ", "5", "ː"])
def test_non_phones_are_neither(seg: str) -> None:
    assert consonant(seg) is None and vowel(seg) is None


def test_vector_layout() -> None:
    assert len(ATTRIBUTES) == len(set(ATTRIBUTES)) == 2 + len(PLACES) + len(MANNERS) + 5 + 5 + 4
    assert ATTRIBUTES[:2] == ("consonant", "voiced")
    assert ATTRIBUTES[2:2 + len(PLACES)] == PLACES
    assert ATTRIBUTES[2 + len(PLACES):2 + len(PLACES) + len(MANNERS)] == MANNERS
    # one column per special token except <pad>
    assert {"unknown", "bos", "eos", "mask"} <= set(ATTRIBUTES) and len(SPECIALS) == 5
    for seg in ("p", "a", " ", "<pad>", "˥", "?"):
        x = attribute_vector(seg)
        assert x.shape == (len(ATTRIBUTES),) and x.dtype == np.float32


def test_consonant_vector() -> None:
    x = attribute_vector("b")
    assert set(np.flatnonzero(x)) == {COL["consonant"], COL["voiced"], COL["bilabial"], COL["plosive"]}
    assert set(np.flatnonzero(attribute_vector("kʷ"))) == {COL["consonant"], COL["bilabial"], COL["velar"],
                                                           COL["plosive"]}
    assert attribute_vector("sː")[COL["long"]] == 1.0 and attribute_vector("s")[COL["long"]] == 0.0


def test_vowel_vectors() -> None:
    i, u = attribute_vector("i"), attribute_vector("u")
    assert i[COL["vowel"]] == u[COL["vowel"]] == 1.0 and i[COL["consonant"]] == 0.0
    assert set(np.flatnonzero(i != u)) == {COL["backness"], COL["rounded"]}
    assert (u[COL["backness"]], u[COL["rounded"]]) == (1.0, 1.0)
    assert attribute_vector("ə")[COL["height"]] == pytest.approx(0.5)
    long_a = attribute_vector("aː")
    assert long_a[COL["long"]] == 1.0 and attribute_vector("a")[COL["long"]] == 0.0
    np.testing.assert_array_equal(np.delete(long_a, COL["long"]), np.delete(attribute_vector("a"), COL["long"]))


@pytest.mark.parametrize(
    ("seg", "column"),
    [(" ", "word boundary"), ("ˈ", "primary stress"), ("ˌ", "secondary stress"), (".", "syllable boundary"),
     (",", "punctuation"), ("?", "punctuation"), ("‖", "punctuation"), ("<unk>", "unknown"), ("<bos>", "bos"),
     ("<eos>", "eos"), ("<mask>", "mask"), ("5", "unknown")],
)
def test_token_flags(seg: str, column: str) -> None:
    assert set(np.flatnonzero(attribute_vector(seg))) == {COL[column]}


@pytest.mark.parametrize("seg", ["<pad>", "˥", "˩", "˧ˤ"])
def test_zero_vectors(seg: str) -> None:
    assert not attribute_vector(seg).any()


def test_attribute_vector_is_a_copy() -> None:
    attribute_vector("p")[:] = 7.0
    assert attribute_vector("p").max() == 1.0


def test_attribute_matrix_rows(tokenizer: IpaTokenizer) -> None:
    vocab = ["<pad>", "p", "a", " ", "ˈ"]
    m = attribute_matrix(vocab)
    assert m.dtype == torch.float32 and m.shape == (len(vocab), len(ATTRIBUTES))
    for row, tok in zip(m, vocab):
        np.testing.assert_array_equal(row.numpy(), attribute_vector(tok))
    assert attribute_matrix([]).shape == (0, len(ATTRIBUTES))


def test_whole_vocabulary_is_classified(tokenizer: IpaTokenizer) -> None:
    m = attribute_matrix(tokenizer.vocab)
    assert m.shape == (tokenizer.vocab_size, len(ATTRIBUTES))
    assert torch.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0
    phones = tokenizer.vocab[len(SPECIALS) + 3:]  # after the specials, the word boundary and stress marks
    neither = []
    for seg in phones:
        c, v = consonant(seg), vowel(seg)
        assert c is None or v is None, seg
        if c is not None:
            assert c.places and c.places <= set(PLACES) and c.manner in MANNERS, seg
        elif v is None and seg[0] not in TONES:
            neither.append(seg)
    # Measured: every panphon segment but the tone letters (with or without ˤ) is a consonant or vowel.
    assert neither == []
    zero_rows = [tok for tok, row in zip(tokenizer.vocab, m) if not row.any()]
    assert all(tok == "<pad>" or tok[0] in TONES for tok in zero_rows)
    # rows with the unknown flag: only <unk> itself
    assert [tok for tok, row in zip(tokenizer.vocab, m) if row[COL["unknown"]]] == ["<unk>"]


@pytest.mark.parametrize(
    "ipa",
    [
        "ˈθɪŋk ðə ˈwɜːld",  # English
        "ni˨˩˦ xɑʊ˨˩˦ t͡ɕʰi˥˥ ʂʅ˥˩",  # Mandarin-like, tones and espeak's apical vowel
        "ʈʰiːk ɦɛː bʱaːrət̪ ɖʱoːl",  # Hindi: retroflex, aspiration, breathy voice
        "ʕaːlim ħubb sˤabaːħ qalb",  # Arabic: pharyngeals, pharyngealised, uvular
        "prʲɪvʲˈet ɕˈukə",  # Russian: palatalisation
        "ukut͡ʃʼaza ǀa",  # Zulu: ejective, click
        "ŋɡˈoma ˈm̩bwa",  # syllabic nasal
    ],
)
def test_language_samples_are_classified(ipa: str) -> None:
    for seg in segment(ipa):
        if seg in (" ", "ˈ", "ˌ") or seg[0] in TONES:
            continue
        assert (consonant(seg) is None) != (vowel(seg) is None), seg


def test_shared_attributes() -> None:
    def shared(a: str, b: str) -> int:
        return shared_attributes(consonant(a), consonant(b))

    assert shared("p", "p") == shared("k", "kʰ") == 3  # aspiration is not an attribute
    assert shared("p", "b") == 2  # place, manner
    assert shared("p", "m") == 1  # place only
    assert shared("p", "t") == 2  # voicing, manner
    assert shared("p", "f") == 1  # voicing only
    assert shared("p", "z") == 0
    assert shared("b", "z") == 1  # voicing only
    assert shared("w", "b") == 1  # voicing; {bilabial, velar} is not {bilabial}
    for a, b in (("p", "z"), ("b", "m"), ("s", "ʃ")):
        assert shared(a, b) == shared(b, a)


def test_lookup_embedding() -> None:
    torch.manual_seed(0)
    emb = PhonemeEmbedding("lookup", ["<pad>", "p", "b", "a"], 8)
    assert isinstance(emb.embedding, nn.Embedding) and emb.embedding.padding_idx == 0 and emb.W is None
    ids = torch.tensor([[1, 2, 0], [3, 0, 0]])
    out = emb(ids)
    assert out.shape == (2, 3, 8)
    assert torch.equal(out[0, 2], torch.zeros(8))
    assert torch.equal(emb.table(), emb.embedding.weight)
    out.sum().backward()
    assert emb.embedding.weight.grad is not None


@pytest.mark.parametrize("kind", ["frozen", "trainable"])
def test_attribute_embedding(kind: str) -> None:
    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>", " ", "p", "b", "a", "i"]
    emb = PhonemeEmbedding(kind, vocab, 16, pad_id=0)
    assert emb.embedding is None and emb.W.shape == (len(ATTRIBUTES), 16)
    assert emb.W.requires_grad == (kind == "trainable")
    assert torch.equal(emb.attributes, attribute_matrix(vocab))
    assert {"W", "attributes"} <= set(emb.state_dict())  # a checkpoint keeps the random frozen W
    ids = torch.tensor([[3, 4, 5, 0], [6, 2, 1, 0]])
    out = emb(ids)
    assert out.shape == (2, 4, 16)
    table = emb.table()
    assert table.shape == (len(vocab), 16)
    torch.testing.assert_close(out, table[ids])
    assert torch.equal(out[:, 3], torch.zeros(2, 16))  # <pad> has no attributes
    head = nn.Parameter(torch.ones(16))  # the encoder above the embedding, which always trains
    (out * head).square().sum().backward()
    assert head.grad is not None
    if kind == "trainable":
        assert emb.W.grad is not None and emb.W.grad.abs().sum() > 0
    else:
        assert emb.W.grad is None
        assert [n for n, p in emb.named_parameters() if p.requires_grad] == []


def test_attribute_embedding_scale_and_similarity() -> None:
    torch.manual_seed(0)
    tok = IpaTokenizer()
    emb = PhonemeEmbedding("frozen", tok.vocab, 64, pad_id=tok.pad_id)
    with torch.no_grad():
        table = emb.table()
    rows = table[attribute_matrix(tok.vocab).any(1)]
    assert 0.5 < rows.square().mean().sqrt().item() < 2.0  # about unit-variance entries, like nn.Embedding

    def cos(a: str, b: str) -> float:
        return torch.cosine_similarity(table[tok.ids[a]], table[tok.ids[b]], dim=0).item()

    assert cos("p", "b") > cos("p", "a")
    assert cos("p", "b") > cos("p", "s")
    assert cos("i", "y") > cos("i", "ɑ")
    assert math.isclose(cos("p", "p"), 1.0, rel_tol=1e-5)


def test_bad_kind() -> None:
    with pytest.raises(ValueError, match="lookup.*trainable.*frozen"):
        PhonemeEmbedding("random", ["<pad>", "p"], 4)


def test_works_as_distilbert_input_embeddings() -> None:
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>", " ", "p", "a"]
    bert = DistilBertModel(DistilBertConfig(vocab_size=len(vocab), dim=8, n_layers=1, n_heads=2, hidden_dim=16,
                                            max_position_embeddings=8, pad_token_id=0))
    bert.set_input_embeddings(PhonemeEmbedding("frozen", vocab, 8))
    out = bert(input_ids=torch.tensor([[2, 6, 7, 3, 0]]), attention_mask=torch.tensor([[1, 1, 1, 1, 0]]))
    assert out.last_hidden_state.shape == (1, 5, 8)
    assert isinstance(bert.get_input_embeddings(), PhonemeEmbedding)
