"""Gymnasium vector environments for the course's policy-gradient code (:mod:`.reinforce`, :mod:`.ppo`)."""
from __future__ import annotations

import gymnasium as gym


def vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped together: numpy-vectorised where gymnasium has it (CartPole), else one
    Python env per copy; the action space must be discrete (a categorical policy needs it)."""
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    except (gym.error.Error, ValueError):  # no numpy-vectorised version: copies stepped one after the other
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"env_id {env_id!r} has no discrete actions; a categorical policy needs them.")
    return envs
