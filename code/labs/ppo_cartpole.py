"""PPO on CartPole-v1 (Session 3, Homework 2): the course's PPO, until the last 20 episodes average a return of 475.

Vectorised gymnasium environments, GAE, the clipped surrogate, a value loss and minibatch epochs
(rl4lm.rl.ppo.train_ppo). A few seconds on 2 CPU cores; `make bench` compares it with stable-baselines3.

    python code/labs/ppo_cartpole.py --seed 0
    python code/labs/ppo_cartpole.py --total-timesteps 200000 --no-stop-at-target --num-envs 8

Prints step, return_mean (last 20 episodes), approx_kl, clipfrac and explained_variance every 10 updates and ends
with one JSON line: steps_to_threshold and seconds_to_threshold (null if the target was not reached), sps
(environment steps per second), steps and seconds in all, updates, episodes, return_mean (last 20 episodes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rl4lm import labs
from rl4lm.rl.ppo import PPOConfig, train_ppo

DEFAULT = PPOConfig()


@dataclass
class Args:
    """PPO on CartPole-v1 until the mean return of the last `window` episodes reaches `target_return`."""

    env_id: str = labs.arg(DEFAULT.env_id, "gymnasium environment with discrete actions")
    seed: int = labs.arg(DEFAULT.seed, "seed of torch, of the action sampling and of the environments")
    num_envs: int = labs.arg(DEFAULT.num_envs, "environments stepped together")
    num_steps: int = labs.arg(DEFAULT.num_steps, "steps per environment in each rollout")
    total_timesteps: int = labs.arg(DEFAULT.total_timesteps, "environment steps at most, over all environments")
    learning_rate: float = labs.arg(DEFAULT.learning_rate, "Adam's learning rate, annealed linearly to 0")
    gamma: float = labs.arg(DEFAULT.gamma, "discount factor")
    gae_lambda: float = labs.arg(DEFAULT.gae_lambda, "GAE's lambda")
    num_minibatches: int = labs.arg(DEFAULT.num_minibatches, "minibatches per epoch")
    update_epochs: int = labs.arg(DEFAULT.update_epochs, "passes over each rollout")
    clip_eps: float = labs.arg(DEFAULT.clip_eps, "PPO's clipping epsilon")
    ent_coef: float = labs.arg(DEFAULT.ent_coef, "weight of the entropy bonus")
    vf_coef: float = labs.arg(DEFAULT.vf_coef, "weight of the value loss")
    max_grad_norm: float = labs.arg(DEFAULT.max_grad_norm, "gradient norm clipping")
    target_return: float = labs.arg(DEFAULT.target_return, "stop when the mean return of the last --window episodes reaches this")
    window: int = labs.arg(DEFAULT.window, "episodes in the stopping criterion's mean")
    stop_at_target: bool = labs.arg(DEFAULT.stop_at_target, "stop at the target return (--no-stop-at-target: use the whole budget)")
    hidden_size: int = labs.arg(DEFAULT.hidden_size, "width of the two hidden layers of the actor and of the critic")
    reward_scale: float = labs.arg(DEFAULT.reward_scale, "the critic learns the returns of reward_scale * reward")


def main(argv: list[str] | None = None) -> dict:
    """Train, log every 10 updates, print the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    config = PPOConfig(**dataclasses.asdict(args))
    try:
        result = train_ppo(config, progress=True)
    except ValueError as error:  # a setting that cannot work: one line, no traceback
        raise SystemExit(f"ppo_cartpole.py: error: {error}") from None
    recent = [ret for _, ret in result.episode_returns[-config.window:]]
    return labs.finish(seed=config.seed, steps_to_threshold=result.steps_to_threshold,
                       seconds_to_threshold=None if result.seconds_to_threshold is None else round(result.seconds_to_threshold, 3),
                       sps=round(result.sps), steps=result.steps, seconds=round(result.seconds, 3), updates=len(result.history),
                       episodes=len(result.episode_returns), return_mean=round(sum(recent) / len(recent), 1) if recent else None)


if __name__ == "__main__":
    labs.run_main(main)
