"""IPA-CLIP's evaluation: how close the student gets to its teacher, what its phoneme space has learnt
about the IPA chart (the paper's Table 2), whether unseen nonwords land near the words they sound like
(Table 3), and, with a CLIP teacher and ImageNet, image classification from pronunciations (Table 4).

Sections of the returned dict:

- ``valid``: MSE and cosine to the teacher on the fixed validation pairs, and pronunciation → text
  retrieval among their teacher embeddings (Hit@1, chance 1/N);
- ``phonemes_en`` / ``phonemes_all``: the phoneme space of English phones (as the paper) and of the
  phones of the 31 corpus languages: silhouettes of the consonant and vowel clusters, consonant mAP for
  voicing / place / manner, vowel ρ for height / backness / roundedness (chance beside each mAP);
- ``nonwords``: the initial consonant of class words ("a photo of a <word>") replaced by each candidate
  consonant, real words dropped, retrieval of the source class text among the class texts, by the
  number of attributes (voicing, place, manner) the new consonant shares with the old; beside it, the
  teacher reading the nonword's spelling, and (shared=3) the real words themselves;
- ``imagenet`` (when configured): classification accuracy by label Zipf frequency and nonword → image
  Recall@K.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import wordfreq
from torch import Tensor

from data_modules.pronunciations import pronounce, wordnet_lemmas
from data_modules.synthetic import SEEN_LANGUAGES, UNSEEN_LANGUAGES, WORDFREQ_CODES
from phonclip.encoders.attributes import consonant, shared_attributes, vowel
from phonclip.eval.phoneme_space import (
    label_map,
    phoneme_space_figure,
    rank_correlation,
    shared_attributes_figure,
    silhouettes,
)
from phonclip.eval.plots import save_figure
from phonclip.eval.retrieval import cosine_scores
from phonclip.ipa import PRIMARY_STRESS, SECONDARY_STRESS, WORD_BOUNDARY

VOWELS_IN_SPELLING = set("aeiou")


def validation(model: Any, datamodule: Any) -> dict[str, Any]:
    """Distance to the teacher on the validation pairs, and pronunciation → text Hit@1 among them."""
    pairs = [datamodule.pairs[i] for i in datamodule.valid_index]
    target = model.teacher_embeddings([p.text for p in pairs])
    student = model.embed_pronunciations([p.ipa for p in pairs])
    hit = (cosine_scores(student, target).argmax(1) == torch.arange(len(pairs))).float().mean()
    return {
        "pairs": len(pairs),
        "mse": torch.nn.functional.mse_loss(student, target).item(),
        "cosine": torch.nn.functional.cosine_similarity(student, target).mean().item(),
        "pron→text": {"hit@1": hit.item(), "chance_hit@1": 1 / len(pairs)},
    }


def _phones(ipas: list[str], tokenizer: Any) -> list[str]:
    """Distinct consonant and vowel segments of ``ipas`` that the tokenizer knows, sorted."""
    segments = {seg for ipa in ipas for seg in tokenizer.segments(ipa)}
    return sorted(s for s in segments if s in tokenizer.ids and (consonant(s) or vowel(s)))


def language_phones(n_words: int, tokenizer: Any) -> list[str]:
    """The phones espeak-ng uses for the ``n_words`` most frequent words of each corpus language."""
    ipas = []
    for lang in [*SEEN_LANGUAGES, *UNSEEN_LANGUAGES]:
        words = wordfreq.top_n_list(WORDFREQ_CODES.get(lang, lang), n_words)
        ipas += [ipa for ipa in pronounce(words, lang, progress=False) if ipa]
    return _phones(ipas, tokenizer)


def _chance_map(labels: list[Any]) -> float:
    """Expected AP of a random ranking: the share of the other items that are relevant, per query."""
    counts = defaultdict(int)
    for label in labels:
        counts[label] += 1
    shares = [(counts[x] - 1) / (len(labels) - 1) for x in labels if counts[x] > 1]
    return sum(shares) / len(shares) if shares else float("nan")


def phoneme_space(table: Tensor, phones: list[str], tokenizer: Any) -> dict[str, Any]:
    """The paper's Table 2 metrics for ``phones``, from the embedding rows ``table`` [vocab, D]."""
    emb = table[[tokenizer.ids[p] for p in phones]].float()
    cons = [i for i, p in enumerate(phones) if consonant(p)]
    vows = [i for i, p in enumerate(phones) if vowel(p) and not consonant(p)]
    s_cc, s_cv = silhouettes(emb[cons + vows], [False] * len(cons) + [True] * len(vows))
    out: dict[str, Any] = {"consonants": len(cons), "vowels": len(vows), "s_Cc": s_cc, "s_Cv": s_cv}
    c_attrs = [consonant(phones[i]) for i in cons]
    for name, labels in (("voicing", [c.voiced for c in c_attrs]), ("place", [c.places for c in c_attrs]),
                         ("manner", [c.manner for c in c_attrs])):
        out[f"{name}_mAP"] = label_map(emb[cons], labels)
        out[f"chance_{name}_mAP"] = _chance_map(labels)
    v_attrs = [vowel(phones[i]) for i in vows]
    for name in ("height", "backness", "rounded"):
        out[f"{name}_rho"] = rank_correlation(emb[vows], [float(getattr(v, name)) for v in v_attrs])
    return out


