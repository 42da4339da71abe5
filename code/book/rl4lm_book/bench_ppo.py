"""``make bench``: the course's PPO against stable-baselines3's on CartPole-v1, wall time to a mean return of 475.

Both stop when the mean return of the last 20 finished episodes first reaches 475; the time runs from the start of
training (environments and model built: creating a process's first torch optimizer imports ``torch._dynamo``, which
takes seconds) to that episode's end. The course runs ``code/labs/ppo_cartpole.py --seed N``; stable-baselines3
2.9.2 runs PPO with the tuned CartPole-v1 settings of rl-baselines3-zoo (hyperparams/ppo.yml: 8 environments,
n_steps 32, batch 256, 20 epochs, gamma 0.98, gae_lambda 0.8, ent_coef 0, learning rate and clip range annealed
linearly from 1e-3 and 0.2, budget 1e5 steps), its episode returns read by a callback from the Monitor wrapper's
``info["episode"]``. SB3 runs on one torch thread, as the course does (``--sb3-threads 0``: torch's default, one per
core, as the zoo runs it; on 2 shared cores that is the slower choice, many times slower while another process is
busy). Each run is a fresh process; the order alternates between seeds so that the load of the machine falls on both
alike. Steps count environment steps over all environments (the course's include the one reset step per episode of
gymnasium's vector environments). Usage: ``python -m rl4lm_book.bench_ppo [--seeds 0 1 2]``. SB3 is a benchmark-only
dependency: ``pip install -r requirements-bench.txt``.
"""
from __future__ import annotations

import argparse
import collections
import functools
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time

from .book import ROOT

ZOO_CARTPOLE = dict(n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                    learning_rate=1e-3, clip_range=0.2)  # rl-baselines3-zoo hyperparams/ppo.yml; the last two annealed linearly to 0
TARGET_RETURN, WINDOW = 475.0, 20
INSTALL_HINT = "stable-baselines3 is not installed; to compare with it: pip install -r requirements-bench.txt"


def sb3_available() -> bool:
    """Whether stable-baselines3 can be imported."""
    return importlib.util.find_spec("stable_baselines3") is not None


def sb3_ppo(seed: int, threads: int = 1) -> dict:
    """Train SB3's PPO with the zoo's CartPole-v1 settings until the last 20 episodes average 475 (in this process).

    ``threads``: torch's intra-op threads (0: torch's default, one per core).
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.utils import LinearSchedule

    class StopAtTarget(BaseCallback):
        """Reads each finished episode's return from the Monitor's info and stops training at the target."""

        def __init__(self, start: float):
            super().__init__()
            self.start, self.recent = start, collections.deque(maxlen=WINDOW)
            self.steps_to_threshold = self.seconds_to_threshold = None

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.recent.append(info["episode"]["r"])
                    if len(self.recent) == WINDOW and sum(self.recent) / WINDOW >= TARGET_RETURN:
                        self.steps_to_threshold, self.seconds_to_threshold = self.num_timesteps, time.perf_counter() - self.start
                        return False
            return True

    zoo = ZOO_CARTPOLE
    if threads:
        torch.set_num_threads(threads)
    envs = make_vec_env("CartPole-v1", n_envs=zoo["n_envs"], seed=seed)  # DummyVecEnv of Monitor-wrapped envs, as the zoo
    model = PPO("MlpPolicy", envs, n_steps=zoo["n_steps"], batch_size=zoo["batch_size"], gae_lambda=zoo["gae_lambda"],
                gamma=zoo["gamma"], n_epochs=zoo["n_epochs"], ent_coef=zoo["ent_coef"],
                learning_rate=LinearSchedule(zoo["learning_rate"], 0.0, 1.0), clip_range=LinearSchedule(zoo["clip_range"], 0.0, 1.0),
                seed=seed, device="cpu", verbose=0)
    start = time.perf_counter()  # training time, as the course's: from learn(), after the model is built
    callback = StopAtTarget(start)
    model.learn(total_timesteps=zoo["n_timesteps"], callback=callback)
    seconds = time.perf_counter() - start
    return dict(seed=seed, threads=torch.get_num_threads(), steps_to_threshold=callback.steps_to_threshold,
                seconds_to_threshold=None if callback.seconds_to_threshold is None else round(callback.seconds_to_threshold, 3),
                sps=round(model.num_timesteps / seconds), steps=model.num_timesteps, seconds=round(seconds, 3))


def last_json_line(command: list[str]) -> dict:
    """Run ``command`` in a fresh process and parse the JSON object on its last line of output."""
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def course_run(seed: int) -> dict:
    """The course's lab, ``code/labs/ppo_cartpole.py --seed seed``, in a fresh process."""
    return last_json_line([sys.executable, str(ROOT / "code" / "labs" / "ppo_cartpole.py"), "--seed", str(seed)])


