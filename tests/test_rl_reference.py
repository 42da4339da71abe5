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


# --------------------------------------------------------------------------- dynamic programming (Session 3, Homework 2)
def _frozen_lake_tables():
    import gymnasium as gym

    from rl4lm.rl import dp

    env = gym.make("FrozenLake-v1")
    return env, *dp.tables_from_gym(env.unwrapped.P)


def test_value_and_policy_iteration_agree_on_frozen_lake():
    from rl4lm.rl import dp

    _, P, R = _frozen_lake_tables()
    assert P.shape == (16, 4, 16) and R.shape == (16, 4)
    assert P.sum(-1).max() <= 1 + 1e-12 and P[[5, 15]].sum() == 0  # a hole and the goal have no successor mass
    for gamma in (0.0, 0.9, 0.99, 1.0):
        v, policy = dp.value_iteration(P, R, gamma)
        v_pi, policy_pi = dp.policy_iteration(P, R, gamma)
        assert policy.dtype == np.int64 and policy_pi.dtype == np.int64
        np.testing.assert_allclose(v, v_pi, atol=1e-6)
        assert dp.bellman_optimality_residual(P, R, v, gamma) < 1e-7
        np.testing.assert_allclose(dp.evaluate_policy(P, R, policy, gamma), v_pi, atol=1e-6)  # greedy w.r.t. v is optimal
    v1, _ = dp.value_iteration(P, R, 1.0)
    assert v1[0] == pytest.approx(14 / 17, abs=1e-6)  # the known success probability of the slippery 4x4 lake


def test_value_iteration_policy_succeeds_in_gymnasium_as_often_as_its_value_says():
    """Acting greedily in gymnasium's own FrozenLake reaches the goal about v*(0) of the time (gamma = 1)."""
    import gymnasium as gym

    from rl4lm.rl import dp, td

    _, P, R = _frozen_lake_tables()
    v, policy = dp.value_iteration(P, R, 1.0)
    env = gym.make("FrozenLake-v1", max_episode_steps=10_000)  # gamma = 1 has no horizon: lift the 100-step limit
    rate = td.greedy_success_rate(env, policy, episodes=2000, seed=0)
    assert abs(rate - v[0]) < 3 * math.sqrt(v[0] * (1 - v[0]) / 2000)


def test_dp_rejects_bad_models_with_one_sentence():
    from rl4lm.rl import dp

    _, P, R = _frozen_lake_tables()
    bad = P.copy()
    bad[3, 1, 2] = -0.1
    cases = [(lambda: dp.value_iteration(bad, R, 0.9), "P[3, 1, 2]"),
             (lambda: dp.value_iteration(P * 2, R, 0.9), "sums to"),
             (lambda: dp.value_iteration(P, R, 1.5), "gamma must lie in [0, 1]"),
             (lambda: dp.policy_iteration(P, R, -0.1), "gamma"),
             (lambda: dp.value_iteration(P, R[:, :2], 0.9), "R should have shape")]
    for call, fragment in cases:
        with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            call()


def test_q_learning_approaches_the_value_iteration_optimum():
    import gymnasium as gym

    from rl4lm.rl import dp, td

    env = gym.make("FrozenLake-v1")
    P, R = dp.tables_from_gym(env.unwrapped.P)
    _, optimal = dp.value_iteration(P, R, 0.99)
    q, returns = td.q_learning(env, episodes=6000, alpha=0.1, gamma=0.99, epsilon=0.1, seed=0)
    assert returns[:500].mean() < returns[-1000:].mean()
    assert td.greedy_success_rate(env, q.argmax(1), 500) > td.greedy_success_rate(env, optimal, 500) - 0.15


# --------------------------------------------------------------------------- policy-gradient pieces
def _gae_by_definition(rewards, values, dones, last_value, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, summed explicitly up to the end of each episode (Schulman et al., 2016, eq. 16)."""
    T, N = rewards.shape
    v_next = np.vstack([values[1:], last_value[None]])
    delta = rewards + gamma * v_next * (1 - dones) - values
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            for k in range(t, T):
                adv[t, n] += (gamma * lam) ** (k - t) * delta[k, n]
                if dones[k, n]:
                    break
    return adv


def test_gae_matches_its_definition_and_limits():
    import torch

    from rl4lm.rl import mdp
    from rl4lm.rl.policy_gradient import gae

    rng = np.random.default_rng(0)
    T, N = 12, 3
    rewards, values, last = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=N)
    dones = (rng.random((T, N)) < 0.2).astype(float)
    for gamma, lam in [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.0, 0.5)]:
        adv, ret = gae(*(torch.tensor(x, dtype=torch.float32) for x in (rewards, values, dones, last)), gamma, lam)
        np.testing.assert_allclose(adv.numpy(), _gae_by_definition(rewards, values, dones, last, gamma, lam), atol=1e-5)
        np.testing.assert_allclose(ret.numpy(), adv.numpy() + values, atol=1e-6)
    # lambda = 1 with a finished episode: the advantage is the Monte Carlo return minus the value
    r = np.array([1.0, 0.0, 2.0, 1.0])
    adv, _ = gae(torch.tensor(r[:, None]), torch.zeros(4, 1, dtype=torch.float64), torch.tensor([[0.0], [0], [0], [1]]),
                 torch.tensor([5.0], dtype=torch.float64), 0.9, 1.0)
    np.testing.assert_allclose(adv[:, 0].numpy(), mdp.returns_to_go(r, 0.9))


def test_ppo_clip_loss_matches_the_paper_and_clips_the_gradient():
    import torch

    from rl4lm.rl.policy_gradient import approx_kl, clip_fraction, ppo_clip_loss

    logp_old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    logp_new = torch.log(torch.tensor([0.75, 0.75, 0.25, 0.25])).requires_grad_()  # ratios 1.5, 1.5, 0.5, 0.5
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss = ppo_clip_loss(logp_new, logp_old, advantages, 0.2)
    # min(rho A, clip(rho) A): 1.2, -1.5, 0.5, -0.8
    assert loss.item() == pytest.approx(-(1.2 - 1.5 + 0.5 - 0.8) / 4)
    loss.backward()
    grad = logp_new.grad
    assert grad[0] == 0 and grad[3] == 0  # clipped terms carry no gradient
    assert grad[1] == pytest.approx(1.5 / 4) and grad[2] == pytest.approx(-0.5 / 4)
    assert clip_fraction(logp_new.detach(), logp_old, 0.2).item() == 1.0
    assert approx_kl(logp_old, logp_old).item() == 0.0 and approx_kl(logp_new.detach(), logp_old).item() > 0


def test_reinforce_loss_detaches_the_baseline_and_rejects_empty_episodes():
    import torch

    from rl4lm.rl.policy_gradient import reinforce_loss

    logprobs = torch.tensor([-0.5, -1.0, -2.0], requires_grad=True)
    baseline = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    loss = reinforce_loss(logprobs, torch.tensor([1.0, 0.0, 2.0]), baseline)
    assert loss.item() == pytest.approx(-(-0.5 * 0.5 + -1.0 * -0.5 + -2.0 * 1.5) / 3)
    loss.backward()
    assert baseline.grad is None
    with pytest.raises(ValueError, match="empty"):
        reinforce_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="returns has shape"):
        reinforce_loss(torch.zeros(3), torch.zeros(2), torch.zeros(3))
