"""The byte-level orthographic tokenizer used for the text-units ablation."""

import unicodedata

import pytest

from phonclip.ipa import SPECIALS, IpaTokenizer
from phonclip.text_units import CharTokenizer, normalize_text

TEXTS = ["Gato", "Bücher ICH", "你好 中国", "привет", "नमस्ते", "مرحبا", "Ꭰ 𓀀", "İstanbul"]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_in_any_script(text: str) -> None:
    tok = CharTokenizer()
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert all(len(SPECIALS) <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == unicodedata.normalize("NFD", text.lower())
    assert len(tok.segments(text)) == len(ids)
    assert not tok.unknown


def test_units_are_lowercased_nfd() -> None:
    tok = CharTokenizer()
    assert tok.encode("É") == tok.encode("e\u0301") == tok.encode("\u00e9")
    assert normalize_text("  A \t B ") == "a b"
    assert tok.segments("ab c") == ["a", "b", " ", "c"]
    assert tok.segments("é") == ["e", "<0xCC>", "<0x81>"]
    assert tok.encode("a b")[1] == tok.word_boundary_id


def test_vocab_fixed_and_feature_matrix_zero(tmp_path) -> None:
    a, b = CharTokenizer(), CharTokenizer()
    assert a.vocab == b.vocab and a.vocab_size == len(SPECIALS) + 256 and a.pad_id == 0
    fm = a.feature_matrix()
    assert fm.shape == (a.vocab_size, IpaTokenizer().n_features) and not fm.any()
    a.save(tmp_path / "tok.json")
    assert CharTokenizer.load(tmp_path / "tok.json").encode("Gato") == a.encode("Gato")
    with pytest.raises(ValueError, match="not a CharTokenizer"):
        CharTokenizer.from_dict(IpaTokenizer().to_dict())


def test_decode_skips_specials_and_survives_broken_bytes() -> None:
    tok = CharTokenizer()
    ids = tok.encode("ñ")
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == "n\u0303"
    assert tok.decode(ids[1:2]) == "\ufffd"
