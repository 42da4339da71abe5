"""Checkers of the reinforcement-learning exercises: bandits and returns (Homework 1).

These exercises work on numpy arrays and Python numbers, which have no device: there is no meta-device check here.
Each checker computes what it expects first and calls the student's function on copies of its inputs.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..rl import bandits, mdp
from ._core import CheckFailed, _call, _fmt, exercise


# --------------------------------------------------------------------------- 5. bandits
def _share(actions: np.ndarray, arm: int) -> float:
    """Fraction of runs that chose ``arm``."""
    return float((np.asarray(actions) == arm).mean())


@exercise(reference=bandits.epsilon_greedy_action, probe=lambda: (np.zeros((1, 2)), 0.0, np.random.default_rng(0)))
def epsilon_greedy_action(fn):
    """Statistical checks with fixed seeds: greedy share 1 - eps + eps/k, uniform exploration, random tie-breaking."""
    runs = 20000
    rng = np.random.default_rng(0)
    q = rng.normal(size=(runs, 5))
    greedy_arm = q.argmax(1)
    out = _call(fn, q, 0.1, np.random.default_rng(1))
    if not isinstance(out, np.ndarray) or out.shape != (runs,):
        raise CheckFailed(f"it should return a numpy array of {runs} actions (one per run) for estimates of shape {_fmt(q.shape)}, "
                          f"got {type(out).__name__} of shape {_fmt(getattr(out, 'shape', ()))}.")
    if not np.issubdtype(out.dtype, np.integer) or out.min() < 0 or out.max() >= 5:
        raise CheckFailed("actions should be integers between 0 and k - 1.")
    if not np.array_equal(out, _call(fn, q, 0.1, np.random.default_rng(1))):
        raise CheckFailed("two calls with the same seeded rng gave different actions; draw all randomness from the rng argument.")
    greedy = _call(fn, q, 0.0, np.random.default_rng(2))
    if (greedy != greedy_arm).any():
        raise CheckFailed(f"with epsilon = 0 you chose a non-greedy arm in {(greedy != greedy_arm).mean():.1%} of runs; "
                          "without exploration always take argmax Q.")
    tied = np.tile([1.0, 1.0, 0.0, 0.0], (runs, 1))
    choice = np.asarray(_call(fn, tied, 0.0, np.random.default_rng(3)))
    if np.isin(choice, [2, 3]).any():
        raise CheckFailed("with estimates [1, 1, 0, 0] and epsilon = 0 you sometimes chose arm 2 or 3; pick only among the best arms.")
    if abs(_share(choice, 0) - 0.5) > 0.02:
        raise CheckFailed(f"with estimates [1, 1, 0, 0] and epsilon = 0 you chose arm 0 in {_share(choice, 0):.0%} of runs instead of "
                          "about 50%; break ties at random (np.argmax always returns the first best arm).")
    for eps in (0.2, 1.0):
        acts = np.asarray(_call(fn, q, eps, np.random.default_rng(4)))
        share_greedy = float((acts == greedy_arm).mean())
        expected = 1 - eps + eps / 5
        if abs(share_greedy - expected) > 0.015:
            raise CheckFailed(f"with epsilon = {eps} and 5 arms you chose the greedy arm in {share_greedy:.1%} of runs, expected about "
                              f"{expected:.0%}: explore with probability epsilon by drawing any of the k arms uniformly.")
        if eps == 1.0 and np.abs(np.bincount(acts, minlength=5) / runs - 0.2).max() > 0.015:
            raise CheckFailed("with epsilon = 1 every arm should be chosen about 20% of the time; draw random arms uniformly.")
    single = np.asarray(_call(fn, np.array([[0.3, -1.0, 2.0]]), 0.0, np.random.default_rng(5)))
    if single.shape != (1,) or int(single[0]) != 2:
        raise CheckFailed(f"for a single run with estimates [0.3, -1.0, 2.0] and epsilon = 0 you returned {single.tolist()}, expected [2].")
    return "greedy share 1 - eps + eps/k, uniform exploration and random tie-breaking over 20000 seeded runs, and a single run"


def _trajectory(rewards, step) -> list[float]:
    """Estimates of one arm after each of its pulls when ``step(n_before) -> (step size, n_after)`` drives the update."""
    q, n, out = 0.0, 0, []
    for r in rewards:
        size, n = step(n)
        q += size * (r - q)
        out.append(q)
    return out


_SCRIPT = [1.5, 0.5, 2.0]  # rewards of three pulls of one arm, for telling the known mistakes apart


def _update_mistake(got: list[float]) -> str | None:
    """The diagnosis of a known mistake whose estimates after the pulls of _SCRIPT are ``got``, or None."""
    same = lambda a, b: np.allclose(a, b, atol=1e-8)  # noqa: E731
    rewards = ", ".join(f"{r:g}" for r in _SCRIPT)
    if same(got, _trajectory(_SCRIPT, lambda n: (1 / (n + 2), n + 1))):
        return (f"after the first pull (reward {_SCRIPT[0]:g}) your estimate is {got[0]:.3f}, half the reward: you divide by "
                "N(a) + 1 after counting the pull; divide by the updated count N(a) itself.")
    if same(got, _trajectory(_SCRIPT, lambda n: (1 / max(n, 1), n + 1))):
        return (f"after rewards {_SCRIPT[0]:g} and {_SCRIPT[1]:g} your estimate is {got[1]:.3f}, not their average reward "
                f"{np.mean(_SCRIPT[:2]):.3f}: you divide by N(a) before counting this pull; increment N(a) first, then "
                "divide by it (step size 1/N(a)).")
    alpha = got[0] / _SCRIPT[0]
    if 0 < alpha <= 1 and same(got, _trajectory(_SCRIPT, lambda n: (alpha, n + 1))):
        return (f"your estimates follow a constant step size {alpha:.3g}: after rewards {rewards} the estimate is {got[-1]:.3f}, "
                f"not their average reward {np.mean(_SCRIPT):.3f}; the sample average uses the step size 1/N(a), which "
                "shrinks with every pull.")
    return None


def _as_pair(out, shape) -> tuple[np.ndarray, np.ndarray]:
    """The returned (q, n) as float arrays of the given shape, or one sentence."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise CheckFailed(f"it should return the updated pair (q, n), but it returned {type(out).__name__}.")
    q, n = (np.asarray(x, dtype=float) for x in out)
    if q.shape != shape or n.shape != shape:
        raise CheckFailed(f"q and n should keep their shape (runs, k) = {_fmt(shape)}; got {_fmt(q.shape)} and {_fmt(n.shape)}.")
    return q, n


