"""Verifiable rewards: a program, not a model, decides whether a completion is right (RL from verifiable rewards).

DeepSeekMath and DeepSeek-R1 trained with GRPO on rewards that a rule computes: is the final answer correct, does
the output follow the required format (Shao et al., 2024; DeepSeek-AI, 2025). A rule cannot be flattered the way a
learned reward model can, and its reward is exactly 0 or 1, so a group's spread says only how often the policy
already succeeds. The course's task is a format rule on the continuation of a movie review (:func:`sentence_count_task`):
write exactly ``k`` more sentences. The base LM follows it some of the time, so groups of samples have spread from the
first step.

Measured in the tiny profile (the 0.3M GPT-2 on synthetic reviews; prompts are the first sentence of a review, up to
48 new tokens; 99.8 % of samples end with their end-of-text token), on 512 train prompts, one sample each at temperature 1
(seed 0), and greedy on 128 held-out prompts:

==========================================  ========  ======
rule (continuation of the first sentence)    sampled   greedy
==========================================  ========  ======
exactly 1 more sentence                      0.01      0.00
exactly 2 more sentences (the default)       0.37      0.00
exactly 3 more sentences                     0.40      0.00
exactly 4 more sentences                     0.19      1.00
==========================================  ========  ======

(see :data:`TINY_BASE_RATES`). k = 2 has the spread GRPO needs (a group of 8 is all 0 with probability about
0.63^8 = 2.5 %) and a greedy policy that always writes four more sentences; with the defaults of
:class:`rl4lm.rlhf.grpo.GRPOConfig` the held-out greedy accuracy goes from 0 to 1 within ten steps. k = 1 has almost
no spread and greedy decoding already follows k = 4; k = 3 would do as well as 2. The full profile (GPT-2 small on IMDB)
uses k = 2 within 48 new tokens, counted wherever the sample stops; its rates are not measured here (an estimate:
GPT-2 writes one to three sentences in 48 tokens of IMDB text, and rarely stops on its own).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["VerifiableTask", "sentence_ends", "first_sentence", "sentence_count_task", "default_task", "TINY_BASE_RATES"]

SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")  # a run of ., ! or ? followed by a space or the end of the text
TINY_BASE_RATES = {1: (0.01, 0.00), 2: (0.37, 0.00), 3: (0.40, 0.00), 4: (0.19, 1.00)}  # k: (sampled, greedy), tiny profile
PROFILE_SETTINGS = {  # per profile: sentences asked for, and the longest prompt in words
    "tiny": dict(sentences=2, prompt_words=16),
    "full": dict(sentences=2, prompt_words=24),
}


@dataclass
class VerifiableTask:
    """A task whose reward a program computes: r(prompt, completion) in {0, 1}, 1 when ``check`` accepts the completion.

    name: short identifier; rule: one line that states what earns reward 1; train_prompts, eval_prompts: the prompts
    that training samples from and the held-out prompts that greedy accuracy is measured on. ``check(prompt,
    completion) -> bool`` sees the completion without its prompt and without the end-of-text token.
    """

    name: str
    rule: str
    train_prompts: list[str]
    eval_prompts: list[str]
    check: Callable[[str, str], bool] = field(repr=False)

    def reward(self, prompt: str, completion: str) -> float:
        """r(x, y) = 1 if the completion y of prompt x follows the rule, else 0 (a verifiable reward)."""
        return float(bool(self.check(prompt, completion)))

    def rewards(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """r(x_i, y_i) for each pair, as a float32 tensor (N,) on the CPU."""
        if len(prompts) != len(completions):
            raise ValueError(f"prompts has {len(prompts)} texts but completions has {len(completions)}; give one completion per prompt.")
        return torch.tensor([self.reward(p, c) for p, c in zip(prompts, completions)], dtype=torch.float32)

    def accuracy(self, prompts: list[str], completions: list[str]) -> float:
        """Fraction of completions that follow the rule."""
        return self.rewards(prompts, completions).mean().item() if prompts else float("nan")


def sentence_ends(text: str) -> int:
    """Number of sentence ends in a text: runs of '.', '!' or '?' followed by a space or the end ("..." counts once)."""
    return len(SENTENCE_END.findall(text))


def first_sentence(text: str, max_words: int) -> str:
    """The text up to and including its first sentence end, cut to at most ``max_words`` words: a review's opening as a prompt."""
    if max_words < 1:
        raise ValueError(f"max_words should be at least 1, got {max_words}.")
    match = SENTENCE_END.search(text)
    head = text[: match.end()] if match else text
    return " ".join(head.split()[:max_words])


def sentence_count_task(train_texts: list[str], eval_texts: list[str], sentences: int = 2, prompt_words: int = 16) -> VerifiableTask:
    """Continue a review's first sentence in exactly ``sentences`` more sentences: reward 1 iff sentence_ends(y) == k.

    Prompts are the first sentence of each text (:func:`first_sentence`), duplicates removed in order. The rule counts
    sentence ends in the completion wherever it stopped (end-of-text or the token limit): in the tiny profile nearly
    every sample ends with its end-of-text token well within 48 tokens, so the count is that of the whole review's
    remaining sentences.
    """
    if not isinstance(sentences, int) or sentences < 1:
        raise ValueError(f"sentences should be a whole number of at least 1, got {sentences!r}.")
    train = list(dict.fromkeys(first_sentence(t, prompt_words) for t in train_texts))
    held_out = list(dict.fromkeys(first_sentence(t, prompt_words) for t in eval_texts))
    if not train or not held_out:
        raise ValueError("train_texts and eval_texts should each hold at least one text to take prompts from.")
    word = "sentence" if sentences == 1 else "sentences"
    return VerifiableTask(name=f"{sentences}_more_sentences",
                          rule=f"continue the review in exactly {sentences} more {word} (each ending with '.', '!' or '?')",
                          train_prompts=train, eval_prompts=held_out,
                          check=lambda prompt, completion: sentence_ends(completion) == sentences)


def default_task(eval_prompts: int = 128, train_texts: int = 4000, sentences: int | None = None) -> VerifiableTask:
    """The course's GRPO task in the active profile: :func:`sentence_count_task` on the profile's reviews.

    Train prompts come from the first ``train_texts`` train reviews, held-out prompts from the test reviews (the first
    ``eval_prompts`` distinct openings). Tiny profile: k = 2, about a third of samples succeed before training and no
    greedy completion does (:data:`TINY_BASE_RATES`). Full profile (IMDB, GPT-2 small): k = 2, rates not measured.
    """
    from .. import profiles

    settings = PROFILE_SETTINGS[profiles.current_profile()]
    k = settings["sentences"] if sentences is None else sentences
    reviews = profiles.load_dataset("reviews")
    train = reviews["train"].shuffle(seed=0).select(range(min(train_texts, reviews["train"].num_rows)))["text"]  # IMDB is sorted by label
    test = reviews["test"].shuffle(seed=0).select(range(min(8 * eval_prompts, reviews["test"].num_rows)))["text"]
    task = sentence_count_task(train, test, k, settings["prompt_words"])
    task.eval_prompts = task.eval_prompts[:eval_prompts]
    return task
