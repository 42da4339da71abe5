"""Multi-armed bandits: the k-armed testbed and epsilon-greedy action-value methods (Sutton & Barto, 2018, ch. 2).

Everything is vectorised over independent runs: estimates are arrays of shape (runs, k), so
2000 runs of 1000 steps take a fraction of a second with numpy.
"""
from __future__ import annotations

import numpy as np


def make_testbed(runs: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """True action values q*(a) ~ N(0, 1) for each run and arm, (runs, k) (Sutton & Barto, 2018, sec. 2.3)."""
    return rng.normal(0.0, 1.0, size=(runs, k))


def pull(q_true: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rewards R ~ N(q*(A), 1) for the chosen arm of every run, (runs,)."""
    means = q_true[np.arange(len(actions)), actions]
    return means + rng.normal(0.0, 1.0, size=len(actions))


def argmax_random_tiebreak(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index of the largest value in each row, ties broken uniformly at random, (runs,)."""
    is_best = values == values.max(axis=-1, keepdims=True)  # (runs, k)
    noise = rng.random(values.shape)  # a random key for each arm; only the best arms compete
    return np.where(is_best, noise, -1.0).argmax(axis=-1)


def epsilon_greedy_action(q_estimates: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """A_t = argmax_a Q_t(a) with probability 1 - epsilon, else an arm drawn uniformly (Sutton & Barto, 2018, sec. 2.2).

    q_estimates: (runs, k). Returns integer actions (runs,). Greedy ties are broken at random.
    """
    runs, k = q_estimates.shape
    greedy = argmax_random_tiebreak(q_estimates, rng)
    explore = rng.random(runs) < epsilon
    random_arm = rng.integers(0, k, size=runs)
    return np.where(explore, random_arm, greedy)


def update_estimate(q: np.ndarray, n: np.ndarray, action: np.ndarray, reward: np.ndarray):
    """Incremental sample average Q_{n+1} = Q_n + (R_n - Q_n) / n (Sutton & Barto, 2018, eq. 2.3).

    q, n: (runs, k) estimates and pull counts; action, reward: (runs,). Returns new (q, n); inputs are not modified.
    """
    q, n = q.copy(), n.copy()
    rows = np.arange(len(action))
    n[rows, action] += 1
    q[rows, action] += (reward - q[rows, action]) / n[rows, action]
    return q, n


def run_testbed(epsilon: float, runs: int = 2000, steps: int = 1000, k: int = 10, seed: int = 0,
                select=epsilon_greedy_action, update=update_estimate) -> tuple[np.ndarray, np.ndarray]:
    """Average reward and fraction of optimal actions per step over many runs (Sutton & Barto, 2018, fig. 2.2).

    ``select`` and ``update`` default to the reference functions; pass your own to test them.
    Returns (mean_reward (steps,), optimal_fraction (steps,)).
    """
    rng = np.random.default_rng(seed)
    q_true = make_testbed(runs, k, rng)
    best = q_true.argmax(axis=1)
    q, n = np.zeros((runs, k)), np.zeros((runs, k))
    mean_reward, optimal = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        action = np.asarray(select(q, epsilon, rng))
        reward = pull(q_true, action, rng)
        q, n = update(q, n, action, reward)
        mean_reward[t] = reward.mean()
        optimal[t] = (action == best).mean()
    return mean_reward, optimal
