"""The progress bar of the course's training loops (REINFORCE, PPO, DPO and GRPO on a language model)."""
from __future__ import annotations


def progress_bar(steps: int, show: bool, desc: str):
    """A tqdm progress bar over ``steps`` training steps, named ``desc``, when ``show``; else None (the loops then skip it)."""
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=desc, unit="step")
