"""``phonclip`` command line: train, eval, corpus, kws, embed, align, score, export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phonclip.config import ConfigError

DEFAULT_MODEL = "runs/clap_ipa/main"
DEFAULT_ALIGNER = "runs/aligner/finetuned"
DEFAULT_SCORER = "runs/scraps/main"


class UsageError(ValueError):
    """Bad input from the person at the terminal: reported in one line, exit code 2."""


def _train(args: argparse.Namespace) -> int:
    from phonclip import runner

    runner.train(args.experiment, args.overrides)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from phonclip import runner

    runner.evaluate(args.experiment, args.overrides)
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from data_modules import synthetic

    return synthetic.main(args.overrides)


def _load_model(path: str):
    from phonclip.api import load

    try:
        return load(path)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None


def _read_audio(path: str):
    from phonclip.audio import AudioError, load_audio

    try:
        return load_audio(path)
    except FileNotFoundError:
        raise UsageError(f"no such audio file: {path}") from None
    except AudioError as err:
        raise UsageError(f"cannot read as audio: {err}") from None


def keyword_ipa(args: argparse.Namespace) -> str:
    """The keyword as IPA: given directly, or phonemised from ``--text`` in ``--lang`` by espeak."""
    return given_ipa(args.keyword, args.text, args.lang, "the keyword")


def given_ipa(ipa: str | None, text: str | None, lang: str | None, what: str) -> str:
    """IPA given directly (normalised), or ``text`` phonemised in ``lang``; empty input is a usage error."""
    from phonclip.ipa import normalize_ipa

    if ipa is not None:
        if not normalize_ipa(ipa).strip():
            raise UsageError(f"{what} is empty")
        return normalize_ipa(ipa)
    return text_ipa(text or "", lang, f"{what} text")


def text_ipa(text: str, lang: str | None, what: str) -> str:
    """``text`` phonemised by espeak in ``lang``; empty text and unknown languages are usage errors."""
    from data_modules.espeak import UnknownVoiceError
    from phonclip.ipa import phonemize

    if not text.strip():
        raise UsageError(f"{what} is empty")
    if not lang:
        raise UsageError("--text needs --lang (an espeak language code such as es, de, en-us)")
    try:
        return phonemize(text, lang)
    except UnknownVoiceError as err:
        raise UsageError(f"unknown language --lang {lang!r}: {err}") from None


def _kws(args: argparse.Namespace) -> int:
    import torch

    from phonclip.kws import default_window, search

    audio = torch.as_tensor(_read_audio(args.audio))
    model = _load_model(args.model)
    keyword = keyword_ipa(args) if model.cfg.units == "ipa" else (args.text or args.keyword or "").strip()
    if not keyword:
        raise UsageError("the keyword is empty")
    n_segments = len(model.tokenizer.encode(keyword))
    window = args.window or default_window(n_segments)
    hits = search(model, audio, keyword, window=window, hop=args.hop, top=args.top)
    print(f"keyword /{keyword}/  window {window:.2f} s  hop {args.hop:.2f} s")
    print(f"{'start':>8} {'end':>8} {'score':>7}")
    for hit in hits:
        print(f"{hit.start:8.2f} {hit.end:8.2f} {hit.score:7.3f}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    model = _load_model(args.model)
    waveforms = [_read_audio(path) for path in args.audio]
    embeddings = model.embed_speech(waveforms, sample_rate=16_000).numpy()
    np.savez(args.output, embeddings=embeddings, files=np.array(args.audio))
    print(f"wrote {len(args.audio)} embeddings of dim {embeddings.shape[1]} to {args.output}")
    return 0


def _align(args: argparse.Namespace) -> int:
    from phonclip.alignment import Alignment

    model = _load_model(args.model)
    if not hasattr(model, "align"):
        raise UsageError(f"{args.model} is a {model.cfg.name} model; align needs an aligner run "
                         "(make train EXP=aligner)")
    if bool(args.audio) == bool(args.manifest):
        raise UsageError("give one recording, or --manifest FILE for many")
    items = _manifest_items(args.manifest) if args.manifest else [(args.audio, args.ipa, args.text, args.lang)]
    out = Path(args.output)
    to_dir = args.manifest is not None or out.is_dir() or not out.suffix
    if not to_dir and out.suffix.lower() not in (".textgrid", ".json"):
        raise UsageError(f"cannot write {out}: use a .TextGrid or .json file name, or a directory")
    failures, written = [], []
    for audio, ipa, text, lang in items:
        target = out / f"{Path(audio).stem}.{args.format}" if to_dir else out
        try:
            alignment: Alignment = _align_one(model, audio, ipa, text, lang)
            target.parent.mkdir(parents=True, exist_ok=True)
            alignment.save(target)
            written.append({"audio": audio, "output": str(target), "phones": len(alignment.phones),
                            "words": len(alignment.words), "score": alignment.score})
        except UsageError as err:
            if not to_dir or not args.manifest:
                raise
            failures.append({"audio": audio, "error": str(err)})
            print(f"phonclip: error: {audio}: {err}", file=sys.stderr)
    if to_dir:
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"aligned": written, "failed": failures}, ensure_ascii=False,
                                                      indent=1), encoding="utf-8")
    for row in written:
        print(f"{row['audio']}: {row['phones']} phones, {row['words']} words -> {row['output']}")
    return 2 if failures else 0


def _align_one(model, audio: str, ipa: str | None, text: str | None, lang: str | None):
    """One recording's alignment; every way the input can be wrong becomes a ``UsageError``."""
    waveform = _read_audio(audio)
    if ipa is None and text is None:
        raise UsageError('give the transcription as --ipa "..." or as --text "..." --lang xx')
    ipa = given_ipa(ipa, text, lang, "the transcription")
    try:
        return model.align(waveform, sample_rate=16_000, ipa=ipa)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _score(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if not hasattr(model, "score"):
        raise UsageError(f"{args.model} is a {model.cfg.name} model; score needs a SCRAPS or CLAP-IPA run "
                         "(make train EXP=scraps)")
    ipa = given_ipa(args.ipa, args.text, args.lang, "the transcription")
    waveforms = [_read_audio(path) for path in args.audio]
    try:
        scores = model.score(waveforms, sample_rate=16_000, ipa=ipa).tolist()
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.json:
        rows = [{"audio": a, "score": round(s, 6)} for a, s in zip(args.audio, scores)]
        print(json.dumps({"ipa": ipa, "model": args.model, "scores": rows}, ensure_ascii=False, indent=1))
    else:
        print(f"/{ipa}/  score = cosine in [-1, 1], higher = closer")
        for audio, score in zip(args.audio, scores):
            print(f"{score:7.3f}  {audio}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from phonclip.export import CARD, export

    try:
        out = export(args.run, args.out_dir)
    except (TypeError, FileExistsError) as err:
        raise UsageError(str(err)) from None
    print(f"exported {args.run} to {out} (model card: {out / CARD}); load it with phonclip.load({str(out)!r})")
    return 0


def _manifest_items(path: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """Rows of a tab-separated manifest with a header: ``audio`` and ``ipa``, or ``text`` and ``lang``;
    relative audio paths are read from the manifest's folder."""
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        raise UsageError(f"no such manifest: {path}") from None
    if not rows or "audio" not in rows[0] or not ({"ipa"} <= set(rows[0]) or {"text", "lang"} <= set(rows[0])):
        raise UsageError(f"{path}: needs a header line with the columns audio and ipa (or audio, text and lang), "
                         "tab-separated")
    base = Path(path).parent
    return [(str(base / r["audio"]), r.get("ipa") or None, r.get("text"), r.get("lang")) for r in rows]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phonclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("train", _train, "train and evaluate every arm of experiments/<EXPERIMENT>.yaml"),
        ("eval", _eval, "evaluate the last checkpoint of every arm"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("experiment", help="experiment name (a file in experiments/)")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_steps=50")
        p.set_defaults(func=func)
    p = sub.add_parser("corpus", help="generate (or find cached) the embedded synthetic corpus")
    p.add_argument("overrides", nargs="*", help="SyntheticConfig overrides, e.g. words_per_language=100")
    p.set_defaults(func=_corpus)

    p = sub.add_parser("kws", help="search a recording for a keyword given as IPA or as text")
    p.add_argument("audio", help="recording (wav, flac, ogg; any sample rate)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--keyword", help="the keyword in IPA, e.g. ˈɡato")
    group.add_argument("--text", help="the keyword in orthography (needs --lang)")
    p.add_argument("--lang", help="espeak language code for --text, e.g. es")
    p.add_argument("--model", default=DEFAULT_MODEL, help="run directory or checkpoint")
    p.add_argument("--window", type=float, default=None, help="window seconds (default: from keyword length)")
    p.add_argument("--hop", type=float, default=0.05, help="hop seconds between windows")
    p.add_argument("--top", type=int, default=5, help="number of hits to print")
    p.set_defaults(func=_kws)

    p = sub.add_parser("embed", help="write speech embeddings of audio files to an .npz")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("-o", "--output", required=True, help="output .npz (arrays: embeddings, files)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="run directory or checkpoint")
    p.set_defaults(func=_embed)

    p = sub.add_parser("align", help="phone and word boundaries of a recording given its transcription")
    p.add_argument("audio", nargs="?", help="recording (wav, flac, ogg; any sample rate)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--ipa", help="the transcription in IPA (spaces between words)")
    group.add_argument("--text", help="the transcription in orthography (needs --lang)")
    p.add_argument("--lang", help="espeak language code for --text, e.g. es")
    p.add_argument("--manifest", help="tab-separated file of many recordings: audio + ipa (or text + lang) columns")
    p.add_argument("-o", "--output", required=True,
                   help="a .TextGrid or .json file, or a directory (one file per recording + manifest.json)")
    p.add_argument("--format", choices=("TextGrid", "json"), default="TextGrid", help="file type in a directory")
    p.add_argument("--model", default=DEFAULT_ALIGNER, help="aligner run directory or checkpoint")
    p.set_defaults(func=_align)

    p = sub.add_parser("score", help="how well recordings say a transcription: one cosine in [-1, 1] per file")
    p.add_argument("audio", nargs="+", help="recordings (wav, flac, ogg; any sample rate)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--ipa", help="the transcription in IPA")
    group.add_argument("--text", help="the transcription in orthography (needs --lang)")
    p.add_argument("--lang", help="espeak language code for --text, e.g. es")
    p.add_argument("--json", action="store_true", help="print JSON (ipa, model, scores) instead of a table")
    p.add_argument("--model", default=DEFAULT_SCORER, help="SCRAPS (or CLAP-IPA) run directory or checkpoint")
    p.set_defaults(func=_score)

    p = sub.add_parser("export", help="write a CLAP-IPA run as transformers model directories + a model card")
    p.add_argument("run", help="run directory or checkpoint (e.g. runs/clap_ipa/main)")
    p.add_argument("out_dir", help="directory to write (replaced if it holds an earlier export)")
    p.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; configuration and input mistakes exit with code 2 and one clear message."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UsageError, FileNotFoundError) as err:
        print(f"phonclip: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
