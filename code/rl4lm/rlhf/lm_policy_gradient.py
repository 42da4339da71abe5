"""Policy gradients on a language model: REINFORCE on whole responses with a KL penalty to a reference model.

An episode is a prompt x, a sampled response y ~ pi(. | x) and one terminal reward r(x, y) (Session 3). The policy's
log-probability of the response is a sum over its tokens (:func:`rl4lm.lm.logprobs.sequence_logprob`), and
REINFORCE pushes it up in proportion to the reward minus a baseline (Williams, 1992). Subtracting beta times the
per-sample KL estimate log pi(y | x) - log pi_ref(y | x) from the reward keeps the policy near its starting point
(Ziegler et al., 2019; Ouyang et al., 2022). Rollouts come from the KV-cached sampler :mod:`rl4lm.lm.rollout`.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from ..lm.logprobs import per_token_logprobs, sequence_logprob
from ..lm.rollout import Rollout, sample_rollout
from ..rl.policy_gradient import reinforce_loss
from .progress import progress_bar

HISTORY_KEYS = ("step", "reward_mean", "kl_to_ref", "return_mean", "loss", "response_length", "grad_norm", "seconds")


def review_prompts(texts: list[str], words: int = 3) -> list[str]:
    """The first ``words`` words of each text: prompts that a policy continues into a whole review."""
    if words < 1:
        raise ValueError(f"words should be at least 1, got {words}.")
    return [" ".join(text.split()[:words]) for text in texts]


def response_logprobs(model, rollout: Rollout) -> torch.Tensor:
    """log P(y_t | x, y_<t) of every response position of a rollout under ``model``, 0 off the response; (batch, new).

    Recomputed with one forward pass over prompt and response (gradient flows unless called under no_grad), aligned
    with ``rollout.logprobs`` and ``rollout.response_mask[:, rollout.prompt_len:]``.
    """
    token_lp = per_token_logprobs(model, rollout.input_ids, rollout.attention_mask)  # (batch, seq - 1); [:, t] scores t + 1
    response = rollout.response_mask[:, rollout.prompt_len:].bool()  # (batch, new)
    return torch.where(response, token_lp[:, rollout.prompt_len - 1:], 0.0)


def kl_to_reference(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)] over response tokens, per sample (batch,) (Ziegler et al., 2019).

    The k1 estimate of KL(pi || pi_ref) from one response sampled from pi, the penalty of Ouyang et al. (2022, eq. 2).
    All three tensors share one shape, e.g. (batch, new) as ``rollout.logprobs`` with ``rollout.response_mask[:, prompt_len:]``.
    """
    for name, tensor in (("ref_logprobs", ref_logprobs), ("response_mask", response_mask)):
        if tuple(tensor.shape) != tuple(logprobs.shape):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but logprobs has shape {tuple(logprobs.shape)}; "
                             "they must be aligned token by token.")
    return torch.where(response_mask.bool(), logprobs - ref_logprobs, 0.0).sum(dim=-1)


def reinforce_step(policy, optimizer: torch.optim.Optimizer, rollout: Rollout, rewards: torch.Tensor, baseline,
                   sequence_logprob_fn: Callable = sequence_logprob, max_grad_norm: float | None = 1.0) -> dict:
    """One REINFORCE update, -mean_i log pi(y_i | x_i) (R_i - b) on a rollout's responses (Williams, 1992); returns metrics.

    rewards: (batch,) returns of the responses (a KL penalty already subtracted, if any); baseline: scalar or (batch,).
    log pi(y_i | x_i) is recomputed with gradient by ``sequence_logprob_fn(policy, input_ids, attention_mask,
    response_mask)``. Gradients are clipped to ``max_grad_norm`` (None: no clipping) before the optimizer step.
    """
    logp = sequence_logprob_fn(policy, rollout.input_ids, rollout.attention_mask, rollout.response_mask)  # (batch,)
    loss = reinforce_loss(logp, torch.as_tensor(rewards, dtype=logp.dtype, device=logp.device), baseline)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if max_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])) if params else torch.tensor(0.0)
    optimizer.step()
    return {"loss": loss.item(), "logprob_mean": logp.mean().item(), "grad_norm": float(grad_norm)}


def _rewards(reward_fn, texts: list[str], device) -> torch.Tensor:
    """reward_fn(texts) as a float32 tensor (batch,) on ``device``, after checking its shape."""
    rewards = torch.as_tensor(reward_fn(texts), dtype=torch.float32).to(device)
    if tuple(rewards.shape) != (len(texts),):
        raise ValueError(f"reward_fn returned shape {tuple(rewards.shape)} for {len(texts)} texts; it should return one reward per text.")
    return rewards


@torch.no_grad()
def sample_and_score(policy, tokenizer, reward_fn, prompts: list[str], max_new_tokens: int, seed: int) -> tuple[list[str], list[float]]:
    """Prompts continued by the policy (seeded sampling, temperature 1) and their rewards: the samples shown before and after training."""
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    texts = sample_rollout(policy, tokenizer, prompts, max_new_tokens, generator=generator).full_texts(tokenizer)
    return texts, _rewards(reward_fn, texts, device).tolist()


