"""Early exit: an encoder cut after k layers feeds per-language CTC probes; the report names the best layer."""

import pytest
import torch
from tiny import write_tiny_whisper

from phonclip.models.early_exit import EarlyExit, best_exit_table, exit_curve, exit_layers


class _Words:
    """A test set of two languages, three words each, two renditions per word (noise clips)."""

    def test_sets(self) -> dict:
        gen = torch.Generator().manual_seed(0)
        rows = [(lang, word, ipa) for lang, words in {"vi": ["ba", "ko", "mi"], "ta": ["pa", "tu", "ki"]}.items()
                for word, ipa in zip(words, words, strict=True) for _ in range(2)]
        audio = 0.1 * torch.randn(len(rows), 8_000, generator=gen)
        batch = {"audio": audio, "audio_lens": torch.full((len(rows),), 8_000), "lang": [r[0] for r in rows],
                 "text": [r[1] for r in rows], "ipa": [r[2] for r in rows]}
        return {"test_unseen": [batch]}


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper"), encoder_layers=3)


def test_each_language_is_probed_from_the_exit_layer(whisper_dir, tmp_path) -> None:
    cfg = {"speech": {"source": str(whisper_dir), "exit_layer": 2},
           "probe": {"steps": 5, "seeds": [0, 1], "hidden": 16}}
    model = EarlyExit(cfg)
    assert model.speech.num_layers == 2
    out = model.evaluate(_Words(), tmp_path / "exit_2")
    summary = out["test_unseen"]
    assert summary["exit_layer"] == 2 and set(summary["per_language"]) == {"vi", "ta"}
    for row in summary["per_language"].values():
        assert len(row["per_seeds"]) == 2 and row["train_clips"] + row["test_clips"] == 6
    assert (tmp_path / "exit_curve").is_dir()  # the shared TensorBoard curve beside the arms
    with pytest.raises(ValueError, match="test_phrases"):
        EarlyExit(cfg | {"test_set": "test_phrases"}).evaluate(_Words(), tmp_path / "x")


def _arm(layer: int, pers: dict[str, float]) -> dict:
    per_language = {lang: {"per": p, "per_std": 0.01, "chance_per": 1.0} for lang, p in pers.items()}
    return {"metrics": {"test_unseen": {"exit_layer": layer, "per": 0.0, "per_language": per_language}}}


def test_best_exit_table_names_the_best_layer_and_its_gain() -> None:
    per_arm = {"full": _arm(3, {"vi": 0.50, "ta": 0.40}), "exit_1": _arm(1, {"vi": 0.60, "ta": 0.45}),
               "exit_2": _arm(2, {"vi": 0.42, "ta": 0.41})}
    assert list(exit_layers(per_arm)) == [1, 2, 3]
    rows = best_exit_table(per_arm)
    assert rows[2] == "| vi | 2 of 3 | 0.420 ± 0.010 | 0.500 ± 0.010 | +8.0 |"
    assert rows[3] == "| ta | 3 of 3 | 0.400 ± 0.010 | 0.400 ± 0.010 | +0.0 |"
    assert len(exit_curve(per_arm).axes[0].lines) >= 2
