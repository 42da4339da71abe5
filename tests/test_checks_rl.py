"""The reinforcement-learning checkers accept the reference and reject planted bugs with a helpful sentence."""
from __future__ import annotations

import numpy as np

from helpers import rejects, student_copy
from rl4lm import checks
from rl4lm.rl import bandits, mdp

choose = student_copy(bandits.epsilon_greedy_action)
update = student_copy(bandits.update_estimate)
discount = student_copy(mdp.discounted_return)


# --------------------------------------------------------------------------- bandits
def test_epsilon_greedy_bugs():
    def never_explores(q, epsilon, rng):
        return bandits.argmax_random_tiebreak(q, rng)

    def first_argmax(q, epsilon, rng):
        explore = rng.random(len(q)) < epsilon
        return np.where(explore, rng.integers(0, q.shape[1], len(q)), q.argmax(1))

    def global_numpy_random(q, epsilon, rng):
        return choose(q, epsilon, np.random.default_rng())

    def explores_only_others(q, epsilon, rng):
        greedy = bandits.argmax_random_tiebreak(q, rng)
        other = (greedy + rng.integers(1, q.shape[1], len(q))) % q.shape[1]
        return np.where(rng.random(len(q)) < epsilon, other, greedy)

    def returns_list(q, epsilon, rng):
        return choose(q, epsilon, rng).tolist()

    rejects(checks.epsilon_greedy_action, never_explores, "explore with probability epsilon")
    rejects(checks.epsilon_greedy_action, first_argmax, "break ties at random")
    rejects(checks.epsilon_greedy_action, global_numpy_random, "rng argument")
    rejects(checks.epsilon_greedy_action, explores_only_others, "any of the k arms")
    rejects(checks.epsilon_greedy_action, returns_list, "numpy array")


def test_update_estimate_bugs():
    def constant_step(q, n, action, reward):
        q, n = q.copy(), n.copy()
        rows = np.arange(len(action))
        n[rows, action] += 1
        q[rows, action] += 0.1 * (reward - q[rows, action])
        return q, n

    def divides_before_increment(q, n, action, reward):
        q, n = q.copy(), n.copy()
        rows = np.arange(len(action))
        q[rows, action] += (reward - q[rows, action]) / np.maximum(n[rows, action], 1)
        n[rows, action] += 1
        return q, n

    def divides_by_n_plus_one(q, n, action, reward):
        q, n = q.copy(), n.copy()
        rows = np.arange(len(action))
        n[rows, action] += 1
        q[rows, action] += (reward - q[rows, action]) / (n[rows, action] + 1)
        return q, n

    def keeps_the_latest_reward(q, n, action, reward):
        q, n = q.copy(), n.copy()
        rows = np.arange(len(action))
        n[rows, action] += 1
        q[rows, action] = reward
        return q, n

    def in_place_no_return(q, n, action, reward):
        q[...], n[...] = update(q, n, action, reward)

    def first_run_only(q, n, action, reward):
        q, n = q.copy(), n.copy()
        n[0, action[0]] += 1
        q[0, action[0]] += (reward[0] - q[0, action[0]]) / n[0, action[0]]
        return q, n

    message = rejects(checks.update_estimate, constant_step, "constant step size 0.1", "1/N(a)")
    assert "increment" not in message  # the old hint: the count was right, the step size was not
    rejects(checks.update_estimate, divides_before_increment, "average reward", "before counting this pull", "1/N(a)")
    rejects(checks.update_estimate, divides_by_n_plus_one, "half the reward", "N(a) + 1")
    rejects(checks.update_estimate, keeps_the_latest_reward, "constant step size 1")
    rejects(checks.update_estimate, in_place_no_return, "(q, n)")
    rejects(checks.update_estimate, first_run_only, "n should be 1 for those arms only")


# --------------------------------------------------------------------------- returns
def test_discounted_return_bugs():
    def gamma_k_plus_one(rewards, gamma):
        return sum(gamma ** (k + 1) * r for k, r in enumerate(rewards))

    def reversed_discount(rewards, gamma):
        rewards = list(rewards)
        return sum(gamma ** (len(rewards) - 1 - k) * r for k, r in enumerate(rewards))

    def returns_all(rewards, gamma):
        return mdp.returns_to_go(rewards, gamma)

    rejects(checks.discounted_return, gamma_k_plus_one, "gamma times too small", "gamma^0 = 1")
    rejects(checks.discounted_return, reversed_discount, "early rewards")
    def returns_a_tensor(rewards, gamma):
        import torch

        return torch.tensor(discount(rewards, gamma))

    rejects(checks.discounted_return, returns_all, "one number", "G_0", "returns 3 values (a numpy array)")
    rejects(checks.discounted_return, returns_a_tensor, "a Python float", "not a torch.Tensor")
