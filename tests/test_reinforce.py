"""REINFORCE on CartPole (rl4lm.rl.reinforce): returns-to-go, an unbiased gradient estimate whose spread a baseline
lowers, learning above random in a short run, determinism, and a sign-flipped loss that does not learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rl4lm.rl import reinforce
from rl4lm.rl.policy_gradient import reinforce_loss

SHORT = reinforce.ReinforceConfig(updates=16, episodes_per_update=16, seed=0)


def episode(rewards: list[float]) -> reinforce.Episode:
    """An episode with the given rewards and dummy observations and actions."""
    n = len(rewards)
    return reinforce.Episode(torch.zeros(n, 4), torch.zeros(n, dtype=torch.long), torch.tensor(rewards, dtype=torch.float32))


def test_returns_to_go_discount_later_rewards():
    got = reinforce.episode_returns_to_go(episode([1.0, 0.0, 2.0]), 0.5)
    assert torch.allclose(got, torch.tensor([1.0 + 0.25 * 2.0, 0.5 * 2.0, 2.0]))
    assert torch.allclose(reinforce.episode_returns_to_go(episode([1.0] * 4), 1.0), torch.tensor([4.0, 3.0, 2.0, 1.0]))


def test_step_weights_total_return_discounted_steps_and_baseline():
    ep = episode([1.0, 1.0, 1.0])
    g = torch.tensor([1 + 0.9 + 0.81, 1 + 0.9, 1.0])
    assert torch.allclose(reinforce.step_weights(ep, 0.9), g)
    assert torch.allclose(reinforce.step_weights(ep, 0.9, reward_to_go=False), g[:1].expand(3))
    assert torch.allclose(reinforce.step_weights(ep, 0.9, discount_steps=True), g * torch.tensor([1.0, 0.9, 0.81]))
    assert torch.allclose(reinforce.step_weights(ep, 0.9, baseline=1.0), g - 1.0)
    assert torch.allclose(reinforce.step_weights(ep, 0.9, baseline=lambda obs: obs[:, 0] + 2.0), g - 2.0)


@pytest.mark.parametrize("bad, match", [(dict(rewards=[]), "empty"), (dict(gamma=1.5), "gamma")])
def test_bad_input_is_one_sentence(bad, match):
    with pytest.raises(ValueError, match=match):
        reinforce.episode_returns_to_go(episode(bad.get("rewards", [1.0])), bad.get("gamma", 0.9))


@pytest.fixture(scope="module")
def estimates():
    """Gradient estimates of one fixed (random-init) policy from the same 256 episodes, with and without baselines."""
    torch.manual_seed(0)
    policy = reinforce.CategoricalPolicy(4, 2)
    envs = reinforce.episode_envs(64)
    generator = torch.Generator().manual_seed(0)
    fit = reinforce.collect_episodes(policy, envs, seed=1, generator=generator)  # other episodes fit the baselines
    value = reinforce.ValueNetwork(4)
    reinforce.fit_value(value, fit, gamma=1.0, epochs=200)
    mean_return = float(np.mean([e.total_reward for e in fit]))
    episodes = [e for seed in (2, 3, 4, 5) for e in reinforce.collect_episodes(policy, envs, seed=seed, generator=generator)]
    settings = {"whole": dict(reward_to_go=False), "whole - constant": dict(baseline=mean_return, reward_to_go=False),
                "to-go": {}, "to-go - V(s)": dict(baseline=value)}
    return {name: reinforce.policy_gradient_estimates(policy, episodes, 4, gamma=1.0, **kw) for name, kw in settings.items()}


def test_gradient_estimates_have_one_row_per_batch(estimates):
    n_params = sum(p.numel() for p in reinforce.CategoricalPolicy(4, 2).parameters())
    assert estimates["whole"].shape == (64, n_params)


@pytest.mark.parametrize("plain, other", [("whole", "whole - constant"), ("to-go", "to-go - V(s)"), ("whole", "to-go")])
def test_a_baseline_or_the_return_to_go_keeps_the_mean_gradient_within_noise(estimates, plain, other):
    diff = estimates[plain] - estimates[other]  # (batches, params): zero in expectation if both are unbiased
    ratio = diff.mean(0).square().sum() / (diff.var(0).sum() / len(diff))  # about 1 without bias
    assert ratio < 4.0, f"mean gradients differ by {ratio:.1f} times their noise"
    cos = torch.nn.functional.cosine_similarity(estimates[plain].mean(0), estimates[other].mean(0), dim=0)
    assert cos > 0.9


@pytest.mark.parametrize("plain, other, at_most", [("whole", "whole - constant", 0.5), ("to-go", "to-go - V(s)", 0.7),
                                                   ("whole", "to-go", 0.5)])
def test_a_baseline_or_the_return_to_go_lowers_the_spread_of_the_estimates(estimates, plain, other, at_most):
    fraction = estimates[other].var(0).sum() / estimates[plain].var(0).sum()
    assert fraction < at_most, f"{other} keeps {fraction:.0%} of the total variance of {plain}"


def test_policy_gradient_estimates_rejects_a_batch_larger_than_the_episodes():
    with pytest.raises(ValueError, match="episodes_per_batch"):
        reinforce.policy_gradient_estimates(reinforce.CategoricalPolicy(4, 2), [episode([1.0])], 2)


@pytest.fixture(scope="module")
def short_run():
    return reinforce.train_reinforce_cartpole(SHORT)


def test_training_raises_the_return_above_random(short_run):
    history = short_run.history
    assert len(history) == SHORT.updates
    assert {"update", "step", "return_mean", "policy_loss", "value_loss", "entropy", "explained_variance"} <= set(history[0])
    first, last = history[0]["return_mean"], np.mean([h["return_mean"] for h in history[-3:]])
    assert first < 30  # a random policy balances CartPole for about 22 steps
    assert last > 45, f"mean return of the last 3 updates {last:.1f}"
    assert all(b["step"] > a["step"] for a, b in zip(history, history[1:]))


def test_the_same_seed_gives_the_same_run(short_run):
    again = reinforce.train_reinforce_cartpole(reinforce.ReinforceConfig(updates=3, episodes_per_update=16, seed=0))
    assert [h["return_mean"] for h in again.history] == [h["return_mean"] for h in short_run.history[:3]]
    assert [h["policy_loss"] for h in again.history] == [h["policy_loss"] for h in short_run.history[:3]]
    other = reinforce.train_reinforce_cartpole(reinforce.ReinforceConfig(updates=3, episodes_per_update=16, seed=1))
    assert [h["return_mean"] for h in other.history] != [h["return_mean"] for h in again.history]


def test_a_sign_flipped_loss_does_not_learn(short_run):
    def ascent_loss(logprobs, returns, baseline):
        """The REINFORCE loss with the wrong sign: it lowers the probability of good actions."""
        return -reinforce_loss(logprobs, returns, baseline)

    flipped = reinforce.train_reinforce_cartpole(SHORT, loss_fn=ascent_loss)
    last = np.mean([h["return_mean"] for h in flipped.history[-3:]])
    assert last < 25, f"the sign-flipped loss reached a mean return of {last:.1f}"
    assert last < np.mean([h["return_mean"] for h in short_run.history[-3:]]) - 20


def test_a_loss_that_is_not_a_scalar_is_one_sentence():
    with pytest.raises(ValueError, match="scalar"):
        reinforce.train_reinforce_cartpole(reinforce.ReinforceConfig(updates=1, episodes_per_update=2),
                                           loss_fn=lambda logprobs, returns, baseline: -(logprobs * returns))
