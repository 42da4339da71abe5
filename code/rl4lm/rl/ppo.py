"""Proximal policy optimisation on vectorised gymnasium environments (Schulman et al., 2017), CleanRL style.

One update = a rollout of ``num_steps`` steps in ``num_envs`` environments stepped together, GAE advantages
(:func:`rl4lm.rl.policy_gradient.gae`), then ``update_epochs`` passes of ``num_minibatches`` minibatches on the
clipped surrogate (:func:`rl4lm.rl.policy_gradient.ppo_clip_loss`) plus a value loss. Both pieces are arguments
of :func:`train_ppo`, so Homework 2 drives the same loop with a student's ``gae`` and ``ppo_clip_loss``. Training
stops when the mean return of the last ``window`` finished episodes reaches ``target_return`` (475 on
CartPole-v1) or after ``total_timesteps``.

Where the time goes with a 4-64-64 MLP on a CPU, and what this file does about it (``make bench`` measures it
against stable-baselines3):

- stepping: gymnasium's numpy-vectorised CartPole steps all environments with a few array operations
  (``vectorization_mode="vector_entry_point"``) instead of one Python ``step`` per environment;
- acting: torch spends about 10 microseconds per operation whatever the tensor's size, so the rollout samples
  actions with a numpy copy of the actor's weights (:func:`sample_actions`), and the log-probabilities and values
  of the whole rollout come from one batched torch pass afterwards; rollout buffers are numpy arrays filled in place;
- learning: a gradient step costs nearly the same for 64 or 256 rows, so each rollout is one minibatch of 256
  and only 5 epochs; torch runs on one thread (more only synchronise) and Adam is the fused kernel;
- samples: the critic learns returns scaled by ``reward_scale`` (at most 20 instead of 100), which it fits in
  fewer steps, so fewer environment steps reach 475.
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .. import labs
from ..profiles import torch_threads
from . import policy_gradient
from .envs import vector_env


@dataclass
class PPOConfig:
    """PPO's settings; the defaults are the course's fast CartPole-v1 settings (``make bench`` times them)."""

    env_id: str = "CartPole-v1"
    num_envs: int = 8              # environments stepped together
    num_steps: int = 32            # steps per environment per rollout: a batch is num_envs * num_steps = 256 transitions
    total_timesteps: int = 100_000  # environment steps at most, counted over all environments
    learning_rate: float = 3e-3    # Adam's, annealed linearly to 0 over total_timesteps
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 1
    update_epochs: int = 5
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    seed: int = 0
    target_return: float = 475.0  # stop criterion: mean return of the last `window` finished episodes
    window: int = 20
    stop_at_target: bool = True
    hidden_size: int = 64         # width of the two hidden layers of the actor and of the critic
    reward_scale: float = 0.2     # the critic learns the returns of reward_scale * reward (GAE gets the scaled rewards)


@dataclass
class PPOResult:
    """What :func:`train_ppo` returns: per-update diagnostics, every finished episode, and the time to the target."""

    history: list[dict]  # one dict per update: step, seconds, return_mean, approx_kl, clipfrac, explained_variance, ...
    episode_returns: list[tuple[int, float]]  # (global step at the episode's end, its return)
    steps_to_threshold: int | None
    seconds_to_threshold: float | None
    sps: float  # environment steps per second of training wall time
    agent: torch.nn.Module = field(repr=False)
    steps: int = 0        # environment steps in all, over all environments
    seconds: float = 0.0  # training wall time in all


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain ``std`` and constant bias, PPO's initialisation (Engstrom et al., 2020, Andrychowicz et al., 2021)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class ActorCritic(nn.Module):
    """Separate two-layer tanh MLPs for the policy's logits and the state value, as CleanRL's PPO and SB3's MlpPolicy."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64):
        super().__init__()
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
                                   layer_init(nn.Linear(hidden, num_actions), std=0.01))
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
                                    layer_init(nn.Linear(hidden, 1), std=1.0))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s): (B, obs_dim) -> (B,), in units of reward_scale * reward."""
        return self.critic(obs).squeeze(-1)

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """log pi(. | s) for every action: (B, obs_dim) -> (B, A)."""
        return torch.log_softmax(self.actor(obs), dim=-1)

    def numpy_actor(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The actor's linear layers as numpy (weight.T, bias) pairs, a snapshot for :func:`sample_actions`."""
        return [(layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()) for layer in self.actor if isinstance(layer, nn.Linear)]


