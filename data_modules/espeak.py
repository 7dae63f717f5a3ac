"""ctypes binding to espeak-ng from the espeakng-loader wheel: speech with exact IPA timings."""

from __future__ import annotations

import ctypes
import os
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import espeakng_loader
import numpy as np

from phonclip.ipa import TIE, normalize_ipa

# Constants from espeak-ng's speak_lib.h (API revision 12).
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_PHONEME_IPA = 0x0002
CHARS_UTF8 = 1
POS_CHARACTER = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7
PARAM_RATE = 1
PARAM_PITCH = 3
PARAM_RANGE = 4
PHONEMES_IPA = 0x02
RATE_MIN, RATE_MAX = 80, 449  # from 450 wpm espeak speeds audio up (sonic) after timing events

# Vietnamese tone phonemes 1-7 of espeak's ph_vietnam as Chao tone letters (Hanoi values after
# Kirby 2011, JIPA 41(3)): ngang 33, huyền 21, sắc 35, hỏi 313, ngã 3ʔ5, nặng 21ʔ;
# 7 is clause-final ngang.
TONE_LETTERS: dict[str, dict[str, str]] = {
    "vi": {"1": "˧", "2": "˨˩", "3": "˧˥", "4": "˧˩˧", "5": "˧ˀ˥", "6": "˨˩ˀ", "7": "˧"},
}
DEFAULT_TONE = {"vi": "1"}  # espeak writes no digit for the level tone
# How tones leak into espeak_TextToPhonemes' IPA: digits, and tone 3 spelled as its Kirshenbaum
# IPA "ɜ" (Vietnamese has no such vowel in espeak's phoneme table).
TONE_ARTEFACTS = {"vi": dict.fromkeys(map(ord, "1234567ɜ"))}

_SEPARATOR = "|"  # between phonemes in espeak_TextToPhonemes output; never part of espeak's IPA
_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9-]+)?\)", re.IGNORECASE)
# espeak phoneme names without an IPA spelling fall back to its ASCII mnemonics: syllable and
# pause marks go; "?" is a glottal stop, "#" voicelessness (Icelandic l#); Latvian's "`" and
# Russian's '^', '"' carry no segment; Macedonian k^ g^ are the palatal stops. The rest of the
# clean-up (joiners, look-alikes, stress, NFD) is phonclip.ipa.normalize_ipa's, shared by all IPA.
_PHONE_FIXES = (("k^", "c"), ("g^", "ɟ"))
_CHAR_FIXES = str.maketrans({"?": "ʔ", "#": "\u0325"} | dict.fromkeys('-_!|`^"' + TIE))
_ORPHAN_MODIFIERS = {"ʲ": "j", "ʷ": "w"}  # a glide with no segment before it in the word
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: ``id`` is a union of an int, a char pointer and ``char string[8]``."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples since the start of the utterance
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


Phone = tuple[str, float, float]  # (ipa, start_s, end_s)


class UnknownVoiceError(ValueError):
    """A voice or language espeak-ng does not have, so callers can tell a user's typo from a crash."""


@dataclass
class Utterance:
    """One synthesised text with the phones and words espeak actually spoke, timed in seconds."""

    audio: np.ndarray  # int16 [T] at sample_rate
    sample_rate: int
    phones: list[Phone]
    words: list[tuple[float, float]]  # (start_s, end_s) of each spoken word
    word_ipa: list[str]  # parallel to ``words``
    word_phones: list[list[int]]  # indices into ``phones`` of each word
    foreign: list[bool]  # espeak read this word in another language ("(en)…" switch)
    word_chars: list[int] = field(default_factory=list)  # 0-based character offset of each word in the text
    counts: Counter = field(default_factory=Counter)  # clean-up actions (stød, tones, digits)

    @property
    def ipa(self) -> str:
        return " ".join(self.word_ipa)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def data_path() -> Path:
    """The espeak-ng-data directory shipped in the wheel (voices, dictionaries, phoneme tables)."""
    return Path(espeakng_loader.get_data_path())


def available_languages() -> list[str]:
    """Voice file names usable as ``voice`` (e.g. ``fr``, ``en-US``), from espeak-ng-data/lang."""
    return sorted(p.name for p in (data_path() / "lang").rglob("*") if p.is_file())


