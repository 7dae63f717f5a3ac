"""phonclip: contrastive phoneme–speech–text embeddings (CLAP-IPA and relatives) on one shared spine."""

from phonclip.api import load

__all__ = ["load"]