def sample_actions(layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """a ~ pi(. | s) by the inverse CDF: the first action whose cumulative probability exceeds ``uniform``.

    ``layers`` from :meth:`ActorCritic.numpy_actor` (the same tanh MLP in numpy: under a third of torch's time at batch 8);
    obs (N, obs_dim), uniform (N, 1) in [0, 1); returns actions (N,).
    """
    hidden = obs
    for weight, bias in layers[:-1]:
        hidden = np.tanh(hidden @ weight + bias)
    logits = hidden @ layers[-1][0] + layers[-1][1]  # (N, A)
    cdf = np.cumsum(np.exp(logits - logits.max(-1, keepdims=True)), -1)  # unnormalised
    return np.minimum((uniform * cdf[:, -1:] > cdf).sum(-1), cdf.shape[-1] - 1)


def check_config(config: PPOConfig) -> None:
    """One sentence naming the first setting that cannot work."""
    for name in ("num_envs", "num_steps", "total_timesteps", "num_minibatches", "update_epochs", "window", "hidden_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.num_minibatches > config.num_envs * config.num_steps:
        raise ValueError(f"num_minibatches ({config.num_minibatches}) exceeds the batch of num_envs * num_steps = "
                         f"{config.num_envs * config.num_steps} transitions.")
    for name in ("gamma", "gae_lambda"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {getattr(config, name)}.")
    for name in ("learning_rate", "clip_eps", "max_grad_norm", "reward_scale"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}.")


def make_envs(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """:func:`rl4lm.rl.envs.vector_env` with what this PPO needs besides discrete actions: flat observations, and a
    vector env that resets a finished environment on the *next* step (gymnasium's NEXT_STEP autoreset): that step
    ignores its action and returns reward 0 and the first observation of the new episode.
    """
    envs = vector_env(env_id, num_envs)
    if len(envs.single_observation_space.shape) != 1:
        raise ValueError(f"env_id {env_id!r}: this PPO needs discrete actions and flat observations.")
    if envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP) != gym.vector.AutoresetMode.NEXT_STEP:
        raise ValueError(f"env_id {env_id!r}: the vector env must reset finished episodes on the next step.")
    return envs


def train_ppo(config: PPOConfig, gae_fn=policy_gradient.gae, loss_fn=policy_gradient.ppo_clip_loss, progress: bool = False) -> PPOResult:
    """PPO with the clipped surrogate (Schulman et al., 2017, Algorithm 1) until the target return or the step budget.

    ``gae_fn(rewards, values, dones, last_value, gamma, lam) -> (advantages, returns)`` gets float32 CPU tensors of
    shape (T, N) and (N,); ``loss_fn(logp_new, logp_old, advantages, clip_eps) -> scalar`` gets (B,) tensors.
    Deterministic for a seed. With ``progress``, prints a line of metrics every 10 updates.
    """
    check_config(config)
    with torch_threads(1):  # a tiny MLP is per-call overhead: a second thread only adds synchronisation
        return run_ppo(config, gae_fn, loss_fn, progress)


def run_ppo(config: PPOConfig, gae_fn, loss_fn, progress: bool) -> PPOResult:
    """The loop of :func:`train_ppo`: rollouts, updates, and the bookkeeping of finished episodes."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # action sampling and minibatch order
    envs = make_envs(config.env_id, config.num_envs)
    N, T = config.num_envs, config.num_steps
    obs_dim, num_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    agent = ActorCritic(obs_dim, num_actions, config.hidden_size)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5, fused=True)  # one kernel for all tensors
    num_updates = max(1, config.total_timesteps // (N * T))

    # rollout buffers, filled in place: row t holds the observation before step t and what step t returned
    obs_buf = np.zeros((T, N, obs_dim), dtype=np.float32)
    actions_buf = np.zeros((T, N), dtype=np.int64)
    rewards_buf = np.zeros((T, N), dtype=np.float32)
    dones_buf = np.zeros((T, N), dtype=np.float32)      # 1 when the episode ended at step t (terminated or truncated)
    truncated_buf = np.zeros((T, N), dtype=np.float32)  # 1 when it ended by the time limit only
    valid_buf = np.zeros((T, N), dtype=bool)            # False on the reset steps of the NEXT_STEP autoreset

    obs, _ = envs.reset(seed=config.seed)
    resetting = np.zeros(N, dtype=bool)  # the next step of these environments is a reset step
    episode_return = np.zeros(N, dtype=np.float64)
    recent = collections.deque(maxlen=config.window)
    history, episode_returns = [], []
    global_step, steps_to_threshold, seconds_to_threshold = 0, None, None
    start = time.perf_counter()  # training time, from the first step (building the first optimizer imports torch._dynamo: seconds)

    for update in range(num_updates):
        for group in optimizer.param_groups:  # linear annealing to 0, as in PPO's MuJoCo and Atari settings
            group["lr"] = config.learning_rate * (1.0 - update / num_updates)
        actor = agent.numpy_actor()
        uniform = torch.rand((T, N, 1), generator=generator).numpy()
        for t in range(T):
            obs_buf[t], valid_buf[t] = obs, ~resetting
            actions = sample_actions(actor, obs, uniform[t])
            obs, reward, terminated, truncated, _ = envs.step(actions)
            done = terminated | truncated
            actions_buf[t], rewards_buf[t], dones_buf[t], truncated_buf[t] = actions, reward, done, truncated & ~terminated
            global_step += N
            episode_return += reward
            resetting = done
            if done.any():
                for env_index in np.flatnonzero(done):
                    recent.append(float(episode_return[env_index]))
                    episode_returns.append((global_step, float(episode_return[env_index])))
                episode_return[done] = 0.0
                if steps_to_threshold is None and len(recent) == config.window and sum(recent) / config.window >= config.target_return:
                    steps_to_threshold, seconds_to_threshold = global_step, time.perf_counter() - start
                    if config.stop_at_target:
                        break
        if steps_to_threshold is not None and config.stop_at_target:
            break
        row = update_policy(agent, optimizer, config, gae_fn, loss_fn, generator,
                            obs_buf, actions_buf, rewards_buf, dones_buf, truncated_buf, valid_buf, next_obs=obs)
        row.update(step=global_step, seconds=time.perf_counter() - start, return_mean=sum(recent) / len(recent) if recent else float("nan"))
        history.append(row)
        if progress and (update % 10 == 9 or update == num_updates - 1):
            labs.log(global_step, **{name: row[name] for name in ("return_mean", "approx_kl", "clipfrac", "explained_variance")})
    seconds = time.perf_counter() - start
    envs.close()
    return PPOResult(history=history, episode_returns=episode_returns, steps_to_threshold=steps_to_threshold,
                     seconds_to_threshold=seconds_to_threshold, sps=global_step / seconds, agent=agent, steps=global_step, seconds=seconds)


def update_policy(agent: ActorCritic, optimizer: torch.optim.Optimizer, config: PPOConfig, gae_fn, loss_fn, generator: torch.Generator,
                  obs_buf, actions_buf, rewards_buf, dones_buf, truncated_buf, valid_buf, next_obs: np.ndarray) -> dict:
    """One PPO update on a rollout: advantages by ``gae_fn``, then epochs of minibatch steps on ``loss_fn`` + vf_coef * value loss."""
    T, N = rewards_buf.shape
    obs = torch.from_numpy(obs_buf).reshape(T * N, -1)
    actions = torch.from_numpy(actions_buf).reshape(T * N)
    with torch.no_grad():  # log pi_old and V for the whole rollout in one pass
        logp_old = agent.log_probs(obs).gather(1, actions[:, None]).squeeze(1)  # (T N,)
        values = agent.value(obs).reshape(T, N)
        last_value = agent.value(torch.from_numpy(next_obs))  # (N,)
    rewards = torch.from_numpy(rewards_buf) * config.reward_scale  # (T, N)
    # An episode cut by the time limit (500 steps) has not failed: bootstrap it, r_t + gamma V(s_{t+1}), as SB3 does.
    # The NEXT_STEP autoreset leaves that last observation s_{t+1} as the next row's (or as next_obs after row T - 1).
    next_values = torch.cat([values[1:], last_value[None]])  # (T, N)
    rewards += config.gamma * next_values * torch.from_numpy(truncated_buf)
    advantages, returns = gae_fn(rewards, values, torch.from_numpy(dones_buf), last_value, config.gamma, config.gae_lambda)
    # the reset steps of the NEXT_STEP autoreset belong to no episode: leave them out of the batch
    keep = torch.from_numpy(valid_buf).reshape(T * N)
    obs, actions, logp_old = obs[keep], actions[keep], logp_old[keep]
    advantages, returns, values = advantages.reshape(T * N)[keep], returns.reshape(T * N)[keep], values.reshape(T * N)[keep]
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    batch = obs.shape[0]
    minibatch = math.ceil(batch / config.num_minibatches)
    parameters = list(agent.parameters())
    stats = collections.defaultdict(list)
    for epoch in range(config.update_epochs):
        order = torch.randperm(batch, generator=generator)
        for first in range(0, batch, minibatch):
            idx = order[first:first + minibatch]
            log_probs = agent.log_probs(obs[idx])  # (B, A)
            logp_new = log_probs.gather(1, actions[idx, None]).squeeze(1)  # (B,)
            policy_loss = loss_fn(logp_new, logp_old[idx], advantages[idx], config.clip_eps)
            value_loss = 0.5 * (agent.value(obs[idx]) - returns[idx]).square().mean()
            with torch.set_grad_enabled(config.ent_coef != 0):  # without a bonus the entropy is only a diagnostic
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
            loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            if epoch == config.update_epochs - 1:  # diagnostics of the last epoch
                logp_new = logp_new.detach()
                stats["approx_kl"].append(float(policy_gradient.approx_kl(logp_new, logp_old[idx])))
                stats["clipfrac"].append(float(policy_gradient.clip_fraction(logp_new, logp_old[idx], config.clip_eps)))
                stats["policy_loss"].append(float(policy_loss.detach()))
                stats["value_loss"].append(float(value_loss.detach()))
                stats["entropy"].append(float(entropy.detach()))
    row = {name: sum(numbers) / len(numbers) for name, numbers in stats.items()}
    row["explained_variance"] = policy_gradient.explained_variance(values, returns)
    return row
