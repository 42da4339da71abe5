"""Markov decision processes: returns and Monte Carlo value estimates (Sutton & Barto, 2018, ch. 3 and 5)."""
from __future__ import annotations

import numpy as np


def returns_to_go(rewards, gamma: float) -> np.ndarray:
    """All returns G_t = R_{t+1} + gamma G_{t+1}, computed backwards (Sutton & Barto, 2018, eq. 3.9)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.zeros_like(rewards)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def discounted_return(rewards, gamma: float) -> float:
    """Discounted return G_0 = sum_k gamma^k R_{k+1} (Sutton & Barto, 2018, eq. 3.8); 0 for an empty episode."""
    returns = returns_to_go(list(rewards), gamma)
    return float(returns[0]) if len(returns) else 0.0


def run_episode(env, policy, seed: int | None = None, max_steps: int = 1000) -> list[float]:
    """Roll out one episode of ``policy(observation) -> action`` in a gymnasium env; return its rewards R_1..R_T."""
    observation, _ = env.reset(seed=seed)
    rewards = []
    for _ in range(max_steps):
        observation, reward, terminated, truncated, _ = env.step(policy(observation))
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return rewards


def monte_carlo_returns(env, policy, gamma: float, episodes: int, seed: int = 0, discount=discounted_return) -> np.ndarray:
    """Returns G_0 of ``episodes`` independent episodes from the start state; their mean estimates v_pi(s_0) (S&B, sec. 5.1)."""
    env.action_space.seed(seed)
    first = run_episode(env, policy, seed=seed)  # seeds the environment's generator once
    rest = [run_episode(env, policy) for _ in range(episodes - 1)]
    return np.array([discount(rewards, gamma) for rewards in [first, *rest]])


def policy_evaluation(transitions, policy_probs: np.ndarray, gamma: float, tol: float = 1e-10) -> np.ndarray:
    """Exact v_pi by iterating the Bellman expectation equation (S&B, eq. 4.5) on a tabular model.

    transitions: gymnasium toy-text ``env.unwrapped.P[s][a] = [(prob, next_s, reward, terminated), ...]``;
    policy_probs: (states, actions) with pi(a | s).
    """
    v = np.zeros(len(transitions))
    while True:
        new = np.array([sum(policy_probs[s, a] * p * (r + gamma * v[s2] * (not done))
                            for a, outcomes in transitions[s].items() for p, s2, r, done in outcomes)
                        for s in range(len(transitions))])
        if np.abs(new - v).max() < tol:
            return new
        v = new