@dataclass(frozen=True)
class Nonword:
    source: int  # index of the class word it was made from
    ipa: str
    spelling: str
    shared: int  # attributes the new initial consonant shares with the old (0..2)


def _sounds(ipa: str, tokenizer: Any) -> list[str]:
    return [s for s in tokenizer.segments(ipa) if s not in (PRIMARY_STRESS, SECONDARY_STRESS)]


def one_consonant_initial(word: str, ipa: str, tokenizer: Any) -> bool:
    """A word whose spelling and pronunciation both start with one consonant then a vowel."""
    sounds = _sounds(ipa, tokenizer)
    return (len(word) > 2 and word[0] not in VOWELS_IN_SPELLING and word[1] in VOWELS_IN_SPELLING
            and WORD_BOUNDARY not in ipa and len(sounds) > 2 and consonant(sounds[0]) is not None
            and vowel(sounds[1]) is not None and consonant(sounds[1]) is None)


REAL_WORD_ZIPF = 3.0  # a spelling this frequent in wordfreq's English (once per million words) is a word


def make_nonwords(words: list[str], ipas: list[str], candidates: dict[str, str], real_ipa: set[str],
                  tokenizer: Any) -> list[Nonword]:
    """Each one-consonant-initial word with its initial consonant replaced by each candidate; results
    that are real words (spelling a WordNet lemma or frequent in wordfreq, or IPA among ``real_ipa``) dropped."""
    lemmas = wordnet_lemmas()
    out = []
    for c in candidates:
        if consonant(c) is None:
            raise ValueError(f"model.eval.nonword_consonants: {c!r} is not a consonant")
    for k, (word, ipa) in enumerate(zip(words, ipas)):
        if not one_consonant_initial(word, ipa, tokenizer):
            continue
        first = _sounds(ipa, tokenizer)[0]
        rest = ipa[ipa.index(first) + len(first):]
        for new, spelled in candidates.items():
            shared = shared_attributes(consonant(first), consonant(new))
            nonword_ipa = ipa[: ipa.index(first)] + new + rest
            spelling = spelled + word[1:]
            if (shared == 3 or spelling in lemmas or wordfreq.zipf_frequency(spelling, "en") >= REAL_WORD_ZIPF
                    or _plain(nonword_ipa) in real_ipa):
                continue
            out.append(Nonword(k, nonword_ipa, spelling, shared))
    return out


def _plain(ipa: str) -> str:
    return ipa.replace(PRIMARY_STRESS, "").replace(SECONDARY_STRESS, "")


def _top1(queries: Tensor, gallery: Tensor) -> Tensor:
    return cosine_scores(queries, gallery).argmax(1)


