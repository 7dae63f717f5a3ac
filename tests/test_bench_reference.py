"""The re-created reference step of the P5 benchmark computes what it claims: the same loss, the same sizes."""

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from data_modules.collate import collate
from data_modules.schema import Sample
from phonclip import config
from phonclip.benchmarks.reference import (
    ReferenceSpeech,
    ReferenceStep,
    reference_batch,
    reference_sigmoid_loss,
)
from phonclip.encoders.speech import SpeechEncoder, SpeechEncoderConfig
from phonclip.ipa import IpaTokenizer
from phonclip.losses import SigLipLoss


def test_reference_loss_is_the_dense_sigmoid_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    ours = SigLipLoss(init_logit_scale=np.log(10.0), init_logit_bias=-10.0, chunk_size=None)
    t, bias = torch.tensor(float(np.log(10.0))), torch.tensor(-10.0)
    torch.testing.assert_close(reference_sigmoid_loss(a, b, t, bias), ours(a, b))
    negatives = torch.randn(3, 8, generator=gen)
    cos = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(negatives, dim=-1).T
    expected = -torch.nn.functional.logsigmoid(-(10.0 * cos - 10.0)).sum() / 6
    torch.testing.assert_close(reference_sigmoid_loss(a, negatives, t, bias, only_negatives=True), expected)


def test_reference_speech_tower_has_this_projects_sizes() -> None:
    ours = SpeechEncoder(SpeechEncoderConfig(size="cpu"))
    theirs = ReferenceSpeech("cpu", n_mels=80, proj_size=256)
    projection = 192 * 256 + 256
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters()) + projection


@pytest.fixture(scope="module")
def batches():
    tokenizer = IpaTokenizer()
    rng = np.random.default_rng(0)
    samples = [Sample(key=str(i), audio=(0.1 * rng.standard_normal(n)).astype(np.float32), ipa=ipa, lang="xx")
               for i, (n, ipa) in enumerate([(8_000, "ɡato"), (12_000, "kasa"), (5_000, "pero")])]
    batch = collate(samples, tokenizer, "ipa", {})
    return batch, reference_batch(batch, WhisperFeatureExtractor(feature_size=80), tokenizer, n_negatives=2,
                                  max_positions=128, seed=0)


def test_reference_batch_holds_10ms_features_of_the_same_clips(batches) -> None:
    batch, ref = batches
    assert ref["feats"].shape[:2] == (3, 80) and ref["feats"].shape[2] == 76  # 12,000 samples / 160, even
    assert ref["frame_mask"].sum(-1).tolist() == [50, 75, 32]  # ceil(samples / 160)
    assert torch.equal(ref["phone_ids"], batch["phone_ids"]) and len(ref["negative_lens"]) == 2


def test_reference_step_trains(batches) -> None:
    [(_, cfg)] = config.load("clap_ipa")
    step = ReferenceStep(cfg, IpaTokenizer().vocab_size, max_steps=10)
    loss = step.training_step(batches[1], 0)
    loss.backward()
    assert torch.isfinite(loss) and step.speech.conv1.weight.grad.abs().sum() > 0
    assert step.phone.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