@exercise(reference=bandits.update_estimate,
          probe=lambda: (np.zeros((1, 2)), np.zeros((1, 2)), np.array([0]), np.array([1.0])))
def update_estimate(fn):
    """Compare with the incremental sample average Q <- Q + (R - Q) / N, run by run."""
    q1, n1 = _as_pair(_call(fn, np.zeros((2, 4)), np.zeros((2, 4)), np.array([2, 0]), np.array([1.5, -0.3])), (2, 4))
    if n1[0, 2] != 1 or n1[1, 0] != 1 or n1.sum() != 2:
        raise CheckFailed(f"after one pull of arm 2 in run 0 and arm 0 in run 1, n should be 1 for those arms only; got {n1.tolist()}.")
    if np.count_nonzero(q1[0, [0, 1, 3]]) or np.count_nonzero(q1[1, 1:]):
        raise CheckFailed("arms that were not pulled changed their estimate; update only Q[run, action].")
    q, n, got = np.zeros((1, 3)), np.zeros((1, 3)), []
    for r in _SCRIPT:  # one run pulls arm 1 three times
        q, n = _as_pair(_call(fn, q, n, np.array([1]), np.array([r])), (1, 3))
        got.append(q[0, 1])
    expected = _trajectory(_SCRIPT, lambda n: (1 / (n + 1), n + 1))
    if not np.allclose(got, expected, atol=1e-8):
        mistake = _update_mistake(got)
        if mistake:
            raise CheckFailed(mistake)
        pulls = next(i for i in range(len(got)) if not np.isclose(got[i], expected[i], atol=1e-8))
        raise CheckFailed(f"after {pulls + 1} pull(s) of an arm with rewards {_SCRIPT[:pulls + 1]} your estimate is {got[pulls]:.4f} "
                          f"but the average reward is {expected[pulls]:.4f}; Q(a) must be the sample average of the arm's rewards.")
    rng = np.random.default_rng(0)
    runs, k, steps = 3, 4, 60
    q, n = np.zeros((runs, k)), np.zeros((runs, k))
    history = [[[] for _ in range(k)] for _ in range(runs)]
    for _ in range(steps):
        action = rng.integers(0, k, size=runs)
        reward = rng.normal(size=runs)
        for r in range(runs):
            history[r][action[r]].append(reward[r])
        q, n = _as_pair(_call(fn, q, n, action, reward), (runs, k))
    for r in range(runs):
        for a in range(k):
            mean = np.mean(history[r][a]) if history[r][a] else 0.0
            if not np.isclose(q[r, a], mean, atol=1e-8):
                raise CheckFailed(f"after {len(history[r][a])} pulls of arm {a} in run {r} (of {runs} runs updated together) your "
                                  f"estimate is {q[r, a]:.4f} but the average reward is {mean:.4f}; update every run's own "
                                  "Q[run, action] and N[run, action].")
    return "first pulls, untouched arms, three pulls of one arm and 60 random updates of 3 runs give exactly the sample averages"


