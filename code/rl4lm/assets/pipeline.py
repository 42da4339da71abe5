"""The tiny profile's post-training pipeline: the tiny LM after SFT, after DPO and after PPO-RLHF, as model roles.

Later labs compare a base model with its tuned descendants without running Homework 3 first. The ``full`` profile
maps the four roles ``pipeline_base``, ``pipeline_sft``, ``pipeline_dpo`` and ``pipeline_rl`` to the public stages of
OLMo 2 1B (:mod:`rl4lm.assets.roles`); the ``tiny`` build makes the same chain from its own LM, in the order of
InstructGPT's recipe (Ouyang et al., 2022) with DPO (Rafailov et al., 2023) as the preference stage, as OLMo 2 and
Tülu 3 do (Lambert et al., 2024):

1. ``pipeline_sft``: supervised fine-tuning on the tiny ``qa`` rows (:mod:`rl4lm.lm.sft`), so the model answers
   questions about reviews ("did the reviewer like the film ?" -> "yes"), mixed with reviews as in pre-training so
   that it still writes whole reviews (without them it learns to stop after a few words);
2. ``pipeline_dpo``: the SFT model after DPO on the tiny preference pairs (:func:`rl4lm.rlhf.dpo.train_dpo` with
   :data:`rl4lm.rlhf.dpo.PIPELINE_DPO`), the SFT model being the reference;
3. ``pipeline_rl``: the DPO model after PPO with a KL penalty to itself on the tiny sentiment classifier's reward
   (:func:`rl4lm.rlhf.ppo_lm.train_ppo_lm` with :data:`rl4lm.rlhf.ppo_lm.PIPELINE_PPO`).

``pipeline_base`` is the tiny LM itself (folder ``lm``). :func:`build_pipeline` runs after the LM and the classifier
of :func:`rl4lm.assets.tiny.build_into` with its own seeded generators, so the earlier assets stay as they were, and
returns facts about every stage: seconds, exact match on the held-out questions, held-out preference accuracy and
mean sentiment reward of the same seeded samples, measured on all four stages so that they can be compared.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SEED = 0  # every stage seeds torch and its own generators from this; nothing is drawn from the earlier build's state

# Stage 1: supervised fine-tuning on the qa rows (after Homework 1, with a one-cycle schedule), with reviews mixed in.
SFT_STEPS = 300
SFT_BATCH_SIZE = 12  # questions per step (loss on the answer tokens)
SFT_REVIEWS = 4  # reviews per step (loss on every token, as in pre-training)
SFT_LEARNING_RATE = 3e-3
SFT_MAX_LENGTH = 128  # tokens per question and answer; the tiny reviews are far shorter

# Evaluation of every stage (base, SFT, DPO, RL): the same held-out rows and the same seeded samples.
EVAL_QUESTIONS = 300  # held-out qa rows, greedy answers, exact match
EVAL_PAIRS = 300  # held-out preference pairs
RL_PROMPTS = 500  # training reviews whose first words are the PPO prompts
EVAL_PROMPTS = 64  # held-out reviews whose first words are sampled and scored
PROMPT_WORDS = 3
CLASSIFIER_TOKENS = 128  # the classifier reads at most this many tokens of a text, as in the PPO lab


def _rows(folder: Path, name: str, split: str) -> list[dict]:
    """The rows of one tiny JSON-lines data set written earlier in the build."""
    return [json.loads(line) for line in (folder / name / f"{split}.jsonl").read_text().splitlines()]


def _save(model, tokenizer, out: Path) -> None:
    """Save a stage as the tiny LM is saved: transformers' safetensors and config, with the tokenizer in the same folder."""
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def review_batch(tokenizer, texts: list[str], max_length: int = SFT_MAX_LENGTH) -> dict[str, torch.Tensor]:
    """Texts + end-of-text as a language-modelling batch, right-padded: input_ids, attention_mask, loss_mask (batch, seq).

    The loss mask is the attention mask: every token counts, as in pre-training; texts longer than ``max_length``
    tokens lose their end.
    """
    import torch

    rows = [(ids + [tokenizer.eos_token_id])[:max_length] for ids in tokenizer(list(texts))["input_ids"]]
    width = max(len(ids) for ids in rows)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows])
    return {"input_ids": input_ids, "attention_mask": mask, "loss_mask": mask.clone()}


