"""``phonclip export RUN OUT_DIR``: a trained CLAP-IPA run as transformers model directories, so its encoders
load with ``WhisperEncoder.from_pretrained`` / ``BertModel.from_pretrained`` anywhere, and the whole model
with ``phonclip.load(OUT_DIR)``, without the run's checkpoint or training state.

Layout: ``speech/`` and ``phone/`` (``save_pretrained``: config.json + model.safetensors), the rest of the
model's weights (projection heads, the phone encoder's articulatory-feature projection and trained-token
record, SigLIP's scale and bias) in ``phonclip_heads.safetensors``, the tokenizer's vocabulary, the model
config (``phonclip.json``) and a model card (``README.md``) with the run's data and measured results.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from phonclip import registry
from phonclip.results import flatten

FORMAT = 1
SPEECH, PHONE = "speech", "phone"
HEADS, TOKENIZER, SPEC, CARD = "phonclip_heads.safetensors", "tokenizer.json", "phonclip.json", "README.md"
ENCODER_PREFIXES = ("speech_encoder.encoder.", "phone_encoder.bert.")  # saved by save_pretrained instead


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a directory ``export`` wrote."""
    return (Path(path) / SPEC).is_file()


def export(run: str | Path, out_dir: str | Path) -> Path:
    """Write the run's model (a run directory or .ckpt) to ``out_dir``, replacing a previous export there;
    written to a temporary directory first, so an interrupted export leaves nothing half-written."""
    from phonclip.api import load, resolve_checkpoint
    from phonclip.models.clap_ipa import ClapIpa

    checkpoint = resolve_checkpoint(run)
    model = load(checkpoint)
    if not isinstance(model, ClapIpa) or model.cfg.units != "ipa":
        raise TypeError(f"{run} holds a {model.cfg.name} model with {model.cfg.units!r} units; export writes "
                        "CLAP-IPA runs over IPA (make train EXP=clap_ipa)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not is_export(out):
        raise FileExistsError(f"{out} exists and is not a phonclip export; choose a new or empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        _write(model, checkpoint, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write(model: Any, checkpoint: Path, out: Path) -> None:
    speech = model.speech_encoder.encoder
    speech.config.mel_hop_length = model.cfg.hop_length  # what the weights were trained on (160 for Whisper's)
    speech.save_pretrained(out / SPEECH)
    model.phone_encoder.bert.save_pretrained(out / PHONE)
    heads = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(ENCODER_PREFIXES)}
    save_file(heads, out / HEADS)
    model.tokenizer.save(out / TOKENIZER)
    cfg = OmegaConf.to_container(model.cfg)
    cfg["speech"]["pretrained"], cfg["phone"]["pretrained"] = SPEECH, PHONE
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    spec = {"format": FORMAT, "model": cfg, "seed": model.seed, "steps": int(state.get("global_step", 0))}
    (out / SPEC).write_text(json.dumps(spec, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / CARD).write_text(model_card(model, checkpoint.parent.parent, spec["steps"]), encoding="utf-8")


def load_export(path: str | Path) -> Any:
    """The model ``export`` wrote, in eval mode on the CPU; every weight comes from the directory."""
    path = Path(path)
    spec = json.loads((path / SPEC).read_text(encoding="utf-8"))
    if spec.get("format") != FORMAT:
        raise ValueError(f"{path} has export format {spec.get('format')}; this phonclip reads format {FORMAT}")
    cfg = spec["model"]
    cfg["speech"]["pretrained"] = str(path / cfg["speech"]["pretrained"])
    cfg["phone"]["pretrained"] = str(path / cfg["phone"]["pretrained"])
    tokenizer = registry.tokenizers.cls(cfg["units"]).load(path / TOKENIZER)
    model = registry.models.cls(cfg["name"])(cfg, tokenizer=tokenizer, seed=spec["seed"])
    missing, unexpected = model.load_state_dict(load_file(path / HEADS), strict=False)
    stray = [k for k in missing if not k.startswith(ENCODER_PREFIXES)]
    if stray or unexpected:
        raise ValueError(f"{path / HEADS} does not fit the model: missing {stray[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def _languages(run_dir: Path) -> tuple[list[str], list[str]]:
    """Seen and unseen languages of the run's embedded corpus (empty when it trained on other data)."""
    from data_modules.synthetic import SyntheticConfig

    path = run_dir / "config.yaml"
    data = OmegaConf.load(path).get("data", {}) if path.is_file() else {}
    if data.get("name") != "synthetic":
        return [], []
    corpus = OmegaConf.merge(OmegaConf.structured(SyntheticConfig), data.get("corpus", {}))
    return list(corpus.seen_languages), list(corpus.unseen_languages)


def _results_table(run_dir: Path) -> list[str]:
    """Headline retrieval numbers of the run's results.json, with chance levels."""
    path = run_dir / "results.json"
    if not path.is_file():
        return ["No results.json in the run: evaluate it with `make eval EXP=clap_ipa`."]
    results = json.loads(path.read_text(encoding="utf-8"))
    flat = flatten(results["metrics"])
    rows = ["| test set | phone→speech Hit@1 | speech→phone Hit@1 | chance |", "|---|---|---|---|"]
    for test_set in results["metrics"]:
        p2s, s2p = flat.get(f"{test_set}/phone→speech/hit@1"), flat.get(f"{test_set}/speech→phone/hit@1")
        if p2s is not None:
            chance = flat.get(f"{test_set}/phone→speech/chance_hit@1")
            rows.append(f"| {test_set} | {p2s:.3f} | {'' if s2p is None else f'{s2p:.3f}'} | "
                        f"{'' if chance is None else f'{chance:.3f}'} |")
    return [f"Measured by the run's evaluation on {results.get('date', '?')}:", "", *rows]


def model_card(model: Any, run_dir: Path, steps: int) -> str:
    """A README for the export: what the model is, what it was trained on, what it measured, how to load it."""
    seen, unseen = _languages(run_dir)
    data = (f"The embedded espeak-ng corpus of phonclip: word and phrase clips of {len(seen)} languages "
            f"({', '.join(seen)}); {len(unseen)} more ({', '.join(unseen)}) were never trained on and are "
            "test languages. All training speech is synthetic (espeak-ng voices)."
            if seen else "See the run's `config.yaml`: it did not train on the embedded corpus.")
    cfg = model.cfg
    return "\n".join([
        "---",
        "library_name: phonclip",
        "tags: [speech, ipa, phonemes, contrastive, clap-ipa, keyword-spotting]",
        *([f"language: [{', '.join(sorted(set(seen + unseen)))}]"] if seen else []),
        "---",
        "",
        "# CLAP-IPA (phonclip export)",
        "",
        ("A speech encoder and an IPA phone encoder trained with a SigLIP loss so that a recording and the IPA "
        "of what it says embed close together (Zhu et al. 2024, \"The taste of IPA\"): open-vocabulary "
        "keyword spotting and speech↔phone retrieval, also in languages it never heard."),
        "",
        (f"- `{SPEECH}/`: transformers `WhisperEncoder` ({_speech_shape(model)}), reading {cfg.n_mels}-bin log-mel "
        f"frames with a {cfg.hop_length}-sample hop at 16 kHz (`mel_hop_length` in its config)."),
        (f"- `{PHONE}/`: transformers `BertModel` over IPA segment ids (`{TOKENIZER}`), plus an articulatory-feature "
        f"projection in `{HEADS}`."),
        f"- `{HEADS}`: the projections to the shared {cfg.embed_dim}-dimensional space and SigLIP's scale and bias.",
        "",
        "## Load",
        "",
        "```python",
        "import phonclip",
        "model = phonclip.load(\"<this directory>\")",
        "speech = model.embed_speech([waveform], sample_rate=16_000)   # [1, D], L2-normalised",
        "phones = model.embed_phones([\"ˈɡato\"])                       # [1, D]",
        "score = (speech @ phones.T).item()",
        "```",
        "",
        "## Training data",
        "",
        data,
        "",
        f"Trained for {steps} steps (seed {model.seed}); exported on {dt.date.today().isoformat()}.",
        "",
        "## Results",
        "",
        *_results_table(run_dir),
        "",
    ])


def _speech_shape(model: Any) -> str:
    """Layers and width of the speech encoder, for the card."""
    config = model.speech_encoder.encoder.config
    return f"{config.encoder_layers} layers, width {config.d_model}"