def nonword_retrieval(model: Any, datamodule: Any, cfg: Any) -> tuple[dict[str, Any], str]:
    """Nonword → class text accuracy by shared attributes: the student on IPA, the teacher on spelling.
    Also returns the template's IPA (as espeak reads it before a noun), which nonword prompts start with."""
    template = datamodule.cfg.template
    photos = [p for p in datamodule.pairs if p.kind == "photo"]
    if not photos:
        raise ValueError("the nonword test needs template pairs: set data.photo_words > 0")
    prefix_ipa = photos[0].ipa.rsplit(WORD_BOUNDARY, 1)[0]
    word_ipa = {p.text[len(template.format("")):]: p.ipa.rsplit(WORD_BOUNDARY, 1)[1] for p in photos
                if p.ipa.rsplit(WORD_BOUNDARY, 1)[0] == prefix_ipa}
    eligible = sorted(w for w, ipa in word_ipa.items() if one_consonant_initial(w, ipa, model.tokenizer))
    classes = sorted(random.Random(cfg.seed).sample(eligible, min(cfg.nonword_classes, len(eligible))))
    real = {_plain(p.ipa) for p in datamodule.pairs if p.kind == "word"} | {_plain(i) for i in word_ipa.values()}
    nonwords = make_nonwords(classes, [word_ipa[w] for w in classes], dict(cfg.nonword_consonants), real,
                             model.tokenizer)
    gallery = model.teacher_embeddings([template.format(w) for w in classes])
    source = torch.tensor([n.source for n in nonwords])
    student = _top1(model.embed_pronunciations([f"{prefix_ipa} {n.ipa}" for n in nonwords]), gallery) == source
    teacher = _top1(model.teacher().embed([template.format(n.spelling) for n in nonwords], progress=False),
                    gallery) == source
    original = _top1(model.embed_pronunciations([f"{prefix_ipa} {word_ipa[w]}" for w in classes]), gallery)
    rows: dict[str, dict] = {}
    for shared in (0, 1, 2):
        keep = torch.tensor([n.shared == shared for n in nonwords], dtype=torch.bool)
        rows[f"shared={shared}"] = {
            "nonwords": int(keep.sum()),
            "student": student[keep].float().mean().item() if keep.any() else float("nan"),
            "teacher_spelling": teacher[keep].float().mean().item() if keep.any() else float("nan"),
            "chance_student": 1 / len(classes),
        }
    rows["shared=3 (the real word)"] = {
        "nonwords": len(classes),
        "student": (original == torch.arange(len(classes))).float().mean().item(),
        "chance_student": 1 / len(classes),
    }
    return {"classes": len(classes), "shared": rows}, prefix_ipa


def evaluate_ipa_clip(model: Any, datamodule: Any, out_dir: Path, cfg: Any, logger: Any = None) -> dict[str, Any]:
    """Every section of the module docstring; plots of the English phoneme space and the nonword curve."""
    model.eval()
    model.to(model.eval_device)
    table = model.phoneme_embedding.table().detach().cpu()
    english = _phones([p.ipa for p in datamodule.pairs], model.tokenizer)
    results: dict[str, Any] = {
        "valid": validation(model, datamodule),
        "phonemes_en": phoneme_space(table, english, model.tokenizer),
        "phonemes_all": phoneme_space(table, language_phones(cfg.language_words, model.tokenizer), model.tokenizer),
    }
    results["nonwords"], prefix_ipa = nonword_retrieval(model, datamodule, cfg)
    is_vowel = [consonant(p) is None for p in english]
    save_figure(phoneme_space_figure(table[[model.tokenizer.ids[p] for p in english]], english, is_vowel,
                                     "English phones (PCA of the phoneme embedding)"), "phoneme_space", out_dir, logger)
    rows = results["nonwords"]["shared"]
    curves = {arm: {k: rows[f"shared={k}"][key] for k in range(3)}
              for arm, key in (("pronunciation (student)", "student"), ("teacher on spelling", "teacher_spelling"))}
    save_figure(shared_attributes_figure(curves, "nonword → class text"), "nonwords", out_dir, logger)
    if cfg.imagenet.root:
        results["imagenet"] = imagenet(model, datamodule, cfg, prefix_ipa, out_dir)
    return results


def imagenet(model: Any, datamodule: Any, cfg: Any, prefix_ipa: str, out_dir: Path) -> dict[str, Any]:
    """Table 4: ImageNet classes named by pronunciation, text and both; nonword → image Recall@K."""
    from data_modules.imagenet import ImageFolderClasses, ImageNetConfig
    from phonclip.eval.image_classification import ClipImageTower, evaluate_imagenet

    c = cfg.imagenet
    images = ImageFolderClasses(ImageNetConfig(root=c.root, class_names=c.class_names,
                                               max_images_per_class=c.max_images_per_class, seed=cfg.seed))
    ipas = pronounce(images.names, datamodule.cfg.lang, progress=False)
    nonwords = make_nonwords([n.lower() for n in images.names], ipas, dict(cfg.nonword_consonants), set(),
                             model.tokenizer)
    return evaluate_imagenet(
        ClipImageTower(c.tower, device=model.eval_device), images, model.embed_pronunciations,
        [f"{prefix_ipa} {ipa}" for ipa in ipas], template=datamodule.cfg.template,
        nonwords=[(f"{prefix_ipa} {n.ipa}", n.source) for n in nonwords], k=c.recall_k, out_dir=out_dir,
    )
