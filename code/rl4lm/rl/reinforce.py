"""REINFORCE with a learned baseline on CartPole-v1 (Williams, 1992), and the spread of its gradient estimates.

The policy is a small categorical MLP; an update collects one complete episode in each of the environments of a
gymnasium vector environment, weights every step's log-probability by its return-to-go G_t minus a baseline
b(s_t) (a value network trained by regression on G_t), and takes one Adam step. The loss is swappable
(``loss_fn``) so that Homework 2 can train with the student's ``reinforce_loss``.

Discounting: the returns-to-go are discounted, G_t = sum_k gamma^k r_{t+k+1}, but the gradient term of step t
is *not* multiplied by gamma^t. This is the common practice (Sutton & Barto, 2018, sec. 13.3 keep the factor);
it weights late steps as much as early ones and is not the exact gradient of the discounted objective.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..profiles import torch_threads
from . import mdp
from .envs import vector_env
from .policy_gradient import explained_variance, reinforce_loss


class CategoricalPolicy(nn.Module):
    """pi_theta(a | s) = softmax(MLP(s))_a, a categorical policy over discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Action logits (..., n_actions) for observations (..., obs_dim)."""
        return self.net(obs)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a_t | s_t) of the given actions, (N,) for obs (N, obs_dim) and actions (N,)."""
        return torch.log_softmax(self(obs), dim=-1).gather(-1, actions[:, None]).squeeze(-1)


