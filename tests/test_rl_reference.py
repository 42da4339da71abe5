"""The reinforcement-learning reference code agrees with Sutton & Barto and with gymnasium (bandits, returns, values)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rl4lm.rl import bandits, mdp


def test_bandit_reproduces_epsilon_greedy_ordering():
    """Sutton & Barto (2018), Fig. 2.2: after 1000 steps eps=0.1 beats eps=0.01, which beats greedy."""
    results = {eps: bandits.run_testbed(eps, runs=2000, steps=1000, seed=0) for eps in (0.0, 0.01, 0.1)}
    reward = {eps: r[-100:].mean() for eps, (r, _) in results.items()}
    optimal = {eps: o[-100:].mean() for eps, (_, o) in results.items()}
    assert reward[0.1] > reward[0.01] > reward[0.0]
    assert optimal[0.1] > optimal[0.01] > optimal[0.0]
    assert 1.25 < reward[0.1] < 1.5 and 0.75 < optimal[0.1] < 0.9  # the book's curves end near 1.4 and 80 %
    assert 0.9 < reward[0.0] < 1.15 and 0.3 < optimal[0.0] < 0.42  # greedy plateaus near 1.0 and a third
    assert abs(results[0.0][0][0]) < 0.1  # the first pull is a random arm: about nothing on average


def test_argmax_tiebreak_is_uniform():
    counts = np.bincount(bandits.argmax_random_tiebreak(np.zeros((30000, 3)), np.random.default_rng(0)), minlength=3)
    assert np.abs(counts / 30000 - 1 / 3).max() < 0.01


def test_discounted_return_by_hand():
    assert mdp.discounted_return([1, 2, 3], 0.5) == 1 + 0.5 * 2 + 0.25 * 3
    assert mdp.discounted_return([], 0.9) == 0.0
    assert mdp.discounted_return([0, 0, 1], 0.9) == pytest.approx(0.81)
    rewards = np.random.default_rng(0).normal(size=30)
    togo = mdp.returns_to_go(rewards, 0.97)
    assert togo[0] == pytest.approx(mdp.discounted_return(rewards, 0.97))
    assert togo[5] == pytest.approx(mdp.discounted_return(rewards[5:], 0.97))
    np.testing.assert_allclose(togo[:-1], rewards[:-1] + 0.97 * togo[1:])


def test_monte_carlo_agrees_with_policy_evaluation():
    import gymnasium as gym

    env = gym.make("FrozenLake-v1")
    n_states, n_actions = env.observation_space.n, env.action_space.n
    exact = mdp.policy_evaluation(env.unwrapped.P, np.full((n_states, n_actions), 1 / n_actions), 0.95)[0]
    returns = mdp.monte_carlo_returns(env, lambda s: env.action_space.sample(), 0.95, episodes=4000, seed=0)
    assert abs(returns.mean() - exact) < 4 * returns.std() / math.sqrt(len(returns))
