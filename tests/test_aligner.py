"""IPA-ALIGNER end to end: the real runner fine-tunes the session's tiny CLAP-IPA run, then
``phonclip.load(run).align`` and ``phonclip align`` give phone and word intervals, as TextGrid or JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from praatio import textgrid
from tiny import RUN_CORPUS, TinyRun, corpus_overrides

from data_modules.espeak import Espeak
from phonclip import config, runner
from phonclip.alignment import Alignment, AlignmentTargets
from phonclip.api import load
from phonclip.cli import main
from phonclip.eval.align_suite import evaluate_aligner, score_set
from phonclip.ipa import IpaTokenizer, phonemize
from phonclip.losses import SigLipLoss
from phonclip.models.aligner import Aligner, MissingClapRun

PHRASE = "el gato negro"


@pytest.fixture(scope="module")
def aligner_runs(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("aligner_runs")
    overrides = [
        f"run_root={root}",
        f"model.init_from={tiny_run.path}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=null",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=1",
        "data.num_workers=0",
        "data.max_batch_seconds=8",
        "model.eval.max_clips=12",
        *corpus_overrides("data.corpus", RUN_CORPUS),
    ]
    return root / "aligner", runner.train("aligner", overrides)


@pytest.fixture(scope="module")
def phrase_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    utterance = Espeak.shared().synthesize(PHRASE, "es")
    path = tmp_path_factory.mktemp("audio") / "phrase.wav"
    pad = np.zeros(int(0.2 * utterance.sample_rate), np.float32)
    sf.write(path, np.concatenate([pad, utterance.audio.astype(np.float32) / 32768, pad]), utterance.sample_rate)
    return path


def test_every_arm_is_scored_on_every_test_set(aligner_runs: tuple[Path, dict]) -> None:
    root, results = aligner_runs
    assert list(results) == ["uniform", "zero_shot", "finetuned"]
    assert [results[arm]["steps"] for arm in results] == [0, 0, 2]
    for arm, result in results.items():
        metrics = result["metrics"]
        assert set(metrics) == {"test_seen", "test_unseen", "test_voices", "test_phrases"}
        for row in metrics.values():
            assert row["clips"] > 0
            phone = row["phone"]
            assert 0.0 <= phone["f1@20"] <= 1.0 and phone["boundaries"] > 0
            assert phone["f1@10"] <= phone["f1@20"] <= phone["f1@50"]
            assert phone["within_10ms"] <= phone["within_20ms"] <= phone["within_50ms"]
        assert metrics["test_phrases"]["word"]["boundaries"] > 0
        assert (root / arm / "plots" / "alignment_0.png").exists()
        assert (root / arm / "results.md").read_text().startswith(f"# aligner / {arm}")
    assert (root / "finetuned" / "checkpoints" / "last.ckpt").exists()
    assert not (root / "uniform" / "checkpoints").exists() or not any((root / "uniform" / "checkpoints").iterdir())


def test_missing_clap_run_names_the_command_that_makes_it(tmp_path: Path, capsys) -> None:
    with pytest.raises(MissingClapRun, match="make train EXP=clap_ipa"):
        Aligner({"init_from": str(tmp_path / "no_run")}, tokenizer=IpaTokenizer())
    assert main(["train", "aligner", f"run_root={tmp_path}", f"model.init_from={tmp_path}/no_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make train EXP=clap_ipa" in err[0]


def test_an_unknown_decoder_is_refused() -> None:
    with pytest.raises(ValueError, match="decoder"):
        Aligner({"init_from": None, "clap": {}, "decoder": "dtw"}, tokenizer=IpaTokenizer())


def test_align_gives_ordered_phone_and_word_intervals(aligner_runs: tuple[Path, dict], phrase_wav: Path) -> None:
    model = load(aligner_runs[0] / "finetuned")
    assert isinstance(model, Aligner) and model.frame_seconds == pytest.approx(0.01)  # 160 hop, stride 1
    audio, rate = sf.read(phrase_wav, dtype="float32")
    ipa = phonemize(PHRASE, "es")
    alignment = model.align(audio, sample_rate=rate, ipa=ipa)
    duration = len(audio) / rate
    assert alignment.duration == pytest.approx(duration, abs=1e-3)
    assert len(alignment.words) == 3
    times = [t for _, s, e in alignment.phones for t in (s, e)]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= duration + 1e-6
    shortest = model.min_phone_frames * model.frame_seconds
    assert all(e - s >= shortest - 1e-9 for _, s, e in alignment.phones)  # every phone gets its frames
    word_of = AlignmentTargets.from_ipa(model.tokenizer, ipa).word_of
    for k, (_, start, end) in enumerate(alignment.words):
        members = [alignment.phones[i] for i, w in enumerate(word_of) if w == k]
        assert (start, end) == (members[0][1], members[-1][2])
    by_text = model.align(audio, sample_rate=rate, text=PHRASE, lang="es")
    assert by_text.phones == alignment.phones
    with pytest.raises(ValueError, match="too short"):
        model.align(audio[: int(0.05 * rate)], sample_rate=rate, ipa=ipa)
    with pytest.raises(ValueError, match="no phones"):
        model.align(audio, sample_rate=rate, ipa="ˈ ")


def test_an_aligner_checkpoint_loads_without_its_clap_run(aligner_runs: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt = torch.load(aligner_runs[0] / "finetuned" / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt["hyper_parameters"]["cfg"]["init_from"] = str(tmp_path / "gone")
    torch.save(ckpt, tmp_path / "moved.ckpt")
    original, moved = load(aligner_runs[0] / "finetuned"), load(tmp_path / "moved.ckpt")
    for (name, a), (_, b) in zip(original.state_dict().items(), moved.state_dict().items()):
        assert torch.equal(a, b), name


def test_cli_textgrid_reads_back_with_the_api_intervals(
    aligner_runs: tuple[Path, dict], phrase_wav: Path, tmp_path: Path
) -> None:
    run = aligner_runs[0] / "finetuned"
    out = tmp_path / "phrase.TextGrid"
    assert main(["align", str(phrase_wav), "--text", PHRASE, "--lang", "es", "-o", str(out), "--model", str(run)]) == 0
    audio, rate = sf.read(phrase_wav, dtype="float32")
    expected = load(run).align(audio, sample_rate=rate, text=PHRASE, lang="es")
    grid = textgrid.openTextgrid(str(out), includeEmptyIntervals=False)
    for tier, intervals in (("phones", expected.phones), ("words", expected.words)):
        read = [(e.label, e.start, e.end) for e in grid.getTier(tier).entries]
        assert [r[0] for r in read] == [i[0] for i in intervals]
        np.testing.assert_allclose([r[1:] for r in read], [i[1:] for i in intervals], atol=1e-6)
    as_json = tmp_path / "phrase.json"
    assert main(["align", str(phrase_wav), "--ipa", phonemize(PHRASE, "es"), "-o", str(as_json),
                 "--model", str(run)]) == 0
    saved = json.loads(as_json.read_text())
    assert [p["label"] for p in saved["phones"]] == [p[0] for p in expected.phones]


def test_cli_manifest_aligns_many_and_reports_failures(
    aligner_runs: tuple[Path, dict], phrase_wav: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "notes.wav").write_text("not audio")
    manifest = tmp_path / "items.tsv"
    manifest.write_text(f"audio\ttext\tlang\n{phrase_wav}\t{PHRASE}\tes\nnotes.wav\thola\tes\n")
    out = tmp_path / "aligned"
    code = main(["align", "--manifest", str(manifest), "-o", str(out), "--model", str(aligner_runs[0] / "finetuned")])
    assert code == 2
    report = json.loads((out / "manifest.json").read_text())
    assert [Path(r["output"]).name for r in report["aligned"]] == ["phrase.TextGrid"]
    assert len(report["failed"]) == 1 and "notes.wav" in report["failed"][0]["audio"]
    assert (out / "phrase.TextGrid").exists()
    assert "notes.wav" in capsys.readouterr().err


BAD_INPUT = {
    "missing audio": (["{dir}/missing.wav", "--ipa", "ɡato"], "missing.wav"),
    "not audio": (["{dir}/notes.wav", "--ipa", "ɡato"], "notes.wav"),
    "empty transcription": (["{wav}", "--ipa", " "], "empty"),
    "no transcription": (["{wav}"], "--ipa"),
    "unknown language": (["{wav}", "--text", "gato", "--lang", "xx"], "unknown language --lang 'xx'"),
    "too short": (["{short}", "--ipa", "el ɡato neɣɾo el ɡato neɣɾo"], "too short"),
    "bad output name": (["{wav}", "--ipa", "ɡato", "-o", "{dir}/out.txt"], ".TextGrid or .json"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(
    case: str, aligner_runs: tuple[Path, dict], phrase_wav: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "notes.wav").write_text("these are my notes, not audio\n")
    sf.write(tmp_path / "short.wav", np.zeros(800, np.float32), 16_000)
    argv = ["align", *(a.format(dir=tmp_path, wav=phrase_wav, short=tmp_path / "short.wav") for a in BAD_INPUT[case][0])]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.TextGrid")]
    assert main([*argv, "--model", str(aligner_runs[0] / "finetuned")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phonclip: error:") and BAD_INPUT[case][1] in lines[0], captured.err
    assert captured.out == ""


def test_align_refuses_a_model_that_is_not_an_aligner(tiny_run: TinyRun, phrase_wav: Path, tmp_path: Path,
                                                      capsys) -> None:
    argv = ["align", str(phrase_wav), "--ipa", "ɡato", "-o", str(tmp_path / "x.TextGrid"), "--model", str(tiny_run.path)]
    assert main(argv) == 2
    assert "make train EXP=aligner" in capsys.readouterr().err


def test_eval_scores_a_users_aligned_corpus(
    aligner_runs: tuple[Path, dict], tiny_run: TinyRun, tmp_path: Path
) -> None:
    """``make eval EXP=aligner ARGS="data.name=aligned data.test.<set>=[dir]"`` on recordings with TextGrids."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(["el gato negro", "la casa blanca"]):
        utt = Espeak.shared().synthesize(text, "es")
        sf.write(corpus / f"clip{i}.wav", utt.audio.astype(np.float32) / 32768, utt.sample_rate)
        gold = Alignment(phones=list(utt.phones), duration=utt.duration,
                         words=[(ipa, s, e) for ipa, (s, e) in zip(utt.word_ipa, utt.words)])
        gold.save_textgrid(corpus / f"clip{i}.TextGrid")
    runs = tmp_path / "runs"
    shutil.copytree(aligner_runs[0], runs / "aligner")
    results = runner.evaluate("aligner", [
        f"run_root={runs}", f"model.init_from={tiny_run.path}", "data.name=aligned",
        f"data.test.mine=[{corpus}]", "data.lang=es", "trainer.enable_progress_bar=false",
    ])
    for arm, result in results.items():
        row = result["metrics"]["mine"]
        assert row["clips"] == 2 and row["phone"]["boundaries"] > 0 and row["word"]["boundaries"] > 0, arm


