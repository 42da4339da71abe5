"""Dynamic programming on a known tabular model: value iteration and policy iteration (Sutton & Barto, 2018, ch. 4).

The model is two arrays: ``P`` (S, A, S) with P[s, a, s'] = p(s' | s, a), and ``R`` (S, A) with the expected
reward r(s, a). A transition that ends the episode carries no successor mass, so the rows of P sum to at most one
and the value after it is zero. :func:`tables_from_gym` turns gymnasium's toy-text models (FrozenLake) into them.
"""
from __future__ import annotations

import numpy as np


def tables_from_gym(transitions) -> tuple[np.ndarray, np.ndarray]:
    """P (S, A, S) and R (S, A) from gymnasium's ``env.unwrapped.P[s][a] = [(prob, next_s, reward, terminated), ...]``.

    R(s, a) = sum over outcomes of prob * reward; a terminating outcome adds no mass to P (no bootstrap past it).
    """
    n_states, n_actions = len(transitions), len(transitions[0])
    P = np.zeros((n_states, n_actions, n_states))
    R = np.zeros((n_states, n_actions))
    for s in range(n_states):
        for a in range(n_actions):
            for prob, s2, reward, terminated in transitions[s][a]:
                R[s, a] += prob * reward
                if not terminated:
                    P[s, a, s2] += prob
    return P, R


def check_model(P, R, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """P and R as float arrays after checking shapes, probabilities and gamma; one sentence naming the bad argument."""
    P, R = np.asarray(P, dtype=np.float64), np.asarray(R, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P should have shape (states, actions, states), got {P.shape}.")
    if R.shape != P.shape[:2]:
        raise ValueError(f"R should have shape (states, actions) = {P.shape[:2]}, got {R.shape}.")
    if not (np.isfinite(P).all() and np.isfinite(R).all()):
        raise ValueError("P and R must hold finite numbers (no NaN or inf).")
    if (P < 0).any():
        s, a, s2 = np.argwhere(P < 0)[0]
        raise ValueError(f"P holds probabilities, but P[{s}, {a}, {s2}] = {P[s, a, s2]:g} is negative.")
    sums = P.sum(axis=-1)
    if (sums > 1 + 1e-6).any():
        s, a = np.argwhere(sums > 1 + 1e-6)[0]
        raise ValueError(f"P[{s}, {a}] sums to {sums[s, a]:.4g}; transition probabilities out of a state and action "
                         "sum to at most 1 (less only when the episode can end there).")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
    return P, R


def q_from_v(P: np.ndarray, R: np.ndarray, v: np.ndarray, gamma: float) -> np.ndarray:
    """Action values q(s, a) = r(s, a) + gamma sum_s' p(s' | s, a) v(s') (Sutton & Barto, 2018, eq. 4.6); (S, A)."""
    return R + gamma * P @ v  # (S, A, S) @ (S,) -> (S, A)


def bellman_optimality_residual(P, R, v, gamma: float) -> float:
    """max_s |max_a q(s, a) - v(s)|: zero exactly at the optimal values (Sutton & Barto, 2018, eq. 4.1)."""
    P, R = check_model(P, R, gamma)
    return float(np.abs(q_from_v(P, R, np.asarray(v, dtype=np.float64), gamma).max(axis=1) - v).max())


def value_iteration(P, R, gamma: float, tol: float = 1e-8, max_iterations: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """v <- max_a [r(s, a) + gamma sum_s' p(s'|s, a) v(s')] until the largest change is below tol (S&B, eq. 4.10).

    Returns the values v (S,) and the greedy actions (S,) as int64 (ties go to the lowest action index).
    """
    P, R = check_model(P, R, gamma)
    v = np.zeros(P.shape[0])
    for _ in range(max_iterations):
        new = q_from_v(P, R, v, gamma).max(axis=1)
        done = np.abs(new - v).max() < tol
        v = new
        if done:
            break
    return v, q_from_v(P, R, v, gamma).argmax(axis=1).astype(np.int64)


def evaluate_policy(P, R, policy, gamma: float, tol: float = 1e-10) -> np.ndarray:
    """v_pi of a deterministic policy (S,): solve (I - gamma P_pi) v = r_pi, or iterate eq. 4.5 when gamma = 1."""
    P, R = check_model(P, R, gamma)
    states = np.arange(P.shape[0])
    P_pi, r_pi = P[states, policy], R[states, policy]  # (S, S), (S,)
    if gamma < 1:
        return np.linalg.solve(np.eye(len(states)) - gamma * P_pi, r_pi)
    v = np.zeros(len(states))  # with gamma = 1 a policy that never ends is singular: iterate from zero instead
    for _ in range(1_000_000):
        new = r_pi + P_pi @ v
        if np.abs(new - v).max() < tol:
            return new
        v = new
    return v


def policy_iteration(P, R, gamma: float, max_iterations: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Alternate exact policy evaluation and greedy improvement until the policy is stable (S&B, sec. 4.3).

    Starts from action 0 everywhere; an action changes only if another is better by more than 1e-12, so ties cannot
    make it cycle. Returns v (S,) and the policy (S,) as int64.
    """
    P, R = check_model(P, R, gamma)
    policy = np.zeros(P.shape[0], dtype=np.int64)
    for _ in range(max_iterations):
        v = evaluate_policy(P, R, policy, gamma)
        q = q_from_v(P, R, v, gamma)  # (S, A)
        best = q.argmax(axis=1)
        improves = q[np.arange(len(policy)), best] > q[np.arange(len(policy)), policy] + 1e-12
        if not improves.any():
            return v, policy
        policy = np.where(improves, best, policy).astype(np.int64)
    return evaluate_policy(P, R, policy, gamma), policy
