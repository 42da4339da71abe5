"""Policy-gradient losses and estimators: REINFORCE, GAE and PPO's clipped surrogate, with PPO's diagnostics.

Shapes: per-sample tensors are (N,); rollouts are (T, N) for T steps of N parallel environments. Losses are
scalars to *minimise*, so each is minus the objective of its paper. The functions are shared by the CartPole PPO
(:mod:`rl4lm.rl.ppo`), the language-model policy gradients (:mod:`rl4lm.rlhf`) and the checkers of Homework 2.
"""
from __future__ import annotations

import torch


def _require_same_shape(**tensors: torch.Tensor) -> None:
    """One sentence naming the argument whose shape differs from the first one, or that is empty."""
    (first_name, first), *rest = tensors.items()
    if first.numel() == 0:
        raise ValueError(f"{first_name} is empty: there is nothing to average (an episode needs at least one step).")
    for name, tensor in rest:
        if tuple(tensor.shape) != tuple(first.shape):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but {first_name} has shape {tuple(first.shape)}; "
                             "they must match element by element.")


def reinforce_loss(logprobs: torch.Tensor, returns: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """-mean_i log pi(a_i | s_i) (G_i - b_i), the REINFORCE estimator with a baseline (Williams, 1992); a scalar.

    logprobs, returns, baseline: (N,). No gradient flows through the baseline (it is detached), so a learned
    baseline is trained by its own loss.
    """
    baseline = torch.as_tensor(baseline, dtype=logprobs.dtype, device=logprobs.device).expand_as(logprobs)
    _require_same_shape(logprobs=logprobs, returns=returns, baseline=baseline)
    return -(logprobs * (returns - baseline.detach())).mean()


@torch.no_grad()
def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, A_t = sum_k (gamma lam)^k delta_{t+k} (Schulman et al., 2016, eq. 16).

    rewards, values, dones: (T, N), with dones[t] = 1 when the episode ended at step t (no bootstrap past it);
    last_value: (N,), the value of the state after step T - 1. delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t.
    Returns (advantages, returns) of shape (T, N) with returns = advantages + values.
    """
    _require_same_shape(rewards=rewards, values=values, dones=dones)
    if rewards.dim() != 2 or tuple(last_value.shape) != (rewards.shape[1],):
        raise ValueError(f"last_value should have shape (N,) = ({rewards.shape[-1]},) for rewards of shape (T, N); "
                         f"got {tuple(last_value.shape)} and {tuple(rewards.shape)}.")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma = {gamma} and lam = {lam}.")
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)  # A_{t+1}
    next_value = last_value
    for t in range(rewards.shape[0] - 1, -1, -1):
        nonterminal = 1.0 - dones[t].to(rewards.dtype)
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        running = delta + gamma * lam * nonterminal * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """-mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) with rho_t = exp(logp_new - logp_old) (Schulman et al., 2017, eq. 7).

    All inputs (N,); gradients flow only through logp_new. Returns a scalar.
    """
    _require_same_shape(logp_new=logp_new, logp_old=logp_old, advantages=advantages)
    if clip_eps < 0:
        raise ValueError(f"clip_eps must be non-negative, got {clip_eps}.")
    ratio = torch.exp(logp_new - logp_old.detach())
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    return -torch.min(unclipped, clipped).mean()


@torch.no_grad()
def approx_kl(logp_new: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
    """KL(pi_old || pi_new) estimated as mean((rho - 1) - log rho), the unbiased, non-negative k3 estimator (Schulman, 2020)."""
    log_ratio = logp_new - logp_old
    return ((log_ratio.exp() - 1) - log_ratio).mean()


@torch.no_grad()
def clip_fraction(logp_new: torch.Tensor, logp_old: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """Share of samples whose ratio rho lies outside [1 - eps, 1 + eps] (PPO's ``clipfrac``)."""
    return ((logp_new - logp_old).exp().sub(1).abs() > clip_eps).float().mean()


@torch.no_grad()
def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]: 1 for a perfect critic, 0 for a constant one, NaN if returns are constant."""
    var = returns.var()
    return float("nan") if var == 0 else float(1 - (returns - values).var() / var)
