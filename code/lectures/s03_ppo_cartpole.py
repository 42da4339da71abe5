"""Session 3 lecture script: the course's PPO (rl4lm.rl.ppo, after CleanRL) learns to balance CartPole-v1.

    python code/lectures/s03_ppo_cartpole.py
    python code/lectures/s03_ppo_cartpole.py --seed 1 --envs 16    # another run; the same seed repeats a run exactly
    python code/lectures/s03_ppo_cartpole.py --steps 5000          # stop early, before the pole stays up

CartPole pays 1 per step until the pole falls or 500 steps pass, so an episode's return is the number of steps it
lasted. Every 10 updates a line shows the environment step, the mean return of the last 20 finished episodes
(return_mean), and PPO's diagnostics approx_kl, clipfrac and explained_variance; training stops when return_mean
reaches 475 (CartPole-v1's threshold) or after --steps environment steps, and the last line says which. One update
collects 32 steps in each of the --envs environments (8: a batch of 256 transitions). With the defaults, seed 0
reaches 475 after 23,456 steps and the maximum mean of 500 after 23,696; seeds 0 to 4 need 23,456 to 30,960 steps to
reach 475, between 1 and 2 seconds of training each (measured on a 2-core AMD EPYC virtual machine shared with other
jobs). CartPole does not depend on the profile: both profiles run the same code. A bad value (--steps below one
update's batch, --envs 0) is one line on stderr and exit status 2.
"""
from __future__ import annotations

from rl4lm.labs import Parser, run_main

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds (gymnasium and numpy take any)
MAX_ENVS = 256
STEPS_PER_ENV = 32  # PPOConfig.num_steps: steps per environment per rollout, the course's fast CartPole setting


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--steps", type=int, default=100_000,
                     help="most environment steps, counted over all environments (at least one update's batch, "
                          f"--envs x {STEPS_PER_ENV}); training stops earlier at a mean return of 475")
    cli.add_argument("--envs", type=int, default=8,
                     help=f"CartPole environments stepped together (1 to {MAX_ENVS}); a batch is --envs x {STEPS_PER_ENV} steps")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the environments, the network's initial weights and the sampled actions (0 to {MAX_SEED})")
    return cli


def main(argv: list[str] | None = None) -> None:
    """Train PPO on CartPole-v1, print the mean return every 10 updates, and end with one line on the outcome."""
    cli = parser()
    args = cli.parse_args(argv)
    if not 1 <= args.envs <= MAX_ENVS:
        cli.error(f"--envs must be between 1 and {MAX_ENVS}, not {args.envs}")
    batch = args.envs * STEPS_PER_ENV
    if args.steps < batch:
        cli.error(f"--steps {args.steps} is less than one update's batch of --envs {args.envs} x {STEPS_PER_ENV} = {batch} steps")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    from rl4lm import profiles  # imported after the options are checked: --help and a refusal answer at once

    profiles.describe_profile()
    from rl4lm.rl.ppo import PPOConfig, train_ppo

    config = PPOConfig(num_envs=args.envs, num_steps=STEPS_PER_ENV, total_timesteps=args.steps, seed=args.seed)
    print(f"\nPPO on {config.env_id}: {args.envs} environments x {STEPS_PER_ENV} steps = {batch} transitions per update, "
          f"{config.update_epochs} epochs per update, at most {args.steps:,} steps, seed {args.seed}")
    result = train_ppo(config, progress=True)  # prints a line of metrics every 10 updates
    last = [episode_return for _, episode_return in result.episode_returns[-config.window:]]
    mean = sum(last) / len(last) if last else float("nan")
    if result.steps_to_threshold is not None:
        print(f"reached a mean return of {config.target_return:.0f} over the last {config.window} episodes after "
              f"{result.steps_to_threshold:,} steps ({result.seconds_to_threshold:.1f} s of training)")
    else:
        print(f"stopped after {result.steps:,} steps ({result.seconds:.1f} s of training): mean return {mean:.1f} over the "
              f"last {len(last)} episodes, below the threshold of {config.target_return:.0f}")


if __name__ == "__main__":
    run_main(main)