def available_variants() -> list[str]:
    """Voice variants usable as ``lang+variant`` (e.g. ``m3``, ``klatt``), from voices/!v."""
    return sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file())


def has_language_switch(ipa: str) -> bool:
    """True when espeak read part of the text as another language (``(en)…(fr)`` markers)."""
    return bool(_SWITCH.search(ipa))


def voice_language(voice: str) -> str:
    """The ISO code of a voice name: ``de+m3`` -> ``de``, ``en-US`` -> ``en``."""
    return voice.split("+", 1)[0].split("-", 1)[0].lower()


def clean_phone(
    name: str,
    lang: str,
    keep_stress: bool = False,
    ties: bool = False,
    counts: Counter | None = None,
) -> str:
    """One espeak IPA phoneme name as normalised IPA: mnemonic leftovers fixed or dropped, digits
    out, Danish stød (``ʔ``/``?``) as ``ˀ`` after the phone, stress marks and tie bars as asked."""
    counts = Counter() if counts is None else counts
    s = name
    for mnemonic, ipa in _PHONE_FIXES:
        s = s.replace(mnemonic, ipa)
    s = s.translate(_CHAR_FIXES)
    if any(c.isdigit() for c in s):
        counts["digit_dropped"] += 1
        s = "".join(c for c in s if not c.isdigit())
    if lang == "da" and "ʔ" in s:
        counts["stod_mapped"] += 1
        s = s.replace("ʔ", "") + "ˀ"
    s = normalize_ipa(s, keep_stress=keep_stress)
    return _tie(s) if ties else s


def _is_base(c: str) -> bool:
    return unicodedata.category(c) in ("Ll", "Lu", "Lo")


def _tie(s: str) -> str:
    """Join the base letters of one multi-letter phoneme with U+0361 (``t͡ʃ``, ``a͡ɪ``)."""
    out: list[str] = []
    seen_base = False
    for c in s:
        if _is_base(c):
            if seen_base:
                out.append(TIE)
            seen_base = True
        out.append(c)
    return "".join(out)


def _merge_modifiers(phones: list[Phone], counts: Counter) -> list[Phone]:
    """espeak emits some modifiers (``ʲ``, ``ˀ``) as phones of their own: they join the segment
    before them, or become a glide at the start of a word."""
    out: list[Phone] = []
    for ipa, start, end in phones:
        if any(_is_base(c) for c in ipa):
            out.append((ipa, start, end))
        elif out:
            out[-1] = (out[-1][0] + ipa, out[-1][1], end)
        elif ipa in _ORPHAN_MODIFIERS:
            out.append((_ORPHAN_MODIFIERS[ipa], start, end))
        else:
            counts["orphan_modifier_dropped"] += 1
    return out


def _tone_letters(lang: str, tones: list[str]) -> str:
    return "".join(TONE_LETTERS[lang].get(t, "") for t in tones or [DEFAULT_TONE[lang]])


def _with_tone(phones: list[Phone], lang: str, tones: list[str], counts: Counter) -> list[Phone]:
    """Tone letters go after the word's last phone (its syllable end), as IPA writes them."""
    if len(tones) > 1:
        counts["multi_tone"] += 1
    counts["tone_mapped"] += 1
    ipa, start, end = phones[-1]
    return [*phones[:-1], (ipa + _tone_letters(lang, tones), start, end)]


_lock = threading.Lock()
_engine: Espeak | None = None


