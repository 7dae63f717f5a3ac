"""The CTC phone-recognition probe: word-disjoint splits, PER against hand counts, a head that learns
phones from features that hold them (and not from shuffled labels), deterministic per seed."""

import random

import pytest
import torch
from torch import Tensor

from phonclip.eval.ctc_probe import (
    CtcHead,
    CtcProbeConfig,
    PhoneVocab,
    collapse_path,
    greedy_decode,
    phone_error_rate,
    probe_language,
    split_by_word,
    train_head,
)

SMALL = CtcProbeConfig(hidden=64, steps=150, lr=1e-2, seeds=[0])  # past the blank plateau


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Keep tests light on a shared machine, and restore the caller's setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _synthetic_language(
    seed: int = 0, n_words: int = 40, renditions: int = 3, n_phones: int = 8, dim: int = 32
) -> tuple[list[Tensor], list[list[str]], list[str]]:
    """Clips of 2–5 phones, each a fixed random prototype held 2–4 frames, plus small noise."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(n_phones, dim, generator=g)
    inventory = [chr(ord("a") + i) for i in range(n_phones)]
    lexicon: dict[str, list[int]] = {}
    while len(lexicon) < n_words:
        ids = torch.randint(n_phones, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)
        if (ids[1:] != ids[:-1]).all():  # a repeated phone would be one long, ambiguous segment
            lexicon.setdefault("".join(inventory[i] for i in ids), ids.tolist())
    feats, phones, words = [], [], []
    for word, ids in lexicon.items():
        for _ in range(renditions):
            frames = torch.randint(2, 5, (len(ids),), generator=g)
            clean = prototypes[ids].repeat_interleave(frames, dim=0)
            feats.append(clean + 0.1 * torch.randn(clean.shape, generator=g))
            phones.append([inventory[i] for i in ids])
            words.append(word)
    return feats, phones, words


@pytest.fixture(scope="module")
def language() -> tuple[list[Tensor], list[list[str]], list[str]]:
    return _synthetic_language()


@pytest.fixture(scope="module")
def learned(language) -> dict:
    return probe_language(*language, SMALL)


def test_split_keeps_renditions_together_and_is_deterministic():
    words = [f"w{i % 10}" for i in range(30)]  # 10 words, 3 renditions each
    train, test = split_by_word(words, 0.3, seed=0)
    assert sorted(train + test) == list(range(30))
    train_words, test_words = {words[i] for i in train}, {words[i] for i in test}
    assert not train_words & test_words
    assert len(train_words) == 3 and len(train) == 9
    assert split_by_word(words, 0.3, seed=0) == (train, test)
    rows = list(range(30))
    random.Random(1).shuffle(rows)
    reordered_train, _ = split_by_word([words[i] for i in rows], 0.3, seed=0)
    assert {words[rows[i]] for i in reordered_train} == train_words  # row order does not matter
    other_seeds = {frozenset(words[i] for i in split_by_word(words, 0.3, seed=s)[0]) for s in range(5)}
    assert len(other_seeds) > 1


@pytest.mark.parametrize(
    ("words", "fraction"), [(["a", "a", "a"], 0.5), (["a", "b", "c"], 0.0), (["a", "b"], 1.0)]
)
def test_split_rejects_an_empty_side(words, fraction):
    with pytest.raises(ValueError, match="empty"):
        split_by_word(words, fraction)


def test_vocab_round_trip_with_blank_zero():
    vocab = PhoneVocab.from_sequences([["t", "a"], ["a", "ʃ", "tʃ"]])
    assert len(vocab) == 5
    ids = vocab.encode(["tʃ", "a", "ʃ", "t"])
    assert 0 not in ids and sorted(ids) == [1, 2, 3, 4]
    assert vocab.decode(ids) == ["tʃ", "a", "ʃ", "t"]
    assert vocab.encode(["a", "q", "t"]) == vocab.encode(["a", "t"])  # unknown phones dropped
    assert vocab.decode([0, *ids, 0]) == vocab.decode(ids)


def test_phone_error_rate_matches_hand_counts():
    assert phone_error_rate([["a", "c"]], [["a", "b", "c"]]) == pytest.approx(1 / 3)  # deletion
    # substitution x/a and insertion d: 2 edits over 3 phones; plus a perfect clip of 2 phones
    hyps, refs = [["x", "b", "c", "d"], ["tʃ", "a"]], [["a", "b", "c"], ["tʃ", "a"]]
    assert phone_error_rate(hyps, refs) == pytest.approx(2 / 5)
    assert phone_error_rate(refs, refs) == 0.0
    assert phone_error_rate([[]], [["a", "b"]]) == 1.0
    # "a b" is one (wrong) phone, not two: a substitution and a deletion
    assert phone_error_rate([["a b", "c"]], [["a", "b", "c"]]) == pytest.approx(2 / 3)


def test_phone_error_rate_rejects_bad_input():
    with pytest.raises(ValueError):
        phone_error_rate([["a"]], [["a"], ["b"]])
    with pytest.raises(ValueError):
        phone_error_rate([["a"]], [[]])


def test_collapse_path_merges_repeats_then_drops_blanks():
    assert collapse_path([0, 1, 1, 0, 1, 2, 2, 0, 0]) == [1, 1, 2]
    assert collapse_path([]) == [] and collapse_path([0, 0]) == []


def test_head_shapes_and_padding_independence():
    cfg = CtcProbeConfig(hidden=16, upsample=3)
    head = CtcHead(8, 5, cfg).eval()
    clips = [torch.randn(7, 8), torch.randn(4, 8)]
    padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    log_probs, lens = head(padded, torch.tensor([7, 4]))
    assert log_probs.shape == (2, 21, 5) and lens.tolist() == [21, 12]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 21), atol=1e-5)
    alone, _ = head(clips[1][None], torch.tensor([4]))
    assert torch.allclose(alone[0], log_probs[1, :12], atol=1e-5)


def test_head_learns_phones_from_features_that_hold_them(learned):
    assert learned["train_clips"] + learned["test_clips"] == 120
    assert learned["per"] < 0.2
    assert learned["chance_per"] > 0.6
    assert learned["per_std"] == 0.0 and learned["per_seeds"] == [learned["per"]]


def test_head_cannot_learn_shuffled_labels(language, learned):
    feats, phones, words = language
    order = list(range(len(phones)))
    random.Random(0).shuffle(order)
    shuffled = probe_language(feats, [phones[i] for i in order], words, SMALL)
    assert shuffled["per"] > 0.6
    assert shuffled["per"] > learned["per"] + 0.4


def test_training_is_deterministic_per_seed_and_leaves_global_rng_alone(language):
    feats, phones, _ = language
    vocab = PhoneVocab.from_sequences(phones)
    targets = [vocab.encode(p) for p in phones]
    cfg = CtcProbeConfig(hidden=32, steps=20)

    def weights(seed: int) -> dict[str, Tensor]:
        return train_head(feats, targets, len(vocab), cfg, seed).state_dict()

    torch.manual_seed(123)
    rng_state = torch.get_rng_state()
    first = weights(0)
    assert torch.equal(torch.get_rng_state(), rng_state)
    torch.manual_seed(456)  # the caller's RNG must not matter either
    second = weights(0)
    assert all(torch.equal(first[k], second[k]) for k in first)
    third = weights(1)
    assert not all(torch.equal(first[k], third[k]) for k in first)
    runs = [probe_language(*language, CtcProbeConfig(hidden=32, steps=20, seeds=[0, 1]))
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0]["per_seeds"][0] != runs[0]["per_seeds"][1]


def test_greedy_decode_batches_alike(language):
    feats, phones, _ = language
    vocab = PhoneVocab.from_sequences(phones)
    head = train_head(feats, [vocab.encode(p) for p in phones], len(vocab), SMALL, 0)
    assert greedy_decode(head, feats, batch_size=7) == greedy_decode(head, feats, batch_size=64)


def test_probe_rejects_mismatched_inputs(language):
    feats, phones, words = language
    with pytest.raises(ValueError):
        probe_language(feats, phones[:-1], words, SMALL)
