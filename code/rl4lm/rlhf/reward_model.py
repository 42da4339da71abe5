"""Reward models from human preferences (Session 4): the Bradley-Terry and Plackett-Luce losses, an LM with a scalar head,
its training on (chosen, rejected) pairs and its preference accuracy.

A reward model r_phi(x, y) reads a prompt x and a response y and returns one number. It is trained on comparisons:
people saw two responses to the same prompt and chose one. The losses below are minus the log-likelihood of those
choices, so only reward *differences* are learned. The model is the profile's language model with its next-token head
replaced by a linear map to one number, read at the last token of the text (Ziegler et al., 2019; Ouyang et al., 2022),
i.e. ``AutoModelForSequenceClassification`` with ``num_labels=1``, which is also what TRL's ``RewardTrainer`` trains.
"""
from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .conversations import conversation_text as _conversation_text
from .conversations import render_messages as _render

__all__ = ["bradley_terry_loss", "plackett_luce_loss", "load_reward_model", "preference_pairs", "reward_scores",
           "pair_rewards", "preference_accuracy", "train_reward_model", "reward_model_scorer"]


def _check_rewards(**tensors: torch.Tensor) -> None:
    """One sentence naming the argument that is empty, not floating point, or shaped unlike the first one."""
    (first_name, first), *rest = tensors.items()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise ValueError(f"{name} should be a floating-point tensor of rewards, got {type(tensor).__name__}"
                             f"{'' if not isinstance(tensor, torch.Tensor) else ' of dtype ' + str(tensor.dtype)}.")
    if first.numel() == 0:
        raise ValueError(f"{first_name} is empty: a reward-model loss needs at least one comparison.")
    for name, tensor in rest:
        if tuple(tensor.shape) != tuple(first.shape):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but {first_name} has shape {tuple(first.shape)}; "
                             "each chosen reward needs the rejected reward of the same pair.")


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L = -mean log sigma(r_w - r_l), minus the log-likelihood of pairwise choices (Bradley & Terry, 1952).

    r_chosen, r_rejected: (batch,) rewards r(x, y_w) of the preferred and r(x, y_l) of the rejected response of the
    same pairs. Under the Bradley-Terry model P(y_w > y_l | x) = sigma(r_w - r_l), so the loss is the mean negative
    log-probability of the observed choices; it is log 2 when the two rewards are equal and computed with
    ``logsigmoid``, which stays finite for any margin. Returns ``(loss, metrics)``: the scalar loss, and
    ``accuracy`` (fraction of pairs with r_w > r_l strictly; ties count as errors, as in TRL) and ``margin``
    (mean r_w - r_l) as floats.
    """
    _check_rewards(r_chosen=r_chosen, r_rejected=r_rejected)
    margins = r_chosen - r_rejected  # (batch,)
    loss = -F.logsigmoid(margins).mean()
    with torch.no_grad():
        metrics = {"accuracy": (margins > 0).float().mean().item(), "margin": margins.mean().item()}
    return loss, metrics


def plackett_luce_loss(scores: torch.Tensor) -> torch.Tensor:
    """L = -mean_b sum_j [s_j - log sum_{m >= j} exp s_m], minus the log-likelihood of rankings (Plackett, 1975; Luce, 1959).

    scores: (batch, k) rewards of k responses to the same prompt, *in ranked order* (column 0 is the best). The
    Plackett-Luce model picks the best response with probability softmax(s)_0, then the best of the rest, and so on;
    the last factor is 1. With k = 2 the loss equals :func:`bradley_terry_loss` on (scores[:, 0], scores[:, 1]).
    Returns a scalar (the mean over the batch of each ranking's negative log-likelihood).
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or scores.dim() != 2:
        raise ValueError(f"scores should be a floating-point tensor of shape (batch, k), got "
                         f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}.")
    if scores.shape[0] == 0 or scores.shape[1] < 2:
        raise ValueError(f"scores has shape {tuple(scores.shape)}: a ranking needs at least one row and k >= 2 responses.")
    rest = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)  # (batch, k): log sum_{m >= j} exp s_m
    return -(scores - rest).sum(dim=-1).mean()