class ValueNetwork(nn.Module):
    """V_phi(s), an MLP regressed on returns-to-go: the learned baseline b(s_t)."""

    def __init__(self, obs_dim: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Values (N,) for observations (N, obs_dim)."""
        return self.net(obs).squeeze(-1)


@dataclass
class Episode:
    """One complete episode: observations s_0..s_{T-1} (T, obs_dim), actions a_0..a_{T-1} (T,), rewards r_1..r_T (T,)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        """The undiscounted return sum_t r_{t+1}, CartPole's score (its number of steps)."""
        return float(self.rewards.sum())


def episode_envs(num_envs: int, env_id: str = "CartPole-v1"):
    """A gymnasium vector environment of ``num_envs`` copies for :func:`collect_episodes` (:func:`rl4lm.rl.envs.vector_env`)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}.")
    return vector_env(env_id, num_envs)


@torch.no_grad()
def collect_episodes(policy: CategoricalPolicy, envs, seed: int, generator: torch.Generator | None = None,
                     max_steps: int = 10_000) -> list[Episode]:
    """Sample one complete episode per sub-environment of the vector env ``envs`` with a ~ pi(. | s) (REINFORCE's data).

    ``envs`` (from :func:`episode_envs`) is reset with ``seed``; the steps a sub-environment takes
    after its episode ended (gymnasium resets it and starts another) are not part of its episode.
    """
    with torch_threads(1):
        return _collect(policy, envs, seed, generator, max_steps)


def _collect(policy: CategoricalPolicy, envs, seed: int, generator: torch.Generator | None, max_steps: int) -> list[Episode]:
    """The loop of :func:`collect_episodes`."""
    obs, _ = envs.reset(seed=seed)
    alive = np.ones(envs.num_envs, dtype=bool)
    observations, actions, rewards, masks = [], [], [], []  # each step: (n, obs_dim), (n,), (n,), (n,)
    for _ in range(max_steps):
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        probs = torch.softmax(policy(obs_t), dim=-1)  # (n, n_actions)
        action = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (n,)
        obs, reward, terminated, truncated, _ = envs.step(action.numpy())
        observations.append(obs_t)
        actions.append(action)
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        masks.append(torch.as_tensor(alive.copy()))
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    else:
        raise ValueError(f"max_steps = {max_steps} steps were not enough for every episode to end; raise max_steps.")
    observations, actions, rewards = torch.stack(observations, 1), torch.stack(actions, 1), torch.stack(rewards, 1)  # (n, T, ...)
    lengths = torch.stack(masks, 1).sum(1).tolist()  # (n,): an episode's steps are its first `length` ones
    return [Episode(observations[i, :T], actions[i, :T], rewards[i, :T]) for i, T in enumerate(lengths)]


def episode_returns_to_go(episode: Episode, gamma: float) -> torch.Tensor:
    """G_t = sum_k gamma^k r_{t+k+1} for every step of one episode, (T,) (Sutton & Barto, 2018, eq. 3.9)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
    if len(episode) == 0:
        raise ValueError("episode is empty: an episode needs at least one step to have returns.")
    return torch.as_tensor(mdp.returns_to_go(episode.rewards.numpy(), gamma), dtype=torch.float32)


def _baseline_values(baseline, observations: torch.Tensor) -> torch.Tensor:
    """b(s_t) for each observation, (T,): 0 for None, a constant for a number, baseline(obs) for a callable."""
    if baseline is None:
        return torch.zeros(len(observations))
    if callable(baseline):
        with torch.no_grad():
            return baseline(observations).reshape(-1).float()
    return torch.full((len(observations),), float(baseline))


def step_weights(episode: Episode, gamma: float, baseline=None, reward_to_go: bool = True,
                 discount_steps: bool = False) -> torch.Tensor:
    """The weight of grad log pi(a_t | s_t) in the REINFORCE estimate of one episode, (T,) (Williams, 1992).

    reward_to_go: G_t - b(s_t) (default), else G_0 - b(s_t), the whole episode's return at every step.
    discount_steps: multiply step t by gamma^t, which makes the estimate the exact gradient of the discounted
    objective (Sutton & Barto, 2018, sec. 13.3); by default the factor is dropped, as in common practice.
    """
    returns = episode_returns_to_go(episode, gamma)  # (T,)
    if not reward_to_go:
        returns = returns[:1].expand_as(returns)
    weights = returns - _baseline_values(baseline, episode.observations)
    if discount_steps:
        weights = weights * gamma ** torch.arange(len(episode), dtype=torch.float32)
    return weights


def policy_gradient_estimates(policy: CategoricalPolicy, episodes: list[Episode], episodes_per_batch: int,
                              baseline=None, gamma: float = 0.99, reward_to_go: bool = True,
                              discount_steps: bool = False) -> torch.Tensor:
    """Monte-Carlo estimates of grad J, (1/E) sum_e sum_t grad log pi(a_t | s_t) (G_t - b(s_t)) (Williams, 1992), one per batch.

    episodes: sampled with ``policy`` (which stays fixed); they are split into consecutive batches of
    ``episodes_per_batch`` (E) episodes. baseline: None (no baseline), a number (a constant b), or a callable
    mapping observations (T, obs_dim) to b(s_t) (T,), e.g. a :class:`ValueNetwork`. reward_to_go and
    discount_steps choose the weights as in :func:`step_weights`. Returns (batches, n_params): each row is one
    estimate of the gradient of the objective (an ascent direction), flattened over all parameters.
    """
    if episodes_per_batch < 1 or len(episodes) < episodes_per_batch:
        raise ValueError(f"episodes_per_batch must be between 1 and the number of episodes ({len(episodes)}), "
                         f"got {episodes_per_batch}.")
    params = [p for p in policy.parameters() if p.requires_grad]
    estimates = []
    with torch_threads(1):
        for start in range(0, len(episodes) - episodes_per_batch + 1, episodes_per_batch):
            batch = episodes[start:start + episodes_per_batch]
            obs = torch.cat([e.observations for e in batch])  # (N, obs_dim), N steps of the batch
            actions = torch.cat([e.actions for e in batch])  # (N,)
            weights = torch.cat([step_weights(e, gamma, baseline, reward_to_go, discount_steps) for e in batch])  # (N,)
            surrogate = (policy.log_prob(obs, actions) * weights).sum() / episodes_per_batch  # its gradient is the estimate
            grads = torch.autograd.grad(surrogate, params)
            estimates.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(estimates)  # (batches, n_params)


def fit_value(value: ValueNetwork, episodes: list[Episode], gamma: float, epochs: int = 200, learning_rate: float = 1e-2) -> float:
    """Regress V_phi(s_t) on the returns-to-go G_t of ``episodes`` (full-batch Adam on the squared error); returns the final loss."""
    obs = torch.cat([e.observations for e in episodes])  # (N, obs_dim)
    returns = torch.cat([episode_returns_to_go(e, gamma) for e in episodes])  # (N,)
    optimizer = torch.optim.Adam(value.parameters(), lr=learning_rate)
    with torch_threads(1):
        for _ in range(epochs):
            loss = ((value(obs) - returns) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return float(loss.detach())


@dataclass
class ReinforceConfig:
    """Settings of REINFORCE with a learned baseline on a discrete-action gymnasium task (defaults: fast CartPole-v1)."""

    env_id: str = "CartPole-v1"
    episodes_per_update: int = 16  # one episode per vectorised environment
    updates: int = 60
    learning_rate: float = 1e-2  # Adam, policy
    value_learning_rate: float = 1e-2  # Adam, baseline
    value_epochs: int = 10  # full-batch regression steps of the baseline per update
    gamma: float = 0.99
    hidden: int = 32
    baseline: bool = True  # False: b = 0, plain REINFORCE
    seed: int = 0


@dataclass
class ReinforceResult:
    """What a REINFORCE run returns: per-update history, every episode's (step, return), the trained networks."""

    history: list[dict] = field(default_factory=list)
    episode_returns: list[tuple[int, float]] = field(default_factory=list)
    policy: CategoricalPolicy | None = None
    value: ValueNetwork | None = None
    seconds: float = 0.0


def _check_loss(loss) -> torch.Tensor:
    """The loss_fn's output must be a scalar tensor with a gradient: one sentence otherwise."""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (0-dimensional), got {shape}; average over the N steps.")
    if not loss.requires_grad:
        raise ValueError("loss_fn returned a tensor without gradient; compute it from logprobs with torch operations.")
    if not torch.isfinite(loss):
        raise ValueError(f"loss_fn returned {float(loss)}; check it on a small example.")
    return loss


def train_reinforce_cartpole(config: ReinforceConfig | None = None,
                             loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = reinforce_loss,
                             progress: bool = False) -> ReinforceResult:
    """REINFORCE with a learned value baseline (Williams, 1992; Sutton & Barto, 2018, sec. 13.4) on CartPole-v1.

    Each update samples ``episodes_per_update`` episodes, calls ``loss_fn(logprobs, returns, baseline)`` on all their
    steps (tensors (N,)) and takes one Adam step on the policy; then the baseline V_phi is regressed on the returns.
    ``history`` has one dict per update: update, step (environment steps so far), episodes, return_mean, return_min,
    return_max, policy_loss, value_loss, entropy, explained_variance, seconds.
    """
    config = config or ReinforceConfig()
    if config.episodes_per_update < 1 or config.updates < 1:
        raise ValueError(f"episodes_per_update and updates must be at least 1, got {config.episodes_per_update} and {config.updates}.")
    if not 0.0 <= config.gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {config.gamma}.")
    from tqdm.auto import tqdm

    result = ReinforceResult()
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the networks' initial weights
        envs = episode_envs(config.episodes_per_update, config.env_id)
        obs_dim, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
        policy, value = CategoricalPolicy(obs_dim, n_actions, config.hidden), ValueNetwork(obs_dim, config.hidden)
        policy_opt = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
        value_opt = torch.optim.Adam(value.parameters(), lr=config.value_learning_rate)
        generator = torch.Generator().manual_seed(config.seed)  # the actions
        steps, start = 0, time.perf_counter()
        bar = tqdm(range(config.updates), desc="REINFORCE", disable=not progress)
        for update in bar:
            episodes = collect_episodes(policy, envs, seed=config.seed * 100_003 + update, generator=generator)
            obs = torch.cat([e.observations for e in episodes])  # (N, obs_dim)
            actions = torch.cat([e.actions for e in episodes])  # (N,)
            returns = torch.cat([episode_returns_to_go(e, config.gamma) for e in episodes])  # (N,)
            baseline = value(obs) if config.baseline else torch.zeros_like(returns)  # (N,); loss_fn must not train it

            logits = policy(obs)  # (N, n_actions)
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, actions[:, None]).squeeze(-1)  # (N,)
            loss = _check_loss(loss_fn(logprobs, returns, baseline))
            policy_opt.zero_grad()
            loss.backward()
            policy_opt.step()

            value_loss = float("nan")
            if config.baseline:
                for _ in range(config.value_epochs):
                    value_loss_t = ((value(obs) - returns) ** 2).mean()
                    value_opt.zero_grad()  # also drops any gradient a loss_fn let through the baseline
                    value_loss_t.backward()
                    value_opt.step()
                value_loss = float(value_loss_t.detach())

            steps += len(returns)
            totals = [e.total_reward for e in episodes]
            result.episode_returns += [(steps, total) for total in totals]
            with torch.no_grad():
                entropy = float(-(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1).mean())
            result.history.append({
                "update": update, "step": steps, "episodes": (update + 1) * len(episodes),
                "return_mean": float(np.mean(totals)), "return_min": float(np.min(totals)), "return_max": float(np.max(totals)),
                "policy_loss": float(loss.detach()), "value_loss": value_loss, "entropy": entropy,
                "explained_variance": explained_variance(baseline.detach(), returns) if config.baseline else float("nan"),
                "seconds": time.perf_counter() - start,
            })
            bar.set_postfix(return_mean=f"{np.mean(totals):.1f}")
        envs.close()
    result.policy, result.value, result.seconds = policy, value, time.perf_counter() - start
    return result
