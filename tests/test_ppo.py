"""The course's PPO on CartPole-v1 (rl4lm.rl.ppo, code/labs/ppo_cartpole.py): short runs only; timings are never asserted."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import run_script
from rl4lm.rl import policy_gradient
from rl4lm.rl.ppo import PPOConfig, PPOResult, train_ppo

SHORT = dict(total_timesteps=8192, stop_at_target=False)  # 32 updates of the default 8 x 32 rollout, about a second


def recent_mean(result: PPOResult, window: int = 20) -> float:
    """Mean return of the last ``window`` finished episodes."""
    returns = [ret for _, ret in result.episode_returns[-window:]]
    return sum(returns) / len(returns)


@pytest.fixture(scope="module")
def short_run() -> PPOResult:
    """The default settings for 8192 environment steps, seed 0."""
    return train_ppo(PPOConfig(seed=0, **SHORT))


def test_gae_gets_the_rollout_as_float32_tensors_of_shape_steps_by_envs():
    calls = []

    def spy(rewards, values, dones, last_value, gamma, lam):
        calls.append(dict(shapes=[tuple(x.shape) for x in (rewards, values, dones, last_value)],
                          dtypes={x.dtype for x in (rewards, values, dones, last_value)}, devices={x.device.type for x in (rewards, values, dones)},
                          gamma=gamma, lam=lam, dones=dones.clone()))
        return policy_gradient.gae(rewards, values, dones, last_value, gamma, lam)

    train_ppo(PPOConfig(num_envs=4, num_steps=64, total_timesteps=4 * 64 * 3, gamma=0.97, gae_lambda=0.9, stop_at_target=False), gae_fn=spy)
    assert len(calls) == 3
    for call in calls:
        assert call["shapes"] == [(64, 4), (64, 4), (64, 4), (4,)]
        assert call["dtypes"] == {torch.float32} and call["devices"] == {"cpu"}
        assert (call["gamma"], call["lam"]) == (0.97, 0.9)
        assert set(call["dones"].unique().tolist()) <= {0.0, 1.0}
    assert sum(call["dones"].sum() for call in calls) > 0, "a random CartPole policy ends an episode within 3 x 64 steps"


def test_an_episode_cut_by_the_time_limit_is_bootstrapped_and_the_reset_step_earns_nothing(monkeypatch):
    """With a 5-step limit every episode is truncated (CartPole cannot fall in 5 steps): its last reward gets + gamma V(s_T)."""
    import gymnasium as gym

    from rl4lm.rl import ppo

    monkeypatch.setattr(ppo, "make_envs", lambda env_id, num_envs: gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                                                                   max_episode_steps=5))
    seen = []

    def spy(rewards, values, dones, last_value, gamma, lam):
        seen.append((rewards.clone(), dones.clone()))
        return policy_gradient.gae(rewards, values, dones, last_value, gamma, lam)

    train_ppo(PPOConfig(num_envs=3, num_steps=12, total_timesteps=36, stop_at_target=False), gae_fn=spy)
    (rewards, dones), scale = seen[0], PPOConfig().reward_scale
    assert dones[4].tolist() == [1, 1, 1] and dones[10].tolist() == [1, 1, 1] and dones.sum() == 6
    assert (rewards[[4, 10]] != scale).all(), "the last reward of a truncated episode includes gamma * V(s_T)"
    assert (rewards[[5, 11]] == 0).all(), "the step after an episode's end only resets the environment"
    assert (rewards[[0, 1, 2, 3, 6, 7, 8, 9]] == scale).all()


def test_a_short_run_learns_well_beyond_a_random_policy(short_run):
    first = [ret for _, ret in short_run.episode_returns[:20]]
    assert sum(first) / 20 < 40, "the first episodes come from a near-uniform policy (about 22 steps)"
    assert recent_mean(short_run) > 60, f"after 8192 steps the last 20 episodes average {recent_mean(short_run):.1f}"
    assert short_run.steps_to_threshold is None and short_run.steps == 8192
    assert len(short_run.history) == 32


def test_history_rows_hold_ppo_diagnostics(short_run):
    keys = {"step", "seconds", "return_mean", "approx_kl", "clipfrac", "explained_variance", "value_loss", "entropy", "policy_loss"}
    assert all(keys <= set(row) for row in short_run.history)
    steps = [row["step"] for row in short_run.history]
    assert steps == sorted(steps) and steps[0] == 256
    assert all(row["approx_kl"] >= 0 and 0 <= row["clipfrac"] <= 1 and row["entropy"] <= 0.6932 for row in short_run.history)
    assert short_run.history[-1]["entropy"] < short_run.history[0]["entropy"], "the policy becomes less random as it learns"


def test_same_seed_same_run_other_seed_other_run(short_run):
    again = train_ppo(PPOConfig(seed=0, **SHORT))
    other = train_ppo(PPOConfig(seed=1, **SHORT))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(again.history) == strip(short_run.history)
    assert again.episode_returns == short_run.episode_returns
    assert strip(other.history[:3]) != strip(again.history[:3])


def test_a_sign_flipped_clipped_loss_does_not_learn(short_run):
    flipped = train_ppo(PPOConfig(seed=0, **SHORT), loss_fn=lambda *args: -policy_gradient.ppo_clip_loss(*args))
    assert recent_mean(flipped) < 20 < recent_mean(short_run), "ascending the loss makes episodes shorter than a random policy's"


def test_training_stops_when_the_recent_mean_return_reaches_the_target():
    result = train_ppo(PPOConfig(seed=0, target_return=30.0, window=5))
    assert result.steps_to_threshold is not None and result.steps == result.steps_to_threshold < 8192
    assert sum(ret for _, ret in result.episode_returns[-5:]) / 5 >= 30.0
    assert 0 < result.seconds_to_threshold <= result.seconds and result.sps > 0


def test_train_ppo_restores_the_number_of_torch_threads():
    before = torch.get_num_threads()
    train_ppo(PPOConfig(num_envs=2, num_steps=8, total_timesteps=16, stop_at_target=False))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("setting, message", [
    (dict(num_envs=0), "num_envs must be at least 1"),
    (dict(gamma=1.5), "gamma must lie in [0, 1]"),
    (dict(num_envs=2, num_steps=2, num_minibatches=8), "num_minibatches (8) exceeds the batch"),
    (dict(clip_eps=0.0), "clip_eps must be positive"),
])
def test_a_bad_setting_is_one_sentence_naming_it(setting, message):
    with pytest.raises(ValueError) as error:
        train_ppo(PPOConfig(**setting))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_lab_logs_metrics_and_ends_with_one_json_line():
    printed = run_script("code/labs/ppo_cartpole.py", "--total-timesteps", "5120", "--seed", "2").stdout
    lines = printed.strip().splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["step", "2560"], ["step", "5120"]], "a line every 10 updates of 256 steps"
    assert all(name in lines[0] for name in ("return_mean", "approx_kl", "clipfrac", "explained_variance"))
    results = json.loads(lines[-1])
    assert {"steps_to_threshold", "seconds_to_threshold", "sps", "steps", "seconds", "return_mean"} <= set(results)
    assert results["steps_to_threshold"] is None and results["seconds_to_threshold"] is None and results["steps"] == 5120


def test_lab_refuses_a_bad_setting_in_one_line():
    out = run_script("code/labs/ppo_cartpole.py", "--num-envs", "0", check=False)
    assert out.returncode != 0 and "num_envs must be at least 1" in out.stderr and "Traceback" not in out.stderr
