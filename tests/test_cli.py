"""`phonclip kws`, `phonclip embed` and `phonclip.load` work end to end on a model the real runner trained.

The model is trained once per session (``tiny_run`` in conftest.py); the trained module is
kept so ``load`` can be checked against it. Bad input must end in exit code 2 and one
``phonclip: error:`` line naming the problem, never a traceback.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny import EMBED_DIM, TinyRun

from data_modules.espeak import Espeak
from phonclip.api import load
from phonclip.audio import load_audio, resample
from phonclip.cli import main
from phonclip.ipa import normalize_ipa


def _speak(text: str, voice: str = "es") -> tuple[np.ndarray, int]:
    utterance = Espeak.shared().synthesize(text, voice)
    return utterance.audio.astype(np.float32) / 32768, utterance.sample_rate


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three Spanish words with silence around them, at espeak's own rate (the CLI resamples)."""
    parts = []
    for word in ("casa", "gato", "perro"):
        audio, rate = _speak(word)
        parts += [np.zeros(int(0.3 * rate), np.float32), audio]
    path = tmp_path_factory.mktemp("audio") / "recording.wav"
    sf.write(path, np.concatenate([*parts, np.zeros(int(0.3 * rate), np.float32)]), rate)
    return path


def _hits(out: str) -> list[tuple[float, float, float]]:
    lines = out.strip().splitlines()
    assert lines[1].split() == ["start", "end", "score"], out
    return [tuple(map(float, line.split())) for line in lines[2:]]


def test_load_gives_the_trained_model(tiny_run: TinyRun) -> None:
    model = load(tiny_run.path)
    assert not model.training
    audio, rate = _speak("gato")
    clip = resample(audio, rate, 44_100)
    speech = model.embed_speech([clip], sample_rate=44_100)
    phones = model.embed_phones(["ˈɡato"])
    for embedding in (speech, phones):
        assert embedding.shape == (1, EMBED_DIM)
        torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(speech, tiny_run.model.embed_speech([clip], sample_rate=44_100))
    torch.testing.assert_close(phones, tiny_run.model.embed_phones(["ˈɡato"]))


def test_kws_prints_non_overlapping_hits(tiny_run: TinyRun, recording: Path, capsys) -> None:
    argv = [
        "kws",
        str(recording),
        "--keyword",
        "ˈɡato",
        "--model",
        str(tiny_run.path),
        "--top",
        "3",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"keyword /{normalize_ipa('ˈɡato')}/")
    hits = _hits(out)
    duration = sf.info(recording).duration
    assert 1 <= len(hits) <= 3  # greedy non-overlapping picks may run out of room before --top
    for start, end, score in hits:
        assert 0 <= start < end <= duration + 1e-6 and -1 <= score <= 1
    assert [h[2] for h in hits] == sorted((h[2] for h in hits), reverse=True)
    spans = sorted((start, end) for start, end, _ in hits)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_kws_phonemizes_text_in_the_given_language(
    tiny_run: TinyRun, recording: Path, capsys
) -> None:
    argv = ["kws", str(recording), "--text", "gato", "--lang", "es", "--model", str(tiny_run.path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = normalize_ipa(Espeak.shared().phonemize("gato", voice="es"))
    assert "ɡ" in expected and out.startswith(f"keyword /{expected}/")
    assert len(_hits(out)) >= 1


def test_embed_writes_one_unit_row_per_file(tiny_run: TinyRun, tmp_path: Path, capsys) -> None:
    files = []
    for word in ("gato", "perro"):
        audio, rate = _speak(word)
        files.append(tmp_path / f"{word}.wav")
        sf.write(files[-1], audio, rate)
    out = tmp_path / "embeddings.npz"
    assert main(["embed", *map(str, files), "-o", str(out), "--model", str(tiny_run.path)]) == 0
    assert "wrote 2 embeddings" in capsys.readouterr().out
    saved = np.load(out)
    assert saved["embeddings"].shape == (2, EMBED_DIM) and saved["embeddings"].dtype == np.float32
    assert saved["files"].tolist() == [str(f) for f in files]
    expected = load(tiny_run.path).embed_speech([load_audio(f) for f in files]).numpy()
    np.testing.assert_allclose(saved["embeddings"], expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(saved["embeddings"], axis=1), 1.0, atol=1e-6)


BAD_INPUT = {
    "missing audio": (["kws", "{dir}/missing.wav", "--keyword", "ˈɡato"], "missing.wav"),
    "not audio": (["kws", "{dir}/notes.wav", "--keyword", "ˈɡato"], "notes.wav"),
    "embed not audio": (["embed", "{dir}/notes.wav", "-o", "{dir}/out.npz"], "notes.wav"),
    "unknown language": (
        ["kws", "{wav}", "--text", "gato", "--lang", "xx"],
        "unknown language --lang 'xx'",
    ),
    "empty keyword": (["kws", "{wav}", "--keyword", "  "], "empty"),
    "empty text": (["kws", "{wav}", "--text", "", "--lang", "es"], "empty"),
    "text without language": (["kws", "{wav}", "--text", "gato"], "--lang"),
    "missing model": (
        ["kws", "{wav}", "--keyword", "ˈɡato", "--model", "{dir}/no_such_run"],
        "no_such_run",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(
    case: str, tiny_run: TinyRun, recording: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "notes.wav").write_text("these are my notes, not audio\n")
    template, named = BAD_INPUT[case]
    argv = [arg.format(dir=tmp_path, wav=recording) for arg in template]
    if "--model" not in argv:
        argv += ["--model", str(tiny_run.path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phonclip: error:") and named in lines[0], (
        captured.err
    )
    assert captured.out == ""


def test_console_entry_point_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "phonclip.cli", "kws", str(missing), "--keyword", "a"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"phonclip: error: no such audio file: {missing}"]
