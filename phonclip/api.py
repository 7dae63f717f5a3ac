"""Load a trained model from a run directory or checkpoint, for use from Python and the CLI."""

from __future__ import annotations

from pathlib import Path

import torch

from phonclip import registry


def resolve_checkpoint(path: str | Path, experiment: str = "clap_ipa") -> Path:
    """A run directory means its ``checkpoints/last.ckpt``; a file is taken as is. ``experiment`` names
    what to train when there is none."""
    path = Path(path)
    ckpt = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint at {ckpt} (train one with `make train EXP={experiment}`)")
    return ckpt


def load(run_dir_or_ckpt: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained model, in eval mode, with ``embed_speech(waveforms, sample_rate)`` and ``embed_phones(ipa)``;
    from a run directory, a .ckpt, or a directory ``phonclip export`` wrote."""
    from phonclip.export import is_export, load_export

    if is_export(run_dir_or_ckpt):
        return load_export(run_dir_or_ckpt).to(device)
    state = torch.load(resolve_checkpoint(run_dir_or_ckpt), map_location="cpu", weights_only=False)
    hparams = state["hyper_parameters"]
    cfg = hparams["cfg"]
    tokenizer = registry.tokenizers.cls(cfg["units"])()
    model = registry.models.cls(cfg["name"])(cfg, tokenizer=tokenizer, seed=hparams.get("seed", 0))
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
