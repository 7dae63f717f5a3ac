"""SCRAPS end to end: the integrator variants, padding-invariant embeddings, every parameter trained, the
real runner's evaluation suite, and ``phonclip.load(run).score`` / ``phonclip score`` for good and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny import RUN_CORPUS, corpus_overrides

from data_modules.espeak import Espeak
from phonclip import runner
from phonclip.api import load
from phonclip.cli import main
from phonclip.encoders.integrator import LstmIntegrator
from phonclip.ipa import IpaTokenizer, phonemize
from phonclip.models.scraps import Scraps

TINY = {
    "embed_dim": 24,
    "speech": {"exit_layer": 1},
    "phone": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
    "integrator": {"input_size": 16},
}


def _model(kind: str) -> Scraps:
    torch.manual_seed(0)
    return Scraps(TINY | {"integrator": {"kind": kind, "input_size": 16}}, IpaTokenizer(keep_stress=False)).eval()


def _overrides(root: Path) -> list[str]:
    return [
        f"run_root={root}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=null",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=1",
        "data.num_workers=0",
        "data.max_batch_seconds=8",
        "model.embed_dim=24",
        "model.speech.exit_layer=1",
        "model.phone.hidden_size=32",
        "model.phone.num_layers=1",
        "model.phone.num_heads=2",
        "model.phone.intermediate_size=64",
        "model.integrator.input_size=16",
        "model.eval.gallery_size=12",
        "model.eval.max_clips=24",
        "model.eval.intelligibility_pairs=4",
        *corpus_overrides("data.corpus", RUN_CORPUS),
    ]


@pytest.fixture(scope="module")
def scraps_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scraps_runs")
    return root / "scraps" / "main", runner.train("scraps", _overrides(root))


@pytest.fixture(scope="module")
def words_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """"gato" and "casa" spoken by espeak (at its own rate: the CLI resamples)."""
    paths = []
    for word in ("gato", "casa"):
        utterance = Espeak.shared().synthesize(word, "es")
        path = tmp_path_factory.mktemp("audio") / f"{word}.wav"
        sf.write(path, utterance.audio.astype(np.float32) / 32768, utterance.sample_rate)
        paths.append(path)
    return paths[0], paths[1]


def test_the_integrator_reads_only_real_steps() -> None:
    """Final state of a padded row = the LSTM run on that row alone."""
    torch.manual_seed(0)
    integrator = LstmIntegrator(4, 6)
    states = torch.randn(2, 7, 4)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    _, (alone, _) = integrator.lstm(states[1:, :3])
    torch.testing.assert_close(integrator(states, mask)[1], alone[-1, 0])


@pytest.mark.parametrize("kind", ["shared", "separate", "none"])
def test_embeddings_are_unit_vectors_and_ignore_padding(kind: str) -> None:
    model = _model(kind)
    torch.manual_seed(1)
    waves = [torch.randn(6000), torch.randn(11000)]
    speech = model.embed_speech(waves)
    torch.testing.assert_close(speech.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(model.embed_speech(waves[:1])[0], speech[0], atol=1e-5, rtol=0)
    phones = model.embed_phones(["ɡato", "la kasa roxa"])
    torch.testing.assert_close(model.embed_phones(["ɡato"])[0], phones[0], atol=1e-5, rtol=0)


def test_the_shared_integrator_is_one_module_for_both_sides() -> None:
    shared, separate, none = _model("shared"), _model("separate"), _model("none")
    assert shared.integrators["speech"] is shared.integrators["phone"]
    assert separate.integrators["speech"] is not separate.integrators["phone"]
    assert len(none.integrators) == 0
    lstm = sum(p.numel() for p in shared.integrators["speech"].parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(separate) - count(shared) == lstm


@pytest.mark.parametrize("kind", ["shared", "separate", "none"])
def test_every_parameter_gets_a_gradient(kind: str) -> None:
    """No unused parameters: DDP would stall on them, and an untrained part is a silent bug."""
    model = _model(kind).train()
    torch.manual_seed(2)
    audio, lens = torch.randn(3, 9000), torch.tensor([9000, 7000, 5000])
    ids, phone_lens = model.tokenize(["ɡato", "kasa", "pero bjen"])
    model.loss(model.speech_embedding(audio, lens), model.phone_embedding(ids, phone_lens)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # Token rows of segments the batch does not use get no gradient by design; everything else must.
    assert [n for n in missing if "word_embeddings" not in n] == []


def test_an_unknown_integrator_is_refused() -> None:
    with pytest.raises(ValueError, match="integrator.kind"):
        Scraps({"integrator": {"kind": "gru"}}, IpaTokenizer())


def test_score_is_one_bounded_cosine_per_recording() -> None:
    model = _model("shared")
    waves = [torch.randn(8000), torch.randn(4000)]
    scores = model.score(waves, 16_000, "ɡato")
    assert scores.shape == (2,) and bool(((scores >= -1) & (scores <= 1)).all())
    expected = (model.embed_speech(waves) * model.embed_phones(["ɡato", "ɡato"])).sum(-1)
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(model.score(waves, 16_000, ["ɡato", "kasa"])[0], scores[0])
    with pytest.raises(ValueError, match="2 waveforms but 1"):
        model.score(waves, 16_000, ["ɡato"])
    with pytest.raises(ValueError, match="empty"):
        model.score(waves, 16_000, " ")


def test_the_suite_reports_every_analysis_on_every_test_set(scraps_run: tuple[Path, dict]) -> None:
    run, results = scraps_run
    metrics = results["main"]["metrics"]
    assert set(metrics) == {"test_seen", "test_unseen", "test_voices", "test_phrases"}
    for row in metrics.values():
        assert 0 <= row["phone→speech"]["hit@1"] <= 1 and 0 < row["phone→speech"]["chance_hit@1"] < 1
        assert set(row["sensitivity"]) == {f"{m}@{r:g}" for m in ("random", "nearest")
                                           for r in (0.05, 0.1, 0.2, 0.3, 0.5)}
        for cell in row["sensitivity"].values():
            assert 0 <= cell["drop"] + cell["rise"] <= 1 + 1e-6
        assert {"clean", "alpha=0.75", "white_snr=0dB", "babble_snr=0dB"} <= set(row["noise"])
        assert -1 <= row["intelligibility"]["spearman"] <= 1
    for plot in ("sensitivity", "noise", "intelligibility"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 0


def test_eval_reports_the_steps_and_training_cost_of_the_checkpoint(scraps_run: tuple[Path, dict]) -> None:
    run, trained = scraps_run
    evaluated = runner.evaluate("scraps", _overrides(run.parent.parent))["main"]
    assert evaluated["steps"] == trained["main"]["steps"] == 2
    assert evaluated["train_seconds"] == trained["main"]["train_seconds"]
    assert evaluated["metrics"]["test_seen"]["phone→speech"] == trained["main"]["metrics"]["test_seen"]["phone→speech"]


def test_cli_score_prints_what_the_api_computes(scraps_run: tuple[Path, dict], words_wav, capsys) -> None:
    run, _ = scraps_run
    gato, casa = words_wav
    assert main(["score", str(gato), str(casa), "--ipa", "ɡato", "--json", "--model", str(run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["audio"] for row in printed["scores"]] == [str(gato), str(casa)]
    model = load(run)
    waves = [sf.read(p, dtype="float32") for p in (gato, casa)]
    expected = torch.cat([model.score([w], rate, "ɡato") for w, rate in waves])
    np.testing.assert_allclose([row["score"] for row in printed["scores"]], expected.numpy(), atol=1e-4)
    assert main(["score", str(gato), "--text", "gato", "--lang", "es", "--model", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"/{phonemize('gato', 'es')}/") and out[1].endswith(str(gato))
    assert -1 <= float(out[1].split()[0]) <= 1


BAD_INPUT = {
    "missing file": (["{dir}/nothing.wav", "--ipa", "ɡato"], "no such audio file"),
    "not audio": (["{dir}/notes.wav", "--ipa", "ɡato"], "cannot read as audio"),
    "empty ipa": (["{wav}", "--ipa", "  "], "the transcription is empty"),
    "text without lang": (["{wav}", "--text", "gato"], "--text needs --lang"),
    "unknown lang": (["{wav}", "--text", "gato", "--lang", "xx-nowhere"], "unknown language"),
    "no run": (["{wav}", "--ipa", "ɡato", "--model", "{dir}/no_run"], "no checkpoint"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(case: str, scraps_run, words_wav, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.wav").write_text("not audio\n")
    template, named = BAD_INPUT[case]
    argv = ["score", *(arg.format(dir=tmp_path, wav=words_wav[0]) for arg in template)]
    if "--model" not in argv:
        argv += ["--model", str(scraps_run[0])]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phonclip: error:") and named in lines[0], captured.err
    assert captured.out == ""