class Espeak:
    """The process's one espeak-ng engine (espeak keeps global state); get it via ``shared()``."""

    def __init__(self, buflength_ms: int = 200) -> None:
        global _engine
        with _lock:
            if _engine is not None and _engine._pid == os.getpid():
                raise RuntimeError(
                    "espeak-ng keeps process-global state, so a process may own only one Espeak "
                    "engine: use Espeak.shared() instead of constructing another"
                )
            if _engine is not None:
                raise RuntimeError(
                    "this process was forked from one that already owned an Espeak engine; start "
                    "workers with the 'spawn' or 'forkserver' method so each owns a fresh engine"
                )
            self._pid = os.getpid()
            self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
            self._bind()
            rate = self._lib.espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                buflength_ms,
                str(data_path()).encode(),
                INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA,
            )
            if rate <= 0:
                raise RuntimeError(f"espeak_Initialize failed for data path {data_path()}")
            self.sample_rate: int = rate
            self._callback = _CALLBACK(self._on_audio)  # kept alive: espeak holds the pointer
            self._lib.espeak_SetSynthCallback(self._callback)
            self._voice: str | None = None
            self._chunks: list[bytes] = []
            self._events: list[tuple[int, int, str]] = []
            self._call_lock = threading.Lock()
            _engine = self

    @classmethod
    def shared(cls) -> Espeak:
        """The engine of this process, created on first use."""
        if _engine is not None and _engine._pid == os.getpid():
            return _engine
        return cls()

    def _bind(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

    def _on_audio(self, wav, n: int, events_ptr: int) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        events = ctypes.cast(events_ptr, ctypes.POINTER(_Event))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append((EVENT_PHONEME, ev.sample, name))
            elif ev.type == EVENT_WORD:  # espeak counts text positions from 1
                self._events.append((EVENT_WORD, ev.sample, str(ev.text_position - 1)))
            i += 1
        return 0

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            raise RuntimeError("this Espeak engine belongs to another process; use Espeak.shared()")

    def set_voice(self, voice: str) -> None:
        """Select a voice by *file* name (``fr``, not ``fr-fr``), optionally ``+variant``."""
        if voice == self._voice:
            return
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            self._voice = None
            raise UnknownVoiceError(
                f"espeak-ng has no voice {voice!r}: use a voice file name from espeak-ng-data/lang "
                f"(e.g. 'fr', not 'fr-fr'), optionally with a '+variant' from "
                f"espeak-ng-data/voices/!v (e.g. 'de+m3')"
            )
        self._voice = voice

    def synthesize(
        self,
        text: str,
        voice: str,
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        keep_stress: bool = False,
        ties: bool = False,
        seed: int = 0,
    ) -> Utterance:
        """Speak ``text``; its IPA comes from the phoneme events, so audio, IPA and timings agree.

        ``seed`` feeds espeak's noise generator (breathy variants such as f2), which espeak itself
        seeds from the clock. Audio still depends on what the engine spoke before (its pitch
        flutter runs on across utterances): for byte-identical output, speak the same sequence in
        a fresh process."""
        if not RATE_MIN <= rate <= RATE_MAX:
            raise ValueError(f"rate={rate} words/min is outside espeak's {RATE_MIN}..{RATE_MAX}")
        for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
            if not 0 <= value <= 100:
                raise ValueError(f"{name}={value} is outside espeak's 0..100")
        self._check_process()
        lang = voice_language(voice)
        with self._call_lock:
            self.set_voice(voice)
            self._lib.espeak_SetParameter(PARAM_RATE, rate, 0)
            self._lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
            self._lib.espeak_SetParameter(PARAM_RANGE, pitch_range, 0)
            self._lib.espeak_ng_SetRandSeed(seed)
            self._chunks, self._events = [], []
            data = text.encode()
            rc = self._lib.espeak_Synth(
                data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None
            )
            if rc != 0:
                raise RuntimeError(f"espeak_Synth failed with code {rc} for text {text!r}")
            audio = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
            events = self._events
            tones = self._word_tones(text) if lang in TONE_LETTERS else None
        return _build_utterance(audio, self.sample_rate, events, lang, keep_stress, ties, tones)

    def phonemize(
        self, text: str, voice: str, keep_stress: bool = False, ties: bool = False
    ) -> str:
        """espeak's IPA for ``text`` without synthesis, cleaned like ``synthesize``; language-switch
        markers such as ``(en)`` stay in so callers can spot words read as foreign."""
        self._check_process()
        lang = voice_language(voice)
        counts: Counter = Counter()
        with self._call_lock:
            self.set_voice(voice)
            ipa_words = self._text_to_phonemes(text, PHONEMES_IPA)
            tones = self._word_tones(text) if lang in TONE_LETTERS else None
        out = []
        for w, names in enumerate(ipa_words):
            markers = "".join(n for n in names if _SWITCH.fullmatch(n))
            if tones is not None:
                names = [n.translate(TONE_ARTEFACTS[lang]) for n in names]
            phones = [
                (clean_phone(n, lang, keep_stress, ties, counts), 0.0, 0.0)
                for n in names
                if not _SWITCH.fullmatch(n)
            ]
            phones = _merge_modifiers([p for p in phones if p[0]], counts)
            if phones and tones is not None and w < len(tones):
                phones = _with_tone(phones, lang, tones[w], counts)
            out.append(markers + "".join(p[0] for p in phones))
        return " ".join(w for w in out if w)

    def _text_to_phonemes(self, text: str, mode: int) -> list[list[str]]:
        """Per word, espeak's phoneme names (separated by ``_SEPARATOR`` on request)."""
        buf = ctypes.create_string_buffer(text.encode())
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        words: list[list[str]] = []
        while ptr.value:
            raw = self._lib.espeak_TextToPhonemes(
                ctypes.byref(ptr), CHARS_UTF8, mode | (ord(_SEPARATOR) << 8)
            )
            for word in (raw or b"").decode("utf-8", "replace").split():
                words.append([p for p in word.split(_SEPARATOR) if p])
        return [w for w in words if w]

    def _word_tones(self, text: str) -> list[list[str]]:
        """Tone digits of each spoken word, from the ASCII mnemonics (the IPA events carry none)."""
        words = self._text_to_phonemes(text, 0)
        spoken = [w for w in words if any(p.strip("_|!") and not _SWITCH.fullmatch(p) for p in w)]
        return [[d for p in w for d in re.findall(r"\d", p)] for w in spoken]


def _build_utterance(
    audio: np.ndarray,
    sample_rate: int,
    events: list[tuple[int, int, str]],
    lang: str,
    keep_stress: bool,
    ties: bool,
    tones: list[list[str]] | None,
) -> Utterance:
    """Phone i spans from its event to the next phoneme event (pauses have empty names); a word
    event's name is its character offset in the text (espeak may speak a few words as one)."""
    counts: Counter = Counter()
    n = len(audio)
    per_word: list[list[Phone]] = []
    foreign: list[bool] = []
    chars: list[int] = []
    marks: list[tuple[int, str, int]] = []  # (sample, name, word index)
    for kind, sample, name in events:
        if kind == EVENT_WORD:
            per_word.append([])
            foreign.append(False)
            chars.append(int(name))
        else:
            marks.append((min(max(sample, 0), n), name, len(per_word) - 1))
    switched = False  # inside an (xx)…(yy) span that espeak reads in another language
    for i, (start, name, w) in enumerate(marks):
        end = max(marks[i + 1][0] if i + 1 < len(marks) else n, start)
        if _SWITCH.fullmatch(name):
            switched = not switched
            if w >= 0:
                foreign[w] = True
            continue
        ipa = clean_phone(name, lang, keep_stress, ties, counts)
        if ipa and w >= 0:
            foreign[w] = foreign[w] or switched
            per_word[w].append((ipa, start / sample_rate, end / sample_rate))
    merged = [(_merge_modifiers(p, counts), f, c) for p, f, c in zip(per_word, foreign, chars)]
    word_chars = [c for p, _, c in merged if p]
    merged = [(p, f) for p, f, _ in merged if p]
    if tones is not None and len(tones) != len(merged):
        counts["tone_unaligned"] += 1
    elif tones is not None:
        merged = [(_with_tone(p, lang, t, counts), f) for (p, f), t in zip(merged, tones)]
    phones: list[Phone] = []
    word_phones: list[list[int]] = []
    for p, _ in merged:
        word_phones.append(list(range(len(phones), len(phones) + len(p))))
        phones.extend(p)
    return Utterance(
        audio=audio,
        sample_rate=sample_rate,
        phones=phones,
        words=[(p[0][1], p[-1][2]) for p, _ in merged],
        word_ipa=["".join(x[0] for x in p) for p, _ in merged],
        word_phones=word_phones,
        foreign=[f for _, f in merged],
        word_chars=word_chars,
        counts=counts,
    )