def test_siglip_term_keeps_training_the_retrieval_space(tiny_run: TinyRun, tmp_path: Path, monkeypatch) -> None:
    overrides = [
        f"run_root={tmp_path}", f"model.init_from={tiny_run.path}", "model.siglip_weight=0.5",
        "trainer.max_steps=2", "trainer.val_check_interval=null", "trainer.enable_progress_bar=false",
        "data.num_workers=0", "data.max_batch_seconds=8", "model.eval.max_clips=4",
        *corpus_overrides("data.corpus", RUN_CORPUS),
    ]
    cfg = dict(config.load("aligner", overrides))["finetuned"]
    before = load(tiny_run.path).loss.logit_scale.detach().clone()
    calls, siglip = [], SigLipLoss.forward
    monkeypatch.setattr(SigLipLoss, "forward", lambda self, *a, **k: calls.append(1) or siglip(self, *a, **k))
    result = runner.run_arm(cfg, "finetuned")
    assert result["steps"] == 2 and len(calls) == 2  # once per training step
    model = load(tmp_path / "aligner" / "finetuned")
    assert model.clap.loss.logit_scale.requires_grad
    assert torch.equal(model.clap.loss.logit_scale.detach(), before)  # loss_lr = 0: SigLIP's t and b stay


def _model_and_timed_batch(tiny_run: TinyRun, tmp_path: Path, override: str) -> tuple[Aligner, dict]:
    """An aligner built from the tiny CLAP-IPA run with ``override``, and a train batch with espeak's timings."""
    overrides = [
        f"run_root={tmp_path}", f"model.init_from={tiny_run.path}", override,
        "data.num_workers=0", "data.max_batch_seconds=8", *corpus_overrides("data.corpus", RUN_CORPUS),
    ]
    model, datamodule = runner.build(dict(config.load("aligner", overrides))["finetuned"])
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert all(meta.get("phones") for meta in batch["meta"])  # espeak's timings ride along
    return model, batch


