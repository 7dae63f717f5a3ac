"""Name → class tables for models and DataModules, so a YAML's ``name`` picks the code and its config schema."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Registry:
    """Lazily imported ``name -> "module:Class"`` table; the class carries its config dataclass as ``Config``."""

    kind: str
    entries: dict[str, str]

    def cls(self, name: str) -> type:
        if name not in self.entries:
            raise KeyError(name)
        module, attr = self.entries[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def config(self, name: str) -> type:
        return self.cls(name).Config

    def known(self) -> list[str]:
        return sorted(self.entries)


models = Registry(
    "model",
    {"clap_ipa": "phonclip.models.clap_ipa:ClapIpa", "aligner": "phonclip.models.aligner:Aligner",
     "scraps": "phonclip.models.scraps:Scraps", "ipa_clip": "phonclip.models.ipa_clip:IpaClip",
     "semantic_awe": "phonclip.models.semantic_awe:SemanticAwe",
     "layer_probe": "phonclip.models.layer_probe:LayerProbe", "early_exit": "phonclip.models.early_exit:EarlyExit"},
)
datamodules = Registry(
    "data",
    {
        "synthetic": "data_modules.synthetic:SyntheticDataModule",
        "ipapack": "data_modules.ipapack:IpapackDataModule",
        "librispeech": "data_modules.librispeech:LibriSpeechDataModule",
        "aligned": "data_modules.aligned:AlignedDataModule",
        "pronunciations": "data_modules.pronunciations:PronunciationDataModule",
        "spoken_words": "data_modules.spoken_words:SpokenWordsDataModule",
        "parallel_speech": "data_modules.parallel_speech:ParallelSpeechDataModule",
    },
)
tokenizers = Registry("units", {"ipa": "phonclip.ipa:IpaTokenizer", "text": "phonclip.text_units:CharTokenizer"})