def sb3_run(seed: int, threads: int = 1) -> dict:
    """:func:`sb3_ppo` in a fresh process."""
    return last_json_line([sys.executable, "-m", "rl4lm_book.bench_ppo", "--sb3-seed", str(seed), "--sb3-threads", str(threads)])


def compare(seeds=(0, 1, 2), sb3_threads: int = 1) -> list[dict]:
    """Course and SB3 for each seed, in fresh processes, alternating which goes first; prints the table and returns its rows.

    Each row: seed, course_seconds, course_steps, sb3_seconds, sb3_steps (None where the target was not reached).
    Without stable-baselines3, prints how to install it and returns an empty list.
    """
    if not sb3_available():
        print(INSTALL_HINT)
        return []
    rows = []
    print(f"PPO on CartPole-v1 to a mean return of {TARGET_RETURN:g} over the last {WINDOW} episodes; cores={os.cpu_count()}  "
          f"load average {os.getloadavg()[0]:.1f} before")
    print(f"{'seed':>4} {'course s':>9} {'steps':>7} {'SB3 s':>9} {'steps':>7}")
    for i, seed in enumerate(seeds):
        sb3_seed = functools.partial(sb3_run, threads=sb3_threads)
        runs = (course_run, sb3_seed) if i % 2 == 0 else (sb3_seed, course_run)
        results = {run: run(seed) for run in runs}
        course, sb3 = results[course_run], results[sb3_seed]
        row = dict(seed=seed, course_seconds=course["seconds_to_threshold"], course_steps=course["steps_to_threshold"],
                   sb3_seconds=sb3["seconds_to_threshold"], sb3_steps=sb3["steps_to_threshold"])
        rows.append(row)
        print(f"{seed:>4} {fmt(row['course_seconds'], '9.2f')} {fmt(row['course_steps'], '7d')} {fmt(row['sb3_seconds'], '9.2f')} "
              f"{fmt(row['sb3_steps'], '7d')}", flush=True)
    medians = {key: median_or_inf(row[key] for row in rows) for key in ("course_seconds", "course_steps", "sb3_seconds", "sb3_steps")}
    print(f"{'med':>4} {medians['course_seconds']:9.2f} {medians['course_steps']:7.0f} {medians['sb3_seconds']:9.2f} {medians['sb3_steps']:7.0f}")
    print(f"course / SB3 wall time (medians): {medians['course_seconds'] / medians['sb3_seconds']:.2f}  (goal <= 0.33); "
          f"steps: {medians['course_steps'] / medians['sb3_steps']:.2f}; load average {os.getloadavg()[0]:.1f} after")
    return rows


def fmt(value, spec: str) -> str:
    """``value`` formatted with ``spec``, or '-' (target not reached) right-aligned in the same width."""
    width = int(spec.split(".")[0].rstrip("dfs"))
    return f"{'-':>{width}}" if value is None else format(value, spec)


def median_or_inf(values) -> float:
    """Median, counting a run that never reached the target (None) as infinitely slow."""
    return statistics.median(math.inf if value is None else value for value in values)


def main(argv: list[str] | None = None) -> None:
    """Compare the course's PPO with SB3's on the given seeds (or run one SB3 seed, for :func:`sb3_run`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run, each for both (default: 0 1 2)")
    parser.add_argument("--sb3-threads", type=int, default=1, help="torch threads of SB3's runs, 0 for torch's default (default: 1)")
    parser.add_argument("--sb3-seed", type=int, default=None, help=argparse.SUPPRESS)  # internal: one SB3 run, JSON to stdout
    args = parser.parse_args(argv)
    if args.sb3_seed is not None:
        print(json.dumps(sb3_ppo(args.sb3_seed, args.sb3_threads)), flush=True)
        return
    compare(tuple(args.seeds), args.sb3_threads)


if __name__ == "__main__":
    main()
