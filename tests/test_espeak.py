"""The espeak-ng binding speaks, times its phones in IPA, and flags what the corpus must drop."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest

from data_modules.espeak import (
    Espeak,
    available_languages,
    available_variants,
    clean_phone,
    has_language_switch,
)


@pytest.fixture(scope="module")
def engine() -> Espeak:
    return Espeak.shared()


def _check_timings(utt) -> None:
    starts = [s for _, s, _ in utt.phones]
    assert starts == sorted(starts)
    for (_, s, e), (_, s_next, _) in zip(utt.phones, utt.phones[1:] + [("", np.inf, np.inf)]):
        assert 0.0 <= s <= e <= min(s_next, utt.duration)
    for (s, e), idx in zip(utt.words, utt.word_phones):
        assert s == utt.phones[idx[0]][1] and e == utt.phones[idx[-1]][2]


def test_synthesize_gives_audio_and_timed_ipa_phones(engine: Espeak) -> None:
    utt = engine.synthesize("Haus und Garten", "de")
    assert utt.sample_rate == engine.sample_rate == 22050
    assert utt.audio.dtype == np.int16 and utt.duration > 0.5
    assert np.abs(utt.audio.astype(np.int32)).max() > 1000
    assert utt.ipa == "haʊs ʊnt ɡaɾtən"
    assert len(utt.words) == 3 and not any(utt.foreign)
    assert "".join(p for p, _, _ in utt.phones) == utt.ipa.replace(" ", "")
    assert all(p and not re.search(r"[0-9ˈˌ]", p) for p, _, _ in utt.phones)
    assert utt.ipa == unicodedata.normalize("NFD", utt.ipa)
    _check_timings(utt)


@pytest.mark.parametrize("voice", ["fr", "de+m3", "de+klatt", "de+f2", "en-US", "nb"])
def test_voice_file_names_and_variants(engine: Espeak, voice: str) -> None:
    utt = engine.synthesize("bonjour", voice, rate=220, pitch=30, pitch_range=70)
    assert len(utt.audio) > 0 and utt.phones
    _check_timings(utt)


def test_voice_names_espeak_lacks_are_rejected(engine: Espeak) -> None:
    assert "fr" in available_languages() and "m3" in available_variants()
    with pytest.raises(ValueError, match="fr-fr"):
        engine.synthesize("oui", "fr-fr")
    with pytest.raises(ValueError, match="rate"):
        engine.synthesize("oui", "fr", rate=20)


def test_foreign_words_are_flagged(engine: Espeak) -> None:
    assert has_language_switch(engine.phonemize("football", "fr"))
    assert not has_language_switch(engine.phonemize("bonjour", "fr"))
    utt = engine.synthesize("bonjour le weekend", "fr")
    assert utt.foreign == [False, False, True]
    assert "(" not in utt.ipa


@pytest.mark.parametrize("voice", ["en", "fr", "ru", "vi", "da"])
def test_phonemize_agrees_with_the_spoken_phones(engine: Espeak, voice: str) -> None:
    texts = {
        "en": "the weather is nice today",
        "fr": "nous avons mangé",
        "ru": "люди говорят",
        "vi": "người Việt có học",
        "da": "hund og kat",
    }
    assert engine.phonemize(texts[voice], voice) == engine.synthesize(texts[voice], voice).ipa


def test_stress_and_ties_on_request(engine: Espeak) -> None:
    assert "ˈ" in engine.synthesize("Zeitung", "de", keep_stress=True).ipa
    assert engine.synthesize("Zeit", "de", ties=True).ipa == "t͡sa͡ɪt"


def test_danish_stod_becomes_a_modifier(engine: Espeak) -> None:
    utt = engine.synthesize("hund mig", "da")
    assert utt.ipa == "huˀn mɑˀj"
    assert utt.counts["stod_mapped"] == 2
    assert clean_phone("?ɑ", "da") == "ɑˀ" and clean_phone("ʔa", "fa") == "ʔa"


def test_vietnamese_tones_become_chao_letters(engine: Espeak) -> None:
    words = ["ba", "bà", "bá", "bả", "bã", "bạ"]
    ipas = [engine.synthesize(w, "vi").ipa for w in words]
    assert ipas == ["baː˧", "baː˨˩", "baː˧˥", "baː˧˩˧", "baː˧ˀ˥", "baː˨˩ˀ"]
    utt = engine.synthesize("người Việt", "vi")
    assert utt.counts["tone_mapped"] == 2 and not re.search(r"[0-9]", utt.ipa)


def test_one_engine_per_process(engine: Espeak) -> None:
    assert Espeak.shared() is engine
    with pytest.raises(RuntimeError, match="one Espeak"):
        Espeak()