def _losses(model: Aligner, batch: dict, loss_of: str, params: list, steps: int, lr: float) -> tuple[list[float], dict]:
    """``model.<loss_of>`` over ``steps`` Adam steps of ``params`` on one batch, and the last step's scores."""
    optimiser = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        out = model.scores(batch)
        loss = getattr(model, loss_of)(out, model.gold_labels(out, batch["meta"]))
        model.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    return losses, out


def _untimed(batch: dict) -> list[dict]:
    return [{k: v for k, v in meta.items() if k != "phones"} for meta in batch["meta"]]


def test_gold_term_fits_the_frames_to_the_training_timings(tiny_run: TinyRun, tmp_path: Path) -> None:
    model, batch = _model_and_timed_batch(tiny_run, tmp_path, "model.gold_weight=1.0")
    model.train()
    losses, _ = _losses(model, batch, "gold_frame_loss", list(model.parameters()), steps=8, lr=1e-3)
    assert losses[-1] < 0.8 * losses[0], losses
    out = model.scores(batch)
    assert float(model.gold_frame_loss(out, model.gold_labels(out, _untimed(batch)))) == 0.0  # no timings, no loss


def test_duration_head_learns_the_training_timings_without_moving_the_encoders(tiny_run: TinyRun,
                                                                              tmp_path: Path) -> None:
    model, batch = _model_and_timed_batch(tiny_run, tmp_path, "model.duration_prior=1.0")
    model.eval()  # the same phone states every step: only the head moves
    losses, out = _losses(model, batch, "duration_loss", list(model.duration.parameters()), steps=40, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(p.grad is None or not p.grad.any() for p in model.clap.parameters())  # detached states
    labels = model.gold_labels(out, batch["meta"])
    counts = torch.bincount(labels[0][labels[0] > 0] - 1)  # the first clip's frames per phone
    timed = counts > 0  # a gold phone split among tokens can leave one without a frame
    mean = out["duration"][0][0, : len(counts)].detach()[timed]
    assert abs(float(mean.mean() - counts[timed].float().log().mean())) < 0.3  # the clip's durations, from 0 at init
    assert float(model.duration_loss(out, model.gold_labels(out, _untimed(batch)))) == 0.0


def test_a_test_set_without_gold_timings_is_left_out(aligner_runs: tuple[Path, dict], tmp_path: Path) -> None:
    model = load(aligner_runs[0] / "finetuned")
    untimed = {"meta": [{"lang": "en"}, {"lang": "it"}]}  # as test_other_synth's clips: IPA, no timings

    class Sets:
        def test_sets(self) -> dict[str, list[dict]]:
            return {"test_other_synth": [untimed]}

    assert score_set(model, [untimed], model.cfg.eval, "test_other_synth") == (None, [])
    assert evaluate_aligner(model, Sets(), tmp_path, model.cfg.eval) == {}
