"""``phonclip`` command line: train, eval, corpus, kws, embed."""

from __future__ import annotations

import argparse
import sys

from phonclip.config import ConfigError

DEFAULT_MODEL = "runs/clap_ipa/main"


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
    from phonclip.ipa import normalize_ipa

    if args.keyword is not None:
        if not args.keyword.strip():
            raise UsageError("the keyword is empty")
        return normalize_ipa(args.keyword)
    if not args.text.strip():
        raise UsageError("the keyword text is empty")
    if not args.lang:
        raise UsageError("--text needs --lang (an espeak language code such as es, de, en-us)")
    from data_modules.espeak import Espeak, UnknownVoiceError

    try:
        return normalize_ipa(Espeak.shared().phonemize(args.text, voice=args.lang))
    except UnknownVoiceError as err:
        raise UsageError(f"unknown language --lang {args.lang!r}: {err}") from None


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