# --------------------------------------------------------------------------- 6. returns
@exercise(reference=mdp.discounted_return, probe=lambda: ([1.0], 0.9))
def discounted_return(fn):
    """Compare with G_0 = sum_k gamma^k R_{k+1}, by hand and with rl4lm.rl.mdp.returns_to_go."""
    returns_to_go = mdp.returns_to_go

    rng = np.random.default_rng(0)
    long = rng.normal(size=20)
    cases = [([1.0, 0.0, 0.0], 0.9), ([0.0, 0.0, 1.0], 0.9), ([1.0, 1.0, 1.0], 0.5), ([5.0], 0.5), ([], 0.9),
             ([1.0, 2.0, 3.0, 4.0], 1.0), ([1.0, 2.0, 3.0], 0.0), (long, 0.95)]
    for rewards, gamma in cases:
        expected = float(returns_to_go(rewards, gamma)[0]) if len(rewards) else 0.0
        got = _call(fn, rewards, gamma)
        if not isinstance(got, numbers.Real) or isinstance(got, bool):
            size = len(got) if isinstance(got, (list, tuple)) else int(np.prod(tuple(getattr(got, "shape", ())) or (1,)))
            kind = ("a torch.Tensor" if type(got).__module__.startswith("torch") else
                    "a numpy array" if isinstance(got, np.ndarray) else f"a {type(got).__name__}")
            if size > 1:
                raise CheckFailed(f"it should return one number, G_0, but for {len(rewards)} rewards it returns {size} values "
                                  f"({kind}); return only the return from the start of the episode.")
            raise CheckFailed(f"it should return one number, a Python float (e.g. float(g)), not {kind}.")
        got = float(got)
        if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            continue
        shown = [round(float(r), 2) for r in rewards][:5]
        more = ", ..." if len(rewards) > 5 else ""
        if gamma > 0 and math.isclose(got, gamma * expected, rel_tol=1e-6):
            raise CheckFailed(f"for rewards {shown}{more} and gamma = {gamma} you return {got:.4f}, gamma times too small: "
                              "the first reward is not discounted (gamma^0 = 1).")
        if len(rewards) > 1 and math.isclose(got, float(returns_to_go(list(rewards)[::-1], gamma)[0]), rel_tol=1e-6):
            raise CheckFailed(f"for rewards {shown}{more} you discount the early rewards most; R_(k+1) gets the factor gamma^k.")
        raise CheckFailed(f"for rewards {shown}{more} and gamma = {gamma} you return {got:.4f}, expected {expected:.4f}.")
    return "8 cases incl. an empty episode, gamma = 0 and gamma = 1, lists and numpy arrays"
