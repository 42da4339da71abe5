"""Temporal-difference control on tabular environments: Q-learning (Watkins & Dayan, 1992; Sutton & Barto, 2018, sec. 6.5)."""
from __future__ import annotations

import numpy as np

from .bandits import argmax_random_tiebreak


def q_learning_update(q: np.ndarray, s: int, a: int, reward: float, s_next: int, terminated: bool, alpha: float,
                      gamma: float) -> None:
    """Q(s, a) += alpha [r + gamma max_a' Q(s', a') - Q(s, a)], without the bootstrap after a terminal step (S&B, eq. 6.8)."""
    target = reward + (0.0 if terminated else gamma * q[s_next].max())
    q[s, a] += alpha * (target - q[s, a])


def q_learning(env, episodes: int, alpha: float, gamma: float, epsilon: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Epsilon-greedy tabular Q-learning on a gymnasium env with discrete states and actions.

    Returns Q (S, A) and each episode's undiscounted return (episodes,).
    """
    rng = np.random.default_rng(seed)
    q = np.zeros((env.observation_space.n, env.action_space.n))
    returns = np.zeros(episodes)
    s, _ = env.reset(seed=seed)
    for episode in range(episodes):
        if episode:
            s, _ = env.reset()
        done = False
        while not done:
            greedy = int(argmax_random_tiebreak(q[s][None], rng)[0])
            a = int(rng.integers(env.action_space.n)) if rng.random() < epsilon else greedy
            s_next, reward, terminated, truncated, _ = env.step(a)
            q_learning_update(q, s, a, float(reward), s_next, terminated, alpha, gamma)
            returns[episode] += reward
            s, done = s_next, terminated or truncated
    return q, returns


def greedy_success_rate(env, policy: np.ndarray, episodes: int, seed: int = 0) -> float:
    """Share of episodes with a positive return when acting greedily with a table ``policy`` (S,)."""
    wins = 0
    for episode in range(episodes):
        s, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            s, reward, terminated, truncated, _ = env.step(int(policy[s]))
            done = terminated or truncated
        wins += reward > 0
    return wins / episodes
