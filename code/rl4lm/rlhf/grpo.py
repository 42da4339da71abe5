"""Group relative policy optimisation: sample a group of responses per prompt, use the group-normalised reward as the
advantage of every token, and no value network (Shao et al., 2024).

Rewards of a batch are laid out as consecutive groups: ``rewards[g * G:(g + 1) * G]`` are the G responses to prompt g.
The loss keeps PPO's clipped ratio per token and moves the KL to the reference from the reward into the loss, with
the k3 estimator per token (Schulman, 2020), averaged over each response's tokens, then over responses.
:func:`train_grpo` runs it on a task whose reward a program computes (:mod:`rl4lm.rlhf.verifiable`), as DeepSeekMath
and DeepSeek-R1 did. The advantages and the loss equal those of TRL's GRPOTrainer (``loss_type="grpo"``,
``use_bias_correction_kl=False``) on identical tensors (tests/test_grpo.py).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..lm.logprobs import positions_from_mask
from ..lm.rollout import Rollout, greedy_rollout, sample_rollout
from ..rl.policy_gradient import _require_same_shape
from .lm_policy_gradient import response_logprobs
from .ppo_lm import masked_mean
from .progress import progress_bar

__all__ = ["grpo_advantages", "k3_token_kl", "grpo_loss", "GRPOConfig", "sampled_token_logprobs", "greedy_accuracy", "grpo_step",
           "train_grpo"]


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """A_i = (r_i - mean(group)) / (std(group) + eps), std unbiased as ``torch.std`` (Shao et al., 2024, sec. 4.1.2).

    rewards: (N,), N a multiple of ``group_size``, consecutive groups of the completions of one prompt; eps = 1e-4
    as TRL's GRPOTrainer. A group whose rewards are all equal gets advantage 0 for each completion. Returns (N,).
    """
    if not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size should be a whole number of at least 2 (a group needs a spread), got {group_size!r}.")
    if rewards.dim() != 1:
        raise ValueError(f"rewards should have shape (N,), one reward per completion; got {tuple(rewards.shape)}.")
    if rewards.numel() % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {rewards.numel()} rewards: each prompt needs a whole group.")
    if not rewards.is_floating_point():  # 0/1 rewards of a verifier may come as integers or booleans
        rewards = rewards.to(torch.get_default_dtype())
    groups = rewards.reshape(-1, group_size)  # (prompts, G)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)  # unbiased
    return ((groups - mean) / (std + eps)).flatten()


def k3_token_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) per token as pi_ref/pi - log(pi_ref/pi) - 1 >= 0, the k3 estimator (Schulman, 2020; Shao et al., 2024, eq. 4)."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04) -> torch.Tensor:
    """-mean_i 1/|o_i| sum_t [min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i) - beta KL_t] (Shao et al., 2024, eq. 3).

    logp: (N, T) per-token log-probabilities of the responses under the current policy (with gradient); old_logp,
    ref_logp: (N, T) under the sampling policy and the reference (constants); advantages: (N,) from
    :func:`grpo_advantages`; mask: (N, T), 1 on response tokens. The per-response mean over tokens is TRL's
    ``loss_type="grpo"``. Returns a scalar.
    """
    _require_same_shape(logp=logp, old_logp=old_logp, ref_logp=ref_logp, mask=mask)
    if tuple(advantages.shape) != (logp.shape[0],):
        raise ValueError(f"advantages should have shape (N,) = ({logp.shape[0]},), one per response; got {tuple(advantages.shape)}.")
    if clip_eps < 0 or beta < 0:
        raise ValueError(f"clip_eps and beta must be non-negative, got clip_eps = {clip_eps} and beta = {beta}.")
    m = mask.to(logp.dtype)
    if bool((m.sum(dim=1) == 0).any()):
        raise ValueError("mask selects no token in some row: every response needs at least one token.")
    ratio = torch.exp(logp - old_logp.detach())  # (N, T)
    a = advantages.detach().to(logp.device, logp.dtype).unsqueeze(1)  # (N, 1)
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * a)
    per_token = -(surrogate - beta * k3_token_kl(logp, ref_logp.detach()))  # (N, T)
    return ((per_token * m).sum(dim=1) / m.sum(dim=1)).mean()


# ---------------------------------------------------------------------------------------------------------------------
# The trainer: groups of samples per prompt, a verifiable reward, the clipped loss with a KL term (no value network).

HISTORY_KEYS = ("step", "reward_mean", "kl", "loss", "response_length", "frac_zero_std", "seconds")


@dataclass
class GRPOConfig:
    """Settings of :func:`train_grpo`; the defaults are the tiny profile's (the names follow TRL's GRPOConfig where one exists).

    Each step samples ``prompts_per_step`` prompts, ``group_size`` completions of each (TRL's num_generations), and
    takes ``num_iterations`` Adam steps on that batch (TRL's num_iterations, the mu of Shao et al., 2024, alg. 1).
    """

    steps: int = 30
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 48
    learning_rate: float = 2e-4
    beta: float = 0.04  # weight of the k3 KL to the reference in the loss
    clip_eps: float = 0.2
    num_iterations: int = 1  # 1: old_logp = logp.detach(), the ratio is 1 and only its gradient counts
    temperature: float = 1.0
    seed: int = 0
    eval_every: int = 5  # held-out greedy accuracy every this many steps (and before and after training)
    max_grad_norm: float | None = 1.0  # gradient norm clipping, as TRL's default; None: none


def _check_config(config: GRPOConfig) -> None:
    """One sentence naming the first field of ``config`` that train_grpo cannot use."""
    whole = {"steps": 1, "prompts_per_step": 1, "group_size": 2, "max_new_tokens": 1, "num_iterations": 1, "eval_every": 1}
    for name, least in whole.items():
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            why = " (a group needs a spread to normalise its rewards)" if name == "group_size" else ""
            raise ValueError(f"config.{name} should be a whole number of at least {least}{why}, got {value!r}.")
    if not config.learning_rate > 0:
        raise ValueError(f"config.learning_rate must be positive, got {config.learning_rate}.")
    if config.beta < 0 or config.clip_eps < 0:
        raise ValueError(f"config.beta and config.clip_eps must be non-negative, got beta = {config.beta} and clip_eps = {config.clip_eps}.")
    if not config.temperature > 0:
        raise ValueError(f"config.temperature must be positive, got {config.temperature}.")


def sampled_token_logprobs(model, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(z_t / T)[y_t] of every response token, 0 off the response; (batch, new), with gradient (as TRL's).

    The distribution that sampled at temperature T (TRL scores the policy, the old policy and the reference with the
    same T); at T = 1 this is :func:`rl4lm.rlhf.lm_policy_gradient.response_logprobs`.
    """
    if temperature == 1.0:
        return response_logprobs(model, rollout)
    ids, mask, start = rollout.input_ids, rollout.attention_mask, rollout.prompt_len
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask)).logits
    logits = logits[:, start - 1:-1].float() / temperature  # (batch, new, vocab): position t scores token t + 1
    chosen = logits.gather(-1, ids[:, start:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # (batch, new)
    return torch.where(rollout.response_mask[:, start:].bool(), chosen, 0.0)


@torch.no_grad()
def greedy_accuracy(policy, tokenizer, task, max_new_tokens: int, batch_size: int = 128) -> tuple[float, list[str]]:
    """Fraction of the task's held-out prompts whose greedy completion earns reward 1, and the completions."""
    completions = []
    for start in range(0, len(task.eval_prompts), batch_size):
        chunk = task.eval_prompts[start:start + batch_size]
        completions += greedy_rollout(policy, tokenizer, chunk, max_new_tokens).texts(tokenizer)
    return task.accuracy(task.eval_prompts, completions), completions


def _group_advantages(advantages_fn: Callable, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """advantages_fn(rewards, group_size), checked to be one float per completion (N,)."""
    advantages = advantages_fn(rewards, group_size)
    if not isinstance(advantages, torch.Tensor) or tuple(advantages.shape) != tuple(rewards.shape):
        got = tuple(advantages.shape) if isinstance(advantages, torch.Tensor) else type(advantages).__name__
        raise ValueError(f"advantages_fn returned {got} for {rewards.numel()} rewards; it should return a tensor of shape (N,) = "
                         f"{tuple(rewards.shape)}.")
    return advantages.to(rewards.device, rewards.dtype)


def grpo_step(policy, optimizer: torch.optim.Optimizer, rollout: Rollout, ref_logp: torch.Tensor, advantages: torch.Tensor,
              config: GRPOConfig, loss_fn: Callable = grpo_loss) -> dict:
    """``config.num_iterations`` Adam steps on one batch of groups with ``loss_fn`` (Shao et al., 2024, alg. 1, the mu loop).

    ref_logp: (N, new) under the reference; advantages: (N,). With one iteration the old policy is the current one,
    old_logp = logp.detach(), as TRL; with more, old_logp are the sampler's log-probabilities (the policy before the
    first update, scored at the same temperature). Returns loss (first iteration), kl (pooled per-token k3 mean over
    response tokens at sampling time), grad_norm.
    """
    mask = rollout.response_mask[:, rollout.prompt_len:]  # (N, new)
    old_logp = rollout.logprobs if config.num_iterations > 1 else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    metrics = {}
    for iteration in range(config.num_iterations):
        logp = sampled_token_logprobs(policy, rollout, config.temperature)  # (N, new), with gradient
        loss = loss_fn(logp, logp.detach() if old_logp is None else old_logp, ref_logp, advantages, mask,
                       clip_eps=config.clip_eps, beta=config.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p for p in params if p.grad is not None]
        max_norm = float("inf") if config.max_grad_norm is None else config.max_grad_norm
        grad_norm = torch.nn.utils.clip_grad_norm_(grads, max_norm) if grads else torch.tensor(0.0)
        optimizer.step()
        if iteration == 0:
            metrics = {"loss": loss.item(), "kl": masked_mean(k3_token_kl(logp.detach(), ref_logp), mask).item(),
                       "grad_norm": float(grad_norm)}
    return metrics


def train_grpo(policy, tokenizer, task, config: GRPOConfig, reference=None, advantages_fn: Callable = grpo_advantages,
               loss_fn: Callable = grpo_loss, progress: bool = False) -> dict:
    """GRPO on a verifiable task: group-normalised rewards as advantages, the clipped loss with a k3 KL term (Shao et al., 2024).

    Each step draws ``config.prompts_per_step`` prompts of ``task.train_prompts`` (with replacement, seeded), repeats
    each ``config.group_size`` times consecutively, samples the completions with the KV-cached sampler at
    ``config.temperature``, scores ``task.rewards(prompts, completions)`` (completions without prompt or end-of-text),
    turns them into advantages with ``advantages_fn(rewards, group_size)`` and takes :func:`grpo_step` with
    ``loss_fn(logp, old_logp, ref_logp, advantages, mask, clip_eps=..., beta=...)`` and Adam. ``reference``: the model
    the KL is measured to (a frozen copy of the starting policy if None). The policy is trained in place in eval mode
    (no dropout), so sampler and update score tokens alike; everything runs on the policy's device.

    Returns {'history': {key: list per step} for :data:`HISTORY_KEYS` (reward_mean: the batch's training accuracy; kl:
    pooled per-token k3 KL to the reference over response tokens; frac_zero_std: fraction of groups whose rewards are all
    equal, which get no gradient; seconds: wall time since the first step) plus 'eval_step' and 'eval_accuracy' (held-out
    greedy accuracy after that many steps: 0, every ``config.eval_every`` and the last), 'accuracy_start',
    'accuracy_end', 'prompts' (the first 8 held-out prompts), 'samples_before', 'samples_after' (their greedy
    completions), 'rewards_before', 'rewards_after', 'seconds' (the training loop, evaluations included)}.
    """
    _check_config(config)
    if reference is policy:
        raise ValueError("reference is the policy itself, so the KL to it stays 0; pass a frozen copy (copy.deepcopy(policy)) or None.")
    device = next(policy.parameters()).device
    torch.manual_seed(config.seed)
    reference = (copy.deepcopy(policy) if reference is None else reference).eval()
    policy.eval()
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    pick = torch.Generator().manual_seed(config.seed)
    sampler = torch.Generator(device=device).manual_seed(config.seed)
    history = {key: [] for key in (*HISTORY_KEYS, "eval_step", "eval_accuracy")}
    shown = task.eval_prompts[:8]

    def evaluate(step: int) -> list[str]:
        accuracy, completions = greedy_accuracy(policy, tokenizer, task, config.max_new_tokens)
        history["eval_step"].append(step)
        history["eval_accuracy"].append(accuracy)
        return completions[:len(shown)]

    start = time.perf_counter()
    samples_before = samples_after = evaluate(0)
    bar = progress_bar(config.steps, progress, "GRPO")
    for step in range(config.steps):
        chosen = torch.randint(len(task.train_prompts), (config.prompts_per_step,), generator=pick).tolist()
        prompts = [task.train_prompts[i] for i in chosen for _ in range(config.group_size)]  # groups of G consecutive copies
        rollout = sample_rollout(policy, tokenizer, prompts, config.max_new_tokens, temperature=config.temperature, generator=sampler)
        rewards = task.rewards(prompts, rollout.texts(tokenizer)).to(device)  # (N,)
        advantages = _group_advantages(advantages_fn, rewards, config.group_size)  # (N,)
        with torch.no_grad():
            ref_logp = sampled_token_logprobs(reference, rollout, config.temperature)  # (N, new)
        metrics = grpo_step(policy, optimizer, rollout, ref_logp, advantages, config, loss_fn)
        spread = rewards.view(-1, config.group_size).std(dim=1)  # (prompts,)
        row = {"step": step, "reward_mean": rewards.mean().item(), "kl": metrics["kl"], "loss": metrics["loss"],
               "response_length": rollout.response_lengths().float().mean().item(),
               "frac_zero_std": (spread == 0).float().mean().item(), "seconds": time.perf_counter() - start}
        for key in HISTORY_KEYS:
            history[key].append(row[key])
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            samples_after = evaluate(step + 1)
        if bar is not None:
            bar.set_postfix(reward=f"{row['reward_mean']:.2f}", kl=f"{row['kl']:.3f}", accuracy=f"{history['eval_accuracy'][-1]:.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    return {"history": history, "accuracy_start": history["eval_accuracy"][0], "accuracy_end": history["eval_accuracy"][-1],
            "prompts": shown, "samples_before": samples_before, "samples_after": samples_after,
            "rewards_before": task.rewards(shown, samples_before).tolist(), "rewards_after": task.rewards(shown, samples_after).tolist(),
            "seconds": seconds}