def load_reward_model(name: str = "lm", seed: int = 0, **kwargs):
    """r_phi(x, y): the profile's LM with a scalar head read at the last non-padding token (Ziegler et al., 2019).

    Loads the weights of the model role ``name`` with ``AutoModelForSequenceClassification`` and ``num_labels=1``
    (GPT-2 becomes ``GPT2ForSequenceClassification``); the new linear head is initialised from ``seed``. The
    padding token of the role's tokenizer is written into the config, so that the head finds the last real token.
    Returns the model in train mode.
    """
    from .. import profiles
    from ..assets import roles

    tokenizer = profiles.load_tokenizer(name)
    torch.manual_seed(seed)
    model = profiles.load_model(name, head=roles.SEQUENCE_CLASSIFIER, num_labels=1, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.train()


def preference_pairs(rows, tokenizer=None) -> list[tuple[str, str]]:
    """(x + y_w, x + y_l) text pairs from preference rows, in either profile's schema (Ouyang et al., 2022, sec. 3.5).

    ``rows``: a ``datasets.Dataset`` or a list of dicts with ``chosen`` and ``rejected``, and optionally ``prompt``.
    Tiny profile: strings, ``prompt`` + ``chosen``. Full profile (the ``preferences`` role's hub data): ``chosen`` and
    ``rejected`` are whole conversations (lists of ``{"role", "content"}`` messages, the user's turn included); they
    are written with the tokenizer's chat template if it has one, else as 'User: ...' and 'Assistant: ...' blocks.
    """
    pairs = []
    for i, row in enumerate(rows):
        if "chosen" not in row or "rejected" not in row:
            raise ValueError(f"rows[{i}] has fields {sorted(row)}; a preference row needs 'chosen' and 'rejected'.")
        prompt = _render(row.get("prompt"))
        chosen = _conversation_text(prompt + _render(row["chosen"]), tokenizer)
        rejected = _conversation_text(prompt + _render(row["rejected"]), tokenizer)
        pairs.append((chosen, rejected))
    return pairs


@contextlib.contextmanager
def _truncate_left(tokenizer):
    """Cut over-long texts at the start, so that the end of the response, where the reward is read, is kept."""
    side, tokenizer.truncation_side = tokenizer.truncation_side, "left"
    try:
        yield tokenizer
    finally:
        tokenizer.truncation_side = side


def reward_scores(model, tokenizer, texts: list[str], max_length: int = 512) -> torch.Tensor:
    """r_phi(x, y) of each text, the scalar head at the last non-padding token; (n,), differentiable.

    Texts are right-padded (as TRL's collator) and cut from the left to ``max_length`` tokens, or to the model's
    number of positions if that is smaller (the tiny GPT-2 has 256), so that a long text cannot index past them.
    """
    if not texts:
        raise ValueError("texts is empty: there is nothing to score.")
    positions = getattr(model.config, "max_position_embeddings", None)
    max_length = min(max_length, positions) if positions else max_length
    device = next(model.parameters()).device
    with _truncate_left(tokenizer):
        enc = tokenizer(list(texts), return_tensors="pt", padding=True, padding_side="right", truncation=True,
                        max_length=max_length).to(device)
    return model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[:, 0].float()  # (n,)


@torch.no_grad()
def pair_rewards(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 64,
                 max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(r(x, y_w), r(x, y_l)) for every pair, each (n,) on the CPU, in eval mode (the model's mode is restored)."""
    if not pairs:
        raise ValueError("pairs is empty: there is nothing to score.")
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            scores = reward_scores(model, tokenizer, [w for w, _ in chunk] + [lo for _, lo in chunk], max_length)
            chosen.append(scores[:len(chunk)].cpu())
            rejected.append(scores[len(chunk):].cpu())
    finally:
        model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected)


def preference_accuracy(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 64, max_length: int = 512) -> float:
    """Fraction of pairs with r(x, y_w) > r(x, y_l), the agreement of a reward model with held-out choices (Stiennon et al., 2020)."""
    r_chosen, r_rejected = pair_rewards(model, tokenizer, pairs, batch_size, max_length)
    return (r_chosen > r_rejected).float().mean().item()


def train_reward_model(model, tokenizer, pairs: list[tuple[str, str]], epochs: int = 1, batch_size: int = 32,
                       lr: float = 1e-3, seed: int = 0, max_length: int = 512, eval_pairs: list[tuple[str, str]] | None = None,
                       eval_every: int = 0, progress: bool = False) -> dict:
    """Fit r_phi to pairs by minimising the Bradley-Terry loss with AdamW (Ouyang et al., 2022, eq. 1, with K = 2).

    Each step scores a batch of chosen and rejected texts in one forward pass (chosen first, as TRL's collator) and
    takes one gradient step on :func:`bradley_terry_loss`. Pairs are shuffled once per epoch by ``seed``.
    Returns a history: per step ``loss``, ``accuracy`` and ``margin`` of the training batch; ``eval_step`` and
    ``eval_accuracy`` every ``eval_every`` steps (and after the last one) when ``eval_pairs`` are given; ``seconds``.
    """
    if not pairs:
        raise ValueError("pairs is empty: a reward model needs at least one (chosen, rejected) pair to learn from.")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got epochs = {epochs} and batch_size = {batch_size}.")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    history = {"loss": [], "accuracy": [], "margin": [], "eval_step": [], "eval_accuracy": []}
    n_steps = epochs * -(-len(pairs) // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc="reward model")
    start, step = time.perf_counter(), 0
    model.train()
    for _ in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for begin in range(0, len(order), batch_size):
            chunk = [pairs[i] for i in order[begin:begin + batch_size]]
            scores = reward_scores(model, tokenizer, [w for w, _ in chunk] + [lo for _, lo in chunk], max_length)  # (2b,)
            loss, metrics = bradley_terry_loss(scores[:len(chunk)], scores[len(chunk):])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            history["loss"].append(loss.item())
            history["accuracy"].append(metrics["accuracy"])
            history["margin"].append(metrics["margin"])
            if eval_pairs and ((eval_every and step % eval_every == 0) or step == n_steps):
                history["eval_step"].append(step)
                history["eval_accuracy"].append(preference_accuracy(model, tokenizer, eval_pairs, max_length=max_length))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", accuracy=f"{metrics['accuracy']:.2f}")
    if bar is not None:
        bar.close()
    model.eval()
    history["seconds"] = time.perf_counter() - start
    return history


def reward_model_scorer(reward_model, reward_tokenizer, policy_tokenizer=None, max_length: int = 512) -> Callable[[list[str]], torch.Tensor]:
    """reward_fn(texts) = r_phi(x, y) of a trained reward model, for :func:`rl4lm.rlhf.ppo_lm.train_ppo_lm` (Ouyang et al., 2022, sec. 3.5).

    Texts, not token ids, cross from the policy to the reward model: each model tokenizes with its own tokenizer,
    so a reward model and a policy with different vocabularies (e.g. a DistilBERT judge and a GPT-2 policy) work
    together, and ids of one vocabulary are never read as the other's. ``reward_tokenizer`` must be the reward
    model's own tokenizer: one sentence says so when its vocabulary does not fit the reward model's embedding
    matrix (typically the policy's tokenizer passed by mistake; pass it as ``policy_tokenizer`` to have that
    named). Returns a function texts -> (n,) float32 scores (no gradient) via
    :func:`reward_scores`.
    """
    rows = reward_model.get_input_embeddings().num_embeddings
    if len(reward_tokenizer) > rows:
        same = policy_tokenizer is not None and (reward_tokenizer is policy_tokenizer or reward_tokenizer.get_vocab() == policy_tokenizer.get_vocab())
        hint = "it is the policy's tokenizer; pass the reward model's own" if same else "pass the tokenizer the reward model was trained with"
        raise ValueError(f"reward_tokenizer has {len(reward_tokenizer)} tokens but the reward model embeds only {rows}: "
                         f"{hint} (texts, not token ids, cross between the two models).")

    @torch.no_grad()
    def score(texts: list[str]) -> torch.Tensor:
        return reward_scores(reward_model, reward_tokenizer, list(texts), max_length=max_length).float()

    return score