def _check_training_arguments(prompts, steps: int, batch_size: int, kl_coef: float, baseline: str) -> None:
    """One sentence naming the first argument train_reinforce cannot use (the sampler checks the rest)."""
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("prompts should be a non-empty list of strings.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps should be a whole number of at least 1, got {steps!r}.")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size should be a whole number of at least 2 (the baseline averages over the batch), got {batch_size!r}.")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be non-negative, got {kl_coef}.")
    if baseline not in ("batch", "running"):
        raise ValueError(f"baseline should be 'batch' or 'running', got {baseline!r}.")


def train_reinforce(policy, reference, tokenizer, reward_fn: Callable[[list[str]], torch.Tensor], prompts: list[str], steps: int,
                    batch_size: int, max_new_tokens: int, lr: float, kl_coef: float, seed: int,
                    sequence_logprob_fn: Callable = sequence_logprob, progress: bool = False, baseline: str = "batch",
                    eval_prompts: list[str] | None = None) -> dict:
    """REINFORCE on a language model with return R = r(x, y) - beta [log pi(y|x) - log pi_ref(y|x)] (Ziegler et al., 2019).

    Each step samples ``batch_size`` prompts (with replacement, seeded), continues them with the KV-cached sampler at
    temperature 1, scores ``reward_fn(texts)`` where each text is the prompt followed by its response, subtracts
    ``kl_coef`` times the per-sample KL estimate to ``reference`` (a frozen copy of the starting policy if None), and
    takes one :func:`reinforce_step` with Adam. baseline: 'batch' (the batch's mean return: leave-one-out's baseline up
    to the factor N/(N-1); Kool et al., 2019) or 'running' (an exponential mean of past batches, decay 0.9). The policy
    is trained in place in eval mode (no dropout), so the sampler's and the update's log-probabilities agree.

    Returns {'history': {key: list per step} for the keys of :data:`HISTORY_KEYS` ('seconds' counts wall time since
    the first step), 'prompts', 'samples_before', 'rewards_before', 'samples_after', 'rewards_after' (the same
    ``eval_prompts``, default the first 16 prompts, sampled with the same seed before and after), 'seconds'}.
    """
    _check_training_arguments(prompts, steps, batch_size, kl_coef, baseline)
    device = next(policy.parameters()).device
    torch.manual_seed(seed)
    if reference is policy:
        raise ValueError("reference is the policy itself, so the KL to it stays 0; pass a frozen copy (copy.deepcopy(policy)) or None.")
    reference = (copy.deepcopy(policy) if reference is None else reference).eval()  # only ever run under no_grad
    policy.eval()
    eval_prompts = list(prompts[:16]) if eval_prompts is None else list(eval_prompts)
    samples_before, rewards_before = sample_and_score(policy, tokenizer, reward_fn, eval_prompts, max_new_tokens, seed + 1)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    pick = torch.Generator().manual_seed(seed)
    sampler = torch.Generator(device=device).manual_seed(seed)
    history = {key: [] for key in HISTORY_KEYS}
    running = None
    bar = progress_bar(steps, progress, "REINFORCE")
    start = time.perf_counter()
    for step in range(steps):
        batch_prompts = [prompts[i] for i in torch.randint(len(prompts), (batch_size,), generator=pick).tolist()]
        rollout = sample_rollout(policy, tokenizer, batch_prompts, max_new_tokens, generator=sampler)
        rewards = _rewards(reward_fn, rollout.full_texts(tokenizer), device)  # (batch,)
        with torch.no_grad():
            ref_logprobs = response_logprobs(reference, rollout)  # (batch, new)
        kl = kl_to_reference(rollout.logprobs, ref_logprobs, rollout.response_mask[:, rollout.prompt_len:])  # (batch,)
        returns = rewards - kl_coef * kl
        if baseline == "running":
            running = returns.mean() if running is None else running
            b = running
        else:
            b = returns.mean()
        metrics = reinforce_step(policy, optimizer, rollout, returns, b, sequence_logprob_fn)
        if baseline == "running":
            running = 0.9 * running + 0.1 * returns.mean()
        row = {"step": step, "reward_mean": rewards.mean().item(), "kl_to_ref": kl.mean().item(), "return_mean": returns.mean().item(),
               "loss": metrics["loss"], "response_length": rollout.response_lengths().float().mean().item(),
               "grad_norm": metrics["grad_norm"], "seconds": time.perf_counter() - start}
        for key in HISTORY_KEYS:
            history[key].append(row[key])
        if bar is not None:
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", kl=f"{row['kl_to_ref']:.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    samples_after, rewards_after = sample_and_score(policy, tokenizer, reward_fn, eval_prompts, max_new_tokens, seed + 1)
    return {"history": history, "prompts": eval_prompts, "samples_before": samples_before, "rewards_before": rewards_before,
            "samples_after": samples_after, "rewards_after": rewards_after, "seconds": seconds}