def join_batches(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Two right-padded batches with the same keys as one: rows of ``first`` then of ``second``, padded to one width."""
    import torch
    import torch.nn.functional as F

    width = max(first["input_ids"].shape[1], second["input_ids"].shape[1])
    return {key: torch.cat([F.pad(part[key], (0, width - part[key].shape[1]), value=pad_token_id if key == "input_ids" else 0)
                            for part in (first, second)]) for key in first}


def supervised_fine_tune(model, tokenizer, rows: list[dict], texts: list[str], steps: int = SFT_STEPS,
                         batch_size: int = SFT_BATCH_SIZE, reviews: int = SFT_REVIEWS, learning_rate: float = SFT_LEARNING_RATE,
                         max_length: int = SFT_MAX_LENGTH, seed: int = SEED) -> list[float]:
    """Teacher-forced SFT on question answering, loss on the answer tokens (Ouyang et al., 2022, step 1); the losses.

    Each step draws ``batch_size`` question rows (:func:`rl4lm.lm.sft.qa_batch`) and ``reviews`` of the ``texts``
    (:func:`review_batch`, loss on every token: the pre-training data mixed in, so the model keeps writing whole
    reviews), seeded, and takes one AdamW step of :func:`rl4lm.lm.sft.sft_step` (the per-sequence loss averaged over
    all rows); the learning rate follows a one-cycle schedule. The model is trained in place and left in eval mode.
    """
    import torch

    from ..lm.sft import qa_batch, sft_step

    if steps < 1 or batch_size < 1 or reviews < 0:
        raise ValueError(f"steps and batch_size should be at least 1 and reviews at least 0, got steps = {steps}, "
                         f"batch_size = {batch_size} and reviews = {reviews}.")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    losses = []
    model.train()
    for _ in range(steps):
        batch = qa_batch(tokenizer, rng.sample(rows, batch_size), max_length)
        if reviews:
            batch = join_batches(batch, review_batch(tokenizer, rng.sample(texts, reviews), max_length), tokenizer.pad_token_id)
        losses.append(sft_step(model, optimizer, batch))
        schedule.step()
    model.eval()
    return losses


@dataclass(frozen=True)
class Evaluation:
    """The held-out data every stage is measured on: qa rows, preference triples and review prompts."""

    questions: list[dict]  # qa test rows: greedy answers, exact match
    pairs: list[tuple[str, str, str]]  # preference test triples (prompt, chosen, rejected)
    prompts: list[str]  # the first words of test reviews, continued by seeded sampling and scored


def evaluation_set(folder: Path) -> Evaluation:
    """The first :data:`EVAL_QUESTIONS` qa, :data:`EVAL_PAIRS` preference and :data:`EVAL_PROMPTS` review rows of the test splits."""
    from ..rlhf.lm_policy_gradient import review_prompts

    folder = Path(folder)
    return Evaluation(questions=_rows(folder, "qa", "test")[:EVAL_QUESTIONS], pairs=_triples(folder, "test")[:EVAL_PAIRS],
                      prompts=review_prompts([row["text"] for row in _rows(folder, "reviews", "test")[:EVAL_PROMPTS]], PROMPT_WORDS))


def _triples(folder: Path, split: str) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) of the tiny preference rows of a split."""
    return [(row["prompt"], row["chosen"], row["rejected"]) for row in _rows(folder, "preferences", split)]


def stage_metrics(model, tokenizer, evaluation: Evaluation, reward_fn: Callable, max_new_tokens: int | None = None,
                  seed: int = SEED) -> dict[str, float]:
    """What a lab compares across the stages, on fixed held-out data: answers, preferences, sentiment of samples.

    ``exact_match``: greedy answers to the questions (:func:`rl4lm.lm.sft.answer_accuracy`); ``preference_accuracy``:
    fraction of held-out (x, y_w, y_l) with log pi(y_w | x) > log pi(y_l | x) (the model's own preference, no
    reference needed); ``reward``: mean ``reward_fn`` of the prompts continued by seeded sampling at temperature 1,
    ``max_new_tokens`` at most (default: the RL stage's, :data:`rl4lm.rlhf.ppo_lm.PIPELINE_PPO`).
    """
    from ..lm.sft import answer_accuracy
    from ..rlhf.dpo import reference_logps, tokenize_triples
    from ..rlhf.lm_policy_gradient import sample_and_score
    from ..rlhf.ppo_lm import PIPELINE_PPO

    exact_match, _ = answer_accuracy(model, tokenizer, evaluation.questions, max_new_tokens=4, max_length=SFT_MAX_LENGTH)
    chosen, rejected = reference_logps(model, tokenize_triples(tokenizer, evaluation.pairs), tokenizer.pad_token_id,
                                       max_length=SFT_MAX_LENGTH)  # (pairs,) each: log pi(y | x) summed over the response
    new_tokens = PIPELINE_PPO.max_new_tokens if max_new_tokens is None else max_new_tokens
    _, rewards = sample_and_score(model, tokenizer, reward_fn, evaluation.prompts, new_tokens, seed)
    return {"exact_match": exact_match, "preference_accuracy": (chosen > rejected).float().mean().item(),
            "reward": sum(rewards) / len(rewards)}


def sentiment_scorer(classifier, tokenizer) -> Callable[[list[str]], object]:
    """r(x) = P(positive | x) of each text under the tiny classifier, the reward of the RL stage (and of the PPO lab)."""
    from ..rlhf.rewards import sentiment_reward

    def positive(texts: list[str]):
        return sentiment_reward(classifier, tokenizer, texts, max_length=CLASSIFIER_TOKENS)

    return positive


def build_pipeline(folder: Path, tokenizer, say: Callable[[str], None] | None = None) -> dict:
    """Train and save SFT -> DPO -> PPO-RLHF from the LM in ``folder / "lm"``, each stage in its own folder; return facts.

    ``folder`` holds the tiny build so far (the ``lm``, ``sentiment_classifier``, ``qa``, ``preferences`` and
    ``reviews`` folders); ``tokenizer`` is the build's. Every stage, the base too, is measured with
    :func:`stage_metrics` on :func:`evaluation_set`; a stage's ``seconds`` count its training and saving. The caller
    fixes the torch threads (:func:`rl4lm.assets.tiny.build_settings`): float sums depend on them.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from ..rlhf.dpo import PIPELINE_DPO, train_dpo
    from ..rlhf.lm_policy_gradient import review_prompts
    from ..rlhf.ppo_lm import PIPELINE_PPO, train_ppo_lm

    folder = Path(folder)
    say = say or (lambda text: None)
    start = time.perf_counter()
    policy = AutoModelForCausalLM.from_pretrained(folder / "lm").eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(folder / "sentiment_classifier").eval()
    reward_fn = sentiment_scorer(classifier, tokenizer)
    evaluation = evaluation_set(folder)
    reviews = [row["text"] for row in _rows(folder, "reviews", "train")]
    facts = {"pipeline_base": stage_metrics(policy, tokenizer, evaluation, reward_fn)}

    say("SFT, ")
    clock = time.perf_counter()
    losses = supervised_fine_tune(policy, tokenizer, _rows(folder, "qa", "train"), reviews)
    _save(policy, tokenizer, folder / "pipeline_sft")
    facts["pipeline_sft"] = {"seconds": round(time.perf_counter() - clock, 1), "loss_first": losses[0],
                             "loss_last": sum(losses[-20:]) / 20, **stage_metrics(policy, tokenizer, evaluation, reward_fn)}
    say("DPO, ")
    clock = time.perf_counter()
    dpo = train_dpo(policy, tokenizer, _triples(folder, "train"), PIPELINE_DPO, eval_triples=evaluation.pairs)  # reference: SFT
    _save(policy, tokenizer, folder / "pipeline_dpo")
    facts["pipeline_dpo"] = {"seconds": round(time.perf_counter() - clock, 1), "steps": dpo["steps"],
                             "implicit_reward_accuracy": dpo["eval"]["eval_accuracy"][-1],
                             "implicit_reward_margin": dpo["eval"]["eval_margin"][-1],
                             **stage_metrics(policy, tokenizer, evaluation, reward_fn)}
    say("PPO")
    clock = time.perf_counter()
    prompts = review_prompts(reviews[:RL_PROMPTS], PROMPT_WORDS)
    ppo = train_ppo_lm(policy, tokenizer, reward_fn, prompts, PIPELINE_PPO, eval_prompts=evaluation.prompts)  # reference: DPO
    _save(policy, tokenizer, folder / "pipeline_rl")
    facts["pipeline_rl"] = {"seconds": round(time.perf_counter() - clock, 1), "steps": PIPELINE_PPO.steps,
                            "kl_to_dpo": ppo["kl_after"], **stage_metrics(policy, tokenizer, evaluation, reward_fn)}
    facts["seconds"] = round(time.perf_counter() - start, 1)
    return facts
