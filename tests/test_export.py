"""``phonclip export``: a run as transformers directories + model card that load back with identical embeddings."""

import json

import numpy as np
import pytest
import torch
from tiny import TinyRun
from transformers import BertModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

import phonclip
from phonclip.cli import main
from phonclip.export import CARD, HEADS, SPEC, export, is_export


@pytest.fixture(scope="module")
def exported(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory):
    return export(tiny_run.path, tmp_path_factory.mktemp("exports") / "clap")


def test_export_loads_back_with_identical_embeddings(tiny_run: TinyRun, exported) -> None:
    original, loaded = phonclip.load(tiny_run.path), phonclip.load(exported)
    waves = [0.1 * np.random.default_rng(0).standard_normal(12_000).astype(np.float32), np.zeros(5_000, np.float32)]
    torch.testing.assert_close(loaded.embed_speech(waves), original.embed_speech(waves), rtol=0, atol=0)
    ipa = ["ˈɡato", "haːɪ˧", "kʲeturʲi"]  # a tone letter the tiny run never trained on: read from features
    torch.testing.assert_close(loaded.embed_phones(ipa), original.embed_phones(ipa), rtol=0, atol=0)
    assert torch.equal(loaded.phone_encoder.trained_tokens, original.phone_encoder.trained_tokens)


def test_export_is_plain_transformers_directories_and_a_model_card(exported) -> None:
    _, info = WhisperEncoder.from_pretrained(exported / "speech", output_loading_info=True)
    assert not any(info.values())
    _, info = BertModel.from_pretrained(exported / "phone", add_pooling_layer=False, output_loading_info=True)
    assert not any(info.values())
    assert json.loads((exported / "speech" / "config.json").read_text())["mel_hop_length"] in (160, 320)
    assert (exported / "speech" / "model.safetensors").is_file() and (exported / HEADS).is_file()
    card = (exported / CARD).read_text()
    assert "language: [de, es, vi]" in card and "| test_seen |" in card and "phonclip.load" in card
    spec = json.loads((exported / SPEC).read_text())
    assert spec["model"]["speech"]["pretrained"] == "speech" and spec["steps"] == 2


def test_export_replaces_an_export_but_not_other_directories(tiny_run: TinyRun, tmp_path) -> None:
    out = export(tiny_run.path, tmp_path / "m")
    assert is_export(export(tiny_run.path, out))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a phonclip export"):
        export(tiny_run.path, tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "other"]  # no temporary directory left


def test_export_cli(tiny_run: TinyRun, tmp_path, capsys) -> None:
    assert main(["export", str(tiny_run.path), str(tmp_path / "out")]) == 0
    assert "phonclip.load" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "no_run"), str(tmp_path / "x")]) == 2
    assert "make train EXP=clap_ipa" in capsys.readouterr().err
