"""Speech and phone encoders: equal to the stock models, padding-invariant, checkpoint-loadable."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperModel,
)

from phonclip.encoders.packing import Packing
from phonclip.encoders.phone import PhoneEncoder, PhoneEncoderConfig
from phonclip.encoders.pooling import lengths_to_mask, masked_mean
from phonclip.encoders.speech import SpeechEncoder, SpeechEncoderConfig

N_MELS = 80
VOCAB = 12
N_FEATURES = 6


def speech(**overrides) -> SpeechEncoder:
    torch.manual_seed(0)
    cfg = SpeechEncoderConfig(**{"max_frames": 400, **overrides})
    return SpeechEncoder(cfg).eval()


def phone(articulatory: bool = True, features: torch.Tensor | None = None) -> PhoneEncoder:
    torch.manual_seed(0)
    if features is None:
        features = torch.randint(-1, 2, (VOCAB, N_FEATURES)).float()
    cfg = PhoneEncoderConfig(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        articulatory_features=articulatory,
    )
    return PhoneEncoder(cfg, VOCAB, features).eval()


def tiny_whisper_config() -> WhisperConfig:
    return WhisperConfig(
        num_mel_bins=N_MELS,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        max_source_positions=200,
        vocab_size=100,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        decoder_start_token_id=3,
        max_target_positions=16,
    )


def test_masked_mean_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = lengths_to_mask(torch.tensor([2, 3]), 3)
    assert torch.equal(masked_mean(hidden, mask), torch.tensor([[2.0], [4.0]]))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_speech_matches_stock_whisper_on_30s(attn: str) -> None:
    enc = speech(max_frames=3000, attn_implementation=attn)
    feats = torch.randn(1, N_MELS, 3000)
    with torch.no_grad():
        ours, mask = enc(feats, torch.tensor([3000]))
        stock = enc.encoder(feats).last_hidden_state
    assert ours.shape == (1, 1500, enc.hidden_size) and mask.all()
    assert (ours - stock).abs().max() <= 1e-5


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("short_len", [91, 120])  # odd and even: the stem's stride-2 edge case
def test_speech_padding_invariance(attn: str, short_len: int) -> None:
    enc = speech(attn_implementation=attn)
    short, long = torch.randn(1, N_MELS, short_len), torch.randn(1, N_MELS, 200)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 200 - short_len), value=-5.0)])
    with torch.no_grad():
        alone = enc.pooled(short, torch.tensor([short_len]))
        hidden, mask = enc(batch, torch.tensor([200, short_len]))
        batched = masked_mean(hidden, mask)
    assert mask.sum(1).tolist() == [100, (short_len + 1) // 2]
    assert (alone[0] - batched[1]).abs().max() <= 1e-5


def test_speech_exit_layer_equals_first_layers_plus_final_norm() -> None:
    full = speech()
    early = speech(exit_layer=2)
    early.load_state_dict(full.state_dict(), strict=False)
    feats, lens = torch.randn(2, N_MELS, 160), torch.tensor([160, 97])
    with torch.no_grad():
        _, mask, states = full(feats, lens, output_all_layers=True)
        hidden, early_mask = early(feats, lens)
        expected = full.encoder.layer_norm(states[2])
    assert early.num_layers == 2 and hidden.shape[-1] == early.hidden_size
    assert torch.equal(mask, early_mask)
    assert (hidden - expected)[mask].abs().max() <= 1e-5


def test_speech_all_layers_has_num_layers_plus_one_states() -> None:
    enc = speech()
    with torch.no_grad():
        hidden, _, states = enc(
            torch.randn(1, N_MELS, 50), torch.tensor([50]), output_all_layers=True
        )
    assert len(states) == enc.num_layers + 1
    assert torch.equal(states[-1], hidden)


def test_speech_rejects_too_long_clip() -> None:
    with pytest.raises(ValueError, match="max_frames=400"):
        speech()(torch.randn(1, N_MELS, 402), torch.tensor([402]))


@pytest.mark.parametrize("model_cls", [WhisperModel, WhisperForConditionalGeneration])
def test_speech_loads_encoder_of_full_whisper_checkpoint(tmp_path, model_cls) -> None:
    torch.manual_seed(1)
    whisper = model_cls(tiny_whisper_config())
    whisper.save_pretrained(tmp_path)
    enc = SpeechEncoder(SpeechEncoderConfig(pretrained=str(tmp_path), max_frames=400))
    reference = whisper.get_encoder().state_dict()
    loaded = enc.encoder.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_speech_pretrained_rejects_wrong_mel_count(tmp_path) -> None:
    WhisperModel(tiny_whisper_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="n_mels=128"):
        SpeechEncoder(SpeechEncoderConfig(pretrained=str(tmp_path), n_mels=128, max_frames=400))


def test_speech_gradient_checkpointing_keeps_gradients() -> None:
    enc = speech(gradient_checkpointing=True).train()
    enc.pooled(torch.randn(2, N_MELS, 60), torch.tensor([60, 33])).sum().backward()
    assert all(p.grad is not None for p in enc.encoder.layers.parameters())


def test_phone_padding_invariance() -> None:
    enc = phone()
    ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]])
    with torch.no_grad():
        alone = enc.pooled(ids[1:, :3], torch.tensor([3]))
        batched = enc.pooled(ids, torch.tensor([5, 3]))
    assert (alone[0] - batched[1]).abs().max() <= 1e-5


def test_packed_phone_batch_gives_each_row_its_states_alone() -> None:
    enc = phone()
    lens = torch.tensor([3, 7, 1, 12, 5, 0, 9, 12])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (8, 12), generator=g).masked_fill(~lengths_to_mask(lens, 12), 0)
    packing = Packing.plan(lens, 12)
    assert packing.rows == 1 and packing.width == 64  # 49 tokens fill one row of 64
    assert torch.equal(packing.segment[packing.segment >= 0].bincount(minlength=8), lens)
    with torch.no_grad():
        hidden, mask = enc(ids, lens)
        for b in range(8):
            if lens[b]:
                alone, _ = enc(ids[b : b + 1, : lens[b]], lens[b : b + 1])
                assert (alone[0] - hidden[b, : lens[b]]).abs().max() <= 1e-5
    assert (hidden[~mask] == 0).all()


def test_packing_fills_rows_first_fit_and_round_trips() -> None:
    lens = torch.tensor([40, 30, 30, 20, 4])
    packing = Packing.plan(lens, 40)
    assert packing.rows == 2  # 40 + 20 + 4 in one row of 64, 30 + 30 in the other
    padded = torch.randn(5, 40, 3).masked_fill(~lengths_to_mask(lens, 40)[..., None], 0.0)
    assert torch.equal(packing.unpack(packing.pack(padded), 5, 40), padded)
    keys = lengths_to_mask(lens, 40)
    mask = packing.attention_mask(keys)
    assert int(mask.sum()) == int((lens**2).sum())  # each token sees its own row only
    assert Packing.plan(lens, 40, max_width=48).width == 48  # a short position table caps the rows


@pytest.mark.parametrize("articulatory", [True, False])
def test_phone_features_separate_tokens_with_identical_rows(articulatory: bool) -> None:
    features = torch.zeros(VOCAB, N_FEATURES)
    features[5, 0], features[6, 0] = 1.0, -1.0
    enc = phone(articulatory, features)
    with torch.no_grad():
        rows = enc.bert.embeddings.word_embeddings.weight
        rows[6] = rows[5]
        a = enc.pooled(torch.tensor([[5]]), torch.tensor([1]))
        b = enc.pooled(torch.tensor([[6]]), torch.tensor([1]))
    assert (a - b).abs().max() > 1e-3 if articulatory else torch.equal(a, b)


def test_phone_gradients_reach_token_and_feature_weights() -> None:
    enc = phone().train()
    enc.pooled(torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])).pow(2).sum().backward()
    assert enc.feature_proj.weight.grad.abs().sum() > 0
    assert enc.bert.embeddings.word_embeddings.weight.grad[[3, 4, 5, 6, 7]].abs().sum() > 0


def test_phone_rejects_feature_matrix_of_wrong_vocab() -> None:
    with pytest.raises(ValueError, match="vocab_size=12"):
        PhoneEncoder(PhoneEncoderConfig(), VOCAB, torch.zeros(VOCAB + 1, N_FEATURES))


def test_phone_loads_pretrained_bert_and_resizes_vocab(tmp_path, caplog) -> None:
    torch.manual_seed(2)
    bert = BertModel(
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    bert.save_pretrained(tmp_path)
    same = PhoneEncoder(PhoneEncoderConfig(pretrained=str(tmp_path)), VOCAB, None)
    reference = bert.state_dict()
    loaded = same.bert.state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in loaded)
    with caplog.at_level(logging.WARNING, logger="phonclip.encoders.phone"):
        bigger = PhoneEncoder(PhoneEncoderConfig(pretrained=str(tmp_path)), VOCAB + 3, None)
    assert "resizing token embeddings" in caplog.text
    assert bigger.bert.embeddings.word_embeddings.weight.shape[0] == VOCAB + 3
    ids, lens = torch.tensor([[VOCAB + 2, 1]]), torch.tensor([2])
    assert bigger(ids, lens)[0].shape == (1, 2, 32)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bf16_autocast_on_cpu_gives_finite_output(attn: str) -> None:
    s_enc, p_enc = speech(attn_implementation=attn), phone()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        s = s_enc.pooled(torch.randn(2, N_MELS, 80), torch.tensor([80, 41]))
        p = p_enc.pooled(torch.tensor([[3, 4, 5], [6, 0, 0]]), torch.tensor([3, 1]))
    assert s.shape == (2, s_enc.hidden_size) and torch.isfinite(s).all()
    assert p.shape == (2, p_enc.hidden_size) and torch.isfinite(p).all()


def test_token_dropout_keeps_features_and_is_train_only():
    """With token_dropout=1 a token is read from its articulatory features alone; eval mode is untouched."""
    from phonclip.encoders.phone import PhoneEncoder, PhoneEncoderConfig

    torch.manual_seed(0)
    cfg = PhoneEncoderConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0,
                             token_dropout=1.0)
    features = torch.randn(6, 4)
    features[3] = features[2]  # tokens 2 and 3 share features, differ in identity embedding
    enc = PhoneEncoder(cfg, vocab_size=6, feature_matrix=features)
    ids, lens = torch.tensor([[2], [3]]), torch.tensor([1, 1])
    enc.train()
    train_out = enc.pooled(ids, lens)
    torch.testing.assert_close(train_out[0], train_out[1])
    enc.eval()
    eval_out = enc.pooled(ids, lens)
    assert not torch.allclose(eval_out[0], eval_out[1])


@pytest.mark.parametrize("as_features", [True, False])
def test_untrained_tokens_are_read_from_features_at_inference(as_features: bool) -> None:
    torch.manual_seed(0)
    cfg = PhoneEncoderConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0,
                             untrained_tokens_as_features=as_features)  # fmt: skip
    features = torch.randn(6, 4)
    features[3] = features[4] = features[2]  # same features; 2 is trained, 3 and 4 are not
    enc = PhoneEncoder(cfg, vocab_size=6, feature_matrix=features)
    enc.mark_trained(torch.tensor([[2, 5, 0]]), torch.tensor([2]))
    assert enc.trained_tokens.tolist() == [False, False, True, False, False, True]
    assert enc.state_dict()["trained_tokens"].sum() == 2  # saved with checkpoints
    with torch.no_grad():
        trained, untrained, other_untrained = enc.eval().pooled(torch.tensor([[2], [3], [4]]), torch.ones(3, dtype=int))
        train_mode = enc.train().pooled(torch.tensor([[3], [4]]), torch.ones(2, dtype=int))
    assert torch.equal(untrained, other_untrained) == as_features
    assert not torch.allclose(trained, untrained)
    assert not torch.allclose(train_mode[0], train_mode[1])  # training reads every identity embedding


def test_tokens_with_features_training_never_saw_are_left_out_at_inference() -> None:
    torch.manual_seed(0)
    cfg = PhoneEncoderConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0)
    features = torch.tensor([[0.0, 0, 0], [0, 0, 0], [1, -1, 0], [-1, 1, 0], [0, 1, 0], [0, 0, 1]])
    enc = PhoneEncoder(cfg, vocab_size=6, feature_matrix=features)  # column 2 is a tone feature
    enc.mark_trained(torch.tensor([[2, 3]]), torch.tensor([2]))
    assert enc.readable_tokens().tolist() == [False, False, True, True, True, False]
    enc.eval()
    with torch.no_grad():
        word, with_tone, tone_only = enc.pooled(torch.tensor([[2, 4, 0], [2, 4, 5], [5, 0, 0]]), torch.tensor([2, 3, 1]))
        torch.testing.assert_close(with_tone, word)  # the tone letter is masked, not read as noise
        assert torch.isfinite(tone_only).all()  # a transcription of unreadable tokens only keeps them
        assert not torch.allclose(enc.train().pooled(torch.tensor([[2, 4, 5]]), torch.tensor([3]))[0], word)
