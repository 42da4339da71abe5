"""Checkers of Homework 2's reinforcement-learning exercises: dynamic programming, Q-learning, REINFORCE, GAE and PPO.

The tabular exercises work on numpy arrays (no device check there); the policy-gradient ones on torch tensors, with a
last call on the meta device (see :func:`._core._check_device`). Every checker computes what it expects first, then
calls the student's function on copies of its inputs, and names each known mistake in one sentence.
Dynamic programming can loop forever (a stopping test that is never met, policies that switch between ties), so
those calls run under a time limit where the platform allows it (SIGALRM: Linux and macOS, in the main thread).
"""
from __future__ import annotations

import contextlib
import io
import signal
import threading
import warnings

import numpy as np
import torch

from ..rl import dp, policy_gradient, td
from ._core import CheckFailed, _check_device, _copy, _expect_tensor, _fmt, _invoke, _same, _to_meta, exercise

TIME_LIMIT = 2.0  # seconds a single call of a dynamic-programming function may take before the check gives up on it


# --------------------------------------------------------------------------- shared helpers
class _TooSlow(BaseException):
    """Raised by the alarm inside a student's function that runs past the time limit (BaseException: not caught as an error)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the block with :class:`_TooSlow` after ``seconds`` (only where SIGALRM exists and in the main thread)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)  # (None: a handler set outside Python)


def _call_keeping(fn, *args, names: tuple = ()):
    """Call fn on copies of ``args``; return (output, copies), failing if an input named in ``names`` was changed."""
    copies = tuple(_copy(a) for a in args)
    out = _invoke(fn, copies)
    for name, original, changed in zip(names, args, copies):
        if name and not _same(original, changed):
            raise CheckFailed(f"your function changed the {name} passed to it; compute the result in new arrays or tensors and "
                              f"leave {name} unchanged (e.g. x = x * c rather than x *= c).")
    return out, copies


def _close(a, b, atol: float = 1e-6) -> bool:
    """True when two arrays or tensors have the same shape and agree to within atol (relative for large values)."""
    a, b = (np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64) for x in (a, b))
    return a.shape == b.shape and bool(np.allclose(a, b, atol=atol, rtol=1e-6))


def _check_devices(fn, args: tuple, hint: str) -> None:
    """:func:`._core._check_device`, which also fails when the function copies a meta input into a CPU tensor.

    ``buffer[t] = x`` with ``buffer`` made on the CPU and ``x`` on the meta device raises "Cannot copy out of meta tensor",
    which ``_check_device`` must treat as inconclusive; on a GPU the same buffer would hold CPU results next to GPU inputs.
    """
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            fn(*(_to_meta(a) for a in args))
    except NotImplementedError as error:
        if "Cannot copy out of meta tensor" in str(error):
            raise CheckFailed(hint) from None
    except Exception:  # noqa: BLE001 - judged by _check_device below
        pass
    _check_device(fn, args, hint)


def _device_hint(tensor: str, example: str = "") -> str:
    """The sentence for a tensor created on the CPU next to inputs on another device."""
    return (f"your function creates a tensor on the CPU and combines it with {tensor}, which fails when {tensor} is on a GPU "
            f"(e.g. in Colab); create new tensors on {tensor}.device{example}.")


# --------------------------------------------------------------------------- 1. dynamic programming
def _random_mdp(seed: int, states: int = 6, actions: int = 3, keep=(0.6, 0.95)) -> tuple[np.ndarray, np.ndarray]:
    """A random tabular MDP whose every transition ends the episode with probability 1 - keep (rows of P sum to keep)."""
    rng = np.random.default_rng(seed)
    P = rng.random((states, actions, states)) ** 3
    P *= rng.uniform(*keep, size=(states, actions, 1)) / P.sum(-1, keepdims=True)
    return P, rng.normal(size=(states, actions))


def _frozen_lake() -> tuple[np.ndarray, np.ndarray]:
    """P and R of gymnasium's slippery 4x4 FrozenLake-v1 (holes and the goal end the episode: no successor mass)."""
    import gymnasium as gym

    return dp.tables_from_gym(gym.make("FrozenLake-v1", is_slippery=True).unwrapped.P)


def _tied_mdp(states: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A chain whose actions 0 and 1 are identical (every state has two equally good actions); action 2 ends at once."""
    P = np.zeros((states, 3, states))
    for s in range(states - 1):
        P[s, 0, s + 1] = P[s, 1, s + 1] = 0.9
    R = np.zeros((states, 3))
    R[:, :2] = 0.1
    R[-1, :2] = 1.0
    R[:, 2] = 0.05
    return P, R


def _now_or_later() -> tuple[np.ndarray, np.ndarray]:
    """Two states: in state 0, reward 1 now (the episode ends) or 1.6 one step later; gamma = 0.5 makes 'now' better."""
    P = np.zeros((2, 2, 2))
    P[0, 1, 1] = 1.0  # action 1 in state 0 moves on to state 1; every other transition ends the episode
    R = np.array([[1.0, 0.0], [1.6, 1.6]])
    return P, R


def _dp_cases() -> list[tuple[str, np.ndarray, np.ndarray, float, float | None]]:
    """(description, P, R, gamma, tol) of the cases both DP checkers test; tol None: the function's default."""
    lake_P, lake_R = _frozen_lake()
    P, R = _random_mdp(0)
    short_P, short_R = _random_mdp(1, states=5, actions=2, keep=(0.3, 0.8))
    tied_P, tied_R = _tied_mdp()
    later_P, later_R = _now_or_later()
    return [("FrozenLake's table with gamma = 0.95", lake_P, lake_R, 0.95, None),
            ("a random MDP (6 states, 3 actions) with gamma = 0.9 and tol = 1e-10", P, R, 0.9, 1e-10),
            ("the same random MDP with gamma = 0", P, R, 0.0, None),
            ("a 40-state chain whose actions 0 and 1 are tied, gamma = 0.95", tied_P, tied_R, 0.95, None),
            ("a choice between reward 1 now and 1.6 one step later, gamma = 0.5", later_P, later_R, 0.5, None),
            ("a random MDP whose every step ends the episode with probability at least 0.2, with gamma = 1", short_P, short_R, 1.0, None)]


def _values(P, R, gamma: float, iterations: int = 5000) -> np.ndarray | None:
    """Optimal values of (P, R, gamma) by value iteration, or None if they do not converge within ``iterations`` sweeps."""
    v = np.zeros(P.shape[0])
    for _ in range(iterations):
        new = dp.q_from_v(P, R, v, gamma).max(axis=1)
        if np.abs(new - v).max() < 1e-12:
            return new
        v = new
    return None


def _dp_call(fn, P, R, gamma, tol, what: str):
    """The student's DP function on copies, under the time limit; returns its raw output."""
    args = (P, R, gamma) if tol is None else (P, R, gamma, tol)
    try:
        with _time_limit(TIME_LIMIT):
            out, _ = _call_keeping(fn, *args, names=("P", "R"))
    except _TooSlow:
        raise CheckFailed(f"on {what} your function did not return within {TIME_LIMIT:g} s; make sure its loop ends: value "
                          "iteration stops once the largest change of v in a sweep is below tol, policy iteration once no "
                          "action changes (change an action only when another one is strictly better, so that ties "
                          "cannot make it switch back and forth).") from None
    return out


def _dp_output(out, n_states: int, n_actions: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The pair (v, policy) as numpy arrays of the right shapes and dtypes, or one sentence."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise CheckFailed(f"it should return a pair (v, policy), but it returned {type(out).__name__}.")
    v, policy = out
    for name, x in (("v", v), ("the policy", policy)):
        if isinstance(x, torch.Tensor):
            raise CheckFailed(f"{name} is a torch.Tensor; P and R are numpy arrays, so return numpy arrays.")
        if not isinstance(x, np.ndarray):
            raise CheckFailed(f"{name} should be a numpy array, but it is a {type(x).__name__}.")
    if v.shape == (n_states, n_actions) and n_actions > 1:
        raise CheckFailed(f"on {what} v has shape {_fmt(v.shape)}, one number per state and action: that is q(s, a); return "
                          "v(s) = max_a q(s, a), shape (S,).")
    if v.shape != (n_states,):
        raise CheckFailed(f"on {what} v has shape {_fmt(v.shape)}; return one value per state, shape ({n_states},).")
    if policy.shape != (n_states,):
        raise CheckFailed(f"on {what} the policy has shape {_fmt(policy.shape)}; return one action per state, shape ({n_states},) "
                          "(the argmax over actions, axis=1 of q).")
    if not np.issubdtype(policy.dtype, np.integer):
        raise CheckFailed(f"the policy has dtype {policy.dtype}, but actions are indices: return integers (q.argmax(axis=1) gives "
                          "int64; np.zeros(S) would give floats).")
    if not np.issubdtype(v.dtype, np.floating) or not np.isfinite(v).all():
        raise CheckFailed(f"on {what} v should hold finite floats, got dtype {v.dtype}"
                          + ("" if np.issubdtype(v.dtype, np.number) and np.isfinite(v).all() else " with NaN or inf") + ".")
    if policy.min() < 0 or policy.max() >= n_actions:
        raise CheckFailed(f"the policy holds actions outside 0..{n_actions - 1}.")
    return v.astype(np.float64), policy


def _value_mistake(v, P, R, gamma: float, what: str) -> str | None:
    """The diagnosis of a known mistake whose values on (P, R, gamma) are ``v``, or None."""
    if gamma > 0 and _close(v, R.max(axis=1)):
        return (f"on {what} your v equals max_a r(s, a), the values after a single sweep from v = 0; repeat the sweeps until "
                "the largest change of v is below tol.")
    for other in (1.0, 0.99, 0.95, 0.9, 0.0):
        if other != gamma:
            expected = _values(P, R, other)
            if expected is not None and _close(v, expected):
                return (f"on {what} your values are those for gamma = {other:g}, not the gamma = {gamma:g} passed in; use gamma "
                        "in r(s, a) + gamma sum_s' p(s' | s, a) v(s').")
    stays = P.sum(-1)  # (S, A): the probability that the episode goes on
    if (stays < 1 - 1e-9).any() and gamma > 0:
        normalised = np.divide(P, stays[..., None], out=np.zeros_like(P), where=stays[..., None] > 0)
        self_loop = P.copy()
        self_loop[np.arange(len(P)), :, np.arange(len(P))] += 1 - stays
        for table in (normalised, self_loop):
            expected = _values(table, R, gamma)
            if expected is not None and _close(v, expected):
                return (f"on {what} your values are those of an episode that never ends: the rows of P sum to less than one "
                        "where a transition ends the episode, and after it no value follows; use P as given (do not "
                        "rescale its rows or send the missing probability back to a state).")
    uniform = np.linalg.solve(np.eye(len(P)) - gamma * P.mean(axis=1), R.mean(axis=1)) if gamma < 1 else None
    if uniform is not None and _close(v, uniform):
        return f"on {what} your v is the value of the uniformly random policy: take the max over actions, not the mean."
    return None


def _sweeps_to(v, P, R, gamma: float, limit: int = 5000) -> int | None:
    """The number k of value-iteration sweeps from v = 0 after which the values equal ``v`` (to 1e-6), or None."""
    current = np.zeros(len(P))
    for k in range(1, limit + 1):
        new = dp.q_from_v(P, R, current, gamma).max(axis=1)
        if _close(v, new):
            return k
        if np.abs(new - current).max() < 1e-12:
            return None
        current = new
    return None


def _not_converged(fn, v, P, R, gamma: float, tol: float | None, what: str) -> str:
    """Why ``v`` is not a fixed point of the Bellman optimality equation: the loop stopped early, or each sweep is wrong.

    Three cases: v is value iteration after k sweeps (it stopped early); v does not change when the function is called
    again with a much smaller tol (the loop converged, but to the fixed point of another update); or v does change.
    """
    residual = float(np.abs(dp.q_from_v(P, R, v, gamma).max(axis=1) - v).max())
    stop = f"tol = {tol:g}" if tol is not None else "tol"
    head = f"on {what} your v is not a fixed point of the Bellman optimality equation (max_s |max_a q(s, a) - v(s)| = {residual:.2g})"
    k = _sweeps_to(v, P, R, gamma)
    if k is not None:
        return (f"{head}: it equals the values after {k} sweeps from v = 0; keep sweeping until the largest change of v in a "
                f"sweep is below {stop}.")
    try:
        tighter, _ = _dp_output(_dp_call(fn, P, R, gamma, 1e-12, what), *R.shape, what)
    except CheckFailed:
        tighter = None
    if tighter is not None and _close(tighter, v, atol=1e-9):
        return (f"{head}, yet with tol = 1e-12 your function returns the same v, so your sweeps converge to something else; "
                "compute q = R + gamma * P @ v (a sum over the next state s', the last axis of P) and v = q.max(axis=1).")
    return (f"{head}; keep sweeping until the largest change of v in a sweep is below {stop}, and check that each sweep computes "
            "v(s) <- max_a [r(s, a) + gamma sum_s' p(s' | s, a) v(s')].")


def _greedy_problem(policy, P, R, v_star, gamma: float, what: str) -> str | None:
    """One sentence if ``policy`` is not greedy with respect to the optimal values (ties: any best action is fine)."""
    q = dp.q_from_v(P, R, v_star, gamma)  # (S, A)
    gap = q.max(axis=1) - q[np.arange(len(policy)), policy]
    if (gap <= 1e-6).all():
        return None
    s = int(np.argmax(gap))
    undiscounted = dp.q_from_v(P, R, v_star, 1.0)  # (S, A): the greedy step without gamma
    if gamma < 1 and (undiscounted.max(axis=1) - undiscounted[np.arange(len(policy)), policy] <= 1e-9).all():
        return (f"on {what} your policy is greedy for r(s, a) + sum_s' p(s' | s, a) v(s'), without gamma: in state {s} it takes "
                f"action {int(policy[s])} although action {int(q[s].argmax())} is better; use gamma in the greedy step too: "
                "argmax_a [r(s, a) + gamma sum_s' p(s' | s, a) v(s')].")
    if len(set(policy.tolist())) > 1 and np.array_equal(policy, q.argmin(axis=1)):  # (a constant policy is more likely unimproved)
        return f"on {what} your policy takes the worst action in every state (argmin); the greedy policy is the argmax of q(s, a) over a."
    return (f"on {what} your policy is not greedy: in state {s} it takes action {int(policy[s])} with q = {q[s, policy[s]]:.4f}, "
            f"but action {int(q[s].argmax())} has q = {q[s].max():.4f}; return argmax_a [r(s, a) + gamma sum_s' p(s' | s, a) v(s')].")


def _dp_probe() -> tuple:
    return np.zeros((1, 1, 1)), np.zeros((1, 1)), 0.9


@exercise(reference=dp.value_iteration, probe=_dp_probe)
def value_iteration(fn):
    """Compare v with the optimal values and check that the policy is greedy, on FrozenLake and four small MDPs."""
    for what, P, R, gamma, tol in _dp_cases():
        v_star = _values(P, R, gamma)
        v, policy = _dp_output(_dp_call(fn, P, R, gamma, tol, what), *R.shape, what)
        if not _close(v, v_star):
            mistake = _value_mistake(v, P, R, gamma, what)
            if mistake:
                raise CheckFailed(mistake)
            if np.abs(dp.q_from_v(P, R, v, gamma).max(axis=1) - v).max() > 1e-6:
                raise CheckFailed(_not_converged(fn, v, P, R, gamma, tol, what))
            s = int(np.abs(v - v_star).argmax())
            raise CheckFailed(f"on {what} your v differs from the optimal values by up to {abs(v[s] - v_star[s]):.4f} (state {s}: "
                              f"{v[s]:.4f} instead of {v_star[s]:.4f}); sweep v(s) <- max_a [r(s, a) + gamma sum_s' p(s' | s, a) v(s')].")
        problem = _greedy_problem(policy, P, R, v_star, gamma, what)
        if problem:
            raise CheckFailed(problem)
    return ("optimal values and a greedy policy (int64) on FrozenLake, a random MDP with tol = 1e-10, gamma = 0, tied actions, "
            "reward now or later with gamma = 0.5, and gamma = 1, with terminal transitions everywhere")


@exercise(reference=dp.policy_iteration, probe=_dp_probe)
def policy_iteration(fn):
    """Compare v with the optimal values, check it is the value of the returned policy and that the policy is greedy."""
    for what, P, R, gamma, _ in [case for case in _dp_cases() if case[3] < 1]:  # (evaluating a policy that never ends needs gamma < 1)
        v_star = _values(P, R, gamma)
        v, policy = _dp_output(_dp_call(fn, P, R, gamma, None, what), *R.shape, what)
        v_policy = dp.evaluate_policy(P, R, policy, gamma)
        if not _close(v, v_star):
            if _close(v, v_policy):
                problem = _greedy_problem(policy, P, R, v, gamma, what)
                if problem:  # v is the value of a policy that is not greedy with respect to it: improvement stopped early
                    raise CheckFailed(problem.replace("is not greedy:", "was not improved until it was stable:")
                                      .replace("return argmax_a", "repeat evaluation and improvement until no action changes; "
                                               "the improved action is argmax_a"))
            mistake = _value_mistake(v, P, R, gamma, what)
            if mistake:
                raise CheckFailed(mistake)
            s = int(np.abs(v - v_star).argmax())
            if not _close(v, v_policy):
                raise CheckFailed(f"on {what} your v is not the value of your policy (state {s}: {v[s]:.4f}, but the policy is worth "
                                  f"{v_policy[s]:.4f}); evaluate the policy exactly, v = r_pi + gamma P_pi v "
                                  "(np.linalg.solve), before improving it.")
            raise CheckFailed(f"on {what} your v differs from the optimal values by up to {abs(v[s] - v_star[s]):.4f} (state {s}).")
        if not _close(v_policy, v_star):
            s = int(np.abs(v_policy - v_star).argmax())
            raise CheckFailed(f"on {what} your v is optimal but your policy is worth only {v_policy[s]:.4f} in state {s} "
                              f"(optimal {v_star[s]:.4f}); return the greedy policy that goes with v.")
        problem = _greedy_problem(policy, P, R, v_star, gamma, what)
        if problem:
            raise CheckFailed(problem)
    return ("optimal values, exactly the value of the returned greedy policy, on FrozenLake, a random MDP, gamma = 0, 40 tied states "
            "and reward now or later with gamma = 0.5")


# --------------------------------------------------------------------------- 2. Q-learning
_Q_CASES = [  # (s, a, reward, s_next, terminated, alpha, gamma, what the exercise text calls it)
    (1, 2, 0.5, 3, False, 0.1, 0.9, "an ordinary step"),
    (4, 0, 1.0, 5, True, 0.5, 0.9, "a step that ends the episode (terminated=True)"),
    (2, 3, -0.2, 2, False, 1.0, 0.95, "alpha = 1 and s_next = s"),
    (0, 1, 1.0, 5, False, 0.3, 0.0, "gamma = 0"),
]


def _q_target(q, s_next, reward, terminated, gamma, how: str = "max") -> float:
    """r + gamma * (max | mean | the same action's) Q(s', .) unless terminated ('bootstrap' bootstraps regardless)."""
    if terminated and how != "bootstrap":
        return reward
    return reward + gamma * {"max": q[s_next].max(), "bootstrap": q[s_next].max(), "mean": q[s_next].mean()}[how]


def _q_mistake(got: float, q, case) -> str | None:
    """The diagnosis of a known mistake that gives the new Q(s, a) ``got`` on ``case``, or None."""
    s, a, reward, s_next, terminated, alpha, gamma, what = case
    old = q[s, a]
    target = _q_target(q, s_next, reward, terminated, gamma)
    decayed = q.copy()
    decayed[s, a] *= 1 - alpha  # Q(s, a) changed before the target is read: differs only where s' = s
    candidates = [
        ("bootstrap", old + alpha * (_q_target(q, s_next, reward, terminated, gamma, "bootstrap") - old),
         f"for {what} you still add gamma max_a' Q(s', a'); after the last step of an episode nothing follows, so the target "
         "is the reward alone."),
        ("same action", old + alpha * (reward + (0.0 if terminated else gamma * q[s_next, a]) - old),
         f"for {what} your target uses Q(s', a) of the same action a; Q-learning bootstraps from the best next action, "
         "max_a' Q(s', a')."),
        ("mean", old + alpha * (_q_target(q, s_next, reward, terminated, gamma, "mean") - old),
         f"for {what} your target averages Q(s', .) over actions; Q-learning takes the max, max_a' Q(s', a')."),
        ("no alpha", target,
         f"for {what} you set Q(s, a) to the target; move it only a step of size alpha = {alpha:g} towards the target: "
         "Q(s, a) += alpha (target - Q(s, a))."),
        ("no minus", old + alpha * target,
         f"for {what} you add alpha * target; add alpha (target - Q(s, a)), the TD error."),
        ("sign", old - alpha * (target - old),
         f"for {what} you move Q(s, a) away from the target; add alpha (target - Q(s, a)), not subtract it."),
        ("gamma", old + alpha * (reward + (0.0 if terminated else q[s_next].max()) - old),
         f"for {what} your target does not discount: use r + gamma max_a' Q(s', a') with the gamma = {gamma:g} passed in."),
        ("stale", decayed[s, a] + alpha * _q_target(decayed, s_next, reward, terminated, gamma),
         f"for {what} your target reads Q(s', .) after you had already changed Q(s, a), which is the same entry when s' = s; "
         "compute the target from the table as it was, then change Q(s, a) once."),
    ]
    for _, value, sentence in candidates:
        if abs(value - (old + alpha * (target - old))) > 1e-9 and abs(got - value) < 1e-9:
            return sentence
    return None


@exercise(reference=td.q_learning_update, probe=lambda: (np.zeros((2, 2)), 0, 0, 1.0, 1, False, 0.5, 0.9))
def q_learning_update(fn):
    """Apply one update to a copy of a random table and compare it entry by entry with Q(s,a) += alpha (target - Q(s,a))."""
    q0 = np.random.default_rng(0).normal(size=(6, 4))
    for case in _Q_CASES:
        s, a, reward, s_next, terminated, alpha, gamma, what = case
        expected = q0.copy()
        expected[s, a] += alpha * (_q_target(q0, s_next, reward, terminated, gamma) - q0[s, a])
        q = q0.copy()
        out = _invoke(fn, (q, s, a, reward, s_next, terminated, alpha, gamma))
        if np.array_equal(q, q0):
            if isinstance(out, np.ndarray) and out.shape == q0.shape:
                raise CheckFailed("your function returns a new table and leaves q unchanged; update q in place "
                                  "(q[s, a] += ...), because the training loop keeps using the same table.")
            raise CheckFailed(f"for {what} q did not change; write the new value into q[s, a] (in place).")
        changed = np.argwhere(np.abs(q - q0) > 1e-12)
        others = [tuple(int(i) for i in idx) for idx in changed if tuple(idx) != (s, a)]
        if others:
            raise CheckFailed(f"for {what} (s = {s}, a = {a}) your function also changed Q{list(others[0])}; only Q[s, a] changes.")
        if abs(q[s, a] - expected[s, a]) > 1e-9:
            mistake = _q_mistake(q[s, a], q0, case)
            if mistake:
                raise CheckFailed(mistake)
            raise CheckFailed(f"for {what} your new Q[{s}, {a}] is {q[s, a]:.4f}, expected {expected[s, a]:.4f} = Q + alpha "
                              "(r + gamma max_a' Q(s', a') - Q).")
    return "four updates in place, incl. a terminal step, alpha = 1 with s' = s, and gamma = 0; no other entry changes"


# --------------------------------------------------------------------------- 3. REINFORCE
def _loss_output(out, what: str) -> torch.Tensor:
    """A scalar float32 tensor with a gradient, or one sentence."""
    _expect_tensor(out, what, finite=None)
    if out.dim() != 0:
        raise CheckFailed(f"{what} has shape {_fmt(out.shape)}; return one number (a 0-dimensional tensor): average over the N samples.")
    _expect_tensor(out, what)
    if not out.requires_grad:
        raise CheckFailed(f"{what} has no gradient; compute it with torch operations on the log-probabilities (no .item(), "
                          "numpy, floats or torch.no_grad).")
    return out


def _standardised(x: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """(x - mean) / (std + 1e-8), advantages normalised as students often do (one sample: NaN if unbiased, without a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (x - x.mean()) / (x.std(correction=int(unbiased)) + 1e-8)


def _grad_of(out: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """d out / d tensor (zeros if the output does not depend on it)."""
    return tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)


def _reinforce_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(description, logprobs, returns, baseline) with leaf tensors that require gradients where the loss may use them."""
    g = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(6, generator=g) * 2
    returns = torch.randn(6, generator=g) * 3 + 1
    baseline = torch.randn(6, generator=g)
    one = (-torch.tensor([0.7]), torch.tensor([2.0]), torch.tensor([0.5]))
    return [("6 samples", logprobs.requires_grad_(), returns, baseline.requires_grad_()),
            ("a batch of 1", one[0].requires_grad_(), one[1], one[2].requires_grad_()),
            ("6 samples with a zero baseline", logprobs.detach().clone().requires_grad_(), returns, torch.zeros(6))]


@exercise(reference=policy_gradient.reinforce_loss, probe=lambda: (torch.zeros(1), torch.zeros(1), torch.zeros(1)))
def reinforce_loss(fn):
    """Compare the value and the gradients with -mean_i logprob_i (G_i - b_i), the baseline detached."""
    for what, logprobs, returns, baseline in _reinforce_cases():
        advantage = returns - baseline.detach()
        expected = -(logprobs.detach() * advantage).mean()
        n = len(logprobs)
        out, (lp, _, b) = _call_keeping(fn, logprobs, returns, baseline, names=("logprobs", "returns", "baseline"))
        out = _loss_output(out, f"the loss for {what}")
        got = out.detach()
        if not torch.isclose(got, expected, atol=1e-5):
            variants = [
                (-expected, "your loss has the wrong sign: minimising it would make bad actions likelier; the loss is "
                            "-mean(logprob * (return - baseline))."),
                (expected * n, f"you sum over the {n} samples; take the mean, so that the step size does not grow with the batch."),
                (-(logprobs.detach() * returns).mean(), "your loss ignores the baseline; weight each log-probability by "
                                                        "(return - baseline)."),
                (-(logprobs.detach() * (returns + baseline.detach())).mean(), "you add the baseline; subtract it: (return - baseline)."),
                (-(logprobs.detach() * (returns - returns.mean())).mean(), "you subtract the mean return instead of the baseline passed "
                                                                           "in; weight each log-probability by (return - baseline)."),
            ] + [(-(logprobs.detach() * _standardised(advantage, unbiased)).mean(),
                  "you normalise (return - baseline) to mean 0 and standard deviation 1; this loss takes it as it is, "
                  "-mean(logprob * (return - baseline)) (whether to normalise is the training loop's choice).") for unbiased in (True, False)]
            for value, sentence in variants:
                if not torch.isclose(value, expected, atol=1e-5) and torch.isclose(got, value, atol=1e-5):
                    raise CheckFailed(f"for {what}: {sentence}")
            raise CheckFailed(f"for {what} your loss is {got.item():.4f}, expected {expected.item():.4f} = "
                              "-mean(logprob * (return - baseline)).")
        out.backward()
        if b.requires_grad and _grad_of(out, b).abs().max() > 0:
            raise CheckFailed(f"for {what} the gradient flows into the baseline; use baseline.detach(): the baseline is trained by "
                              "its own regression loss, and the policy loss must not push it.")
        if not _close(_grad_of(out, lp), -advantage / n, atol=1e-6):
            raise CheckFailed(f"for {what} the value is right but the gradient with respect to logprobs is not -(return - baseline) / N; "
                              "do not detach logprobs or scale it.")
    logprobs, returns, baseline = _reinforce_cases()[0][1:]
    _check_devices(fn, (logprobs, returns, baseline), _device_hint("logprobs"))
    return "value and gradient of -mean(logprob (G - b)), no gradient into the baseline; 6 samples, a batch of 1, a zero baseline"


# --------------------------------------------------------------------------- 4. GAE and PPO
def _gae_variant(rewards, values, dones, last_value, gamma: float, lam: float, mistake: str | None = None):
    """GAE (advantages, returns) as the exercise defines it, or with one known mistake (for diagnosis)."""
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = torch.zeros_like(last_value) if mistake == "no_last_value" else last_value
    for t in range(T - 1, -1, -1):
        if mistake == "no_dones" or (mistake == "done_next" and t + 1 == T):
            done = torch.zeros_like(dones[t])
        else:
            done = dones[t + 1] if mistake == "done_next" else dones[t]
        nonterminal = 1.0 - done
        g, l_ = (lam, gamma) if mistake == "swapped" else (gamma, lam)
        bootstrap = 1.0 if mistake == "delta_past_done" or (mistake == "last_step_unmasked" and t == T - 1) else nonterminal
        delta = rewards[t] + g * next_value * bootstrap - values[t]
        carry = 1.0 if mistake == "carry_past_done" else nonterminal
        decay = lam if mistake == "no_gamma_in_trace" else g * l_
        running = delta + decay * carry * running
        advantages[t] = running
        next_value = values[t]
    returns = advantages if mistake == "returns_without_values" else advantages + values
    if mistake in ("normalised", "normalised_biased"):  # (only the advantages are compared: returns may come before or after)
        advantages = _standardised(advantages, unbiased=mistake == "normalised")
    return advantages, returns


_GAE_MISTAKES = {
    "no_dones": "your advantages bootstrap past the end of an episode; where dones[t] = 1 the episode ended at step t, so "
                "use delta_t = r_t - V_t (no gamma V_{t+1}) and do not carry the advantage of the next episode back.",
    "carry_past_done": "your delta is right, but the running advantage still flows back across dones[t] = 1; multiply "
                       "gamma * lam * A_{t+1} by (1 - dones[t]) too.",
    "done_next": "you use dones[t + 1] where dones[t] belongs: dones[t] = 1 means the episode ended at step t, so it "
                 "cuts the bootstrap from step t to t + 1.",
    "no_last_value": "your last step does not bootstrap from last_value; V_T, the value of the state after step T - 1, "
                     "is last_value (N,), not 0.",
    "returns_without_values": "your returns equal the advantages; the returns that train the critic are advantages + values.",
    "swapped": "gamma and lam are swapped: delta_t uses gamma, and the advantages decay by gamma * lam.",
    "no_gamma_in_trace": "your advantages decay by lam alone; the sum is A_t = delta_t + gamma * lam * A_{t+1}.",
    "delta_past_done": "your running advantage stops at dones[t] = 1, but delta_t still adds gamma V_{t+1}; where the episode "
                       "ended at step t nothing follows it, so multiply gamma V_{t+1} by (1 - dones[t]) too.",
    "last_step_unmasked": "at the last step you bootstrap from last_value although the episode ended there (dones[T - 1] = 1); "
                          "multiply gamma V_T by (1 - dones[T - 1]) as at every other step.",
    "normalised": "your advantages are normalised to mean 0 and standard deviation 1; gae returns them as computed (the PPO "
                  "update normalises them itself, after gae).",
}
_GAE_MISTAKES["normalised_biased"] = _GAE_MISTAKES["normalised"]


def _gae_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, float]]:
    """(description, rewards, values, dones, last_value, gamma, lam) for the GAE check."""
    g = torch.Generator().manual_seed(0)
    T, N = 6, 3
    rewards, values, last_value = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g), torch.randn(N, generator=g)
    dones = torch.zeros(T, N)
    dones[1, 0] = dones[3, 1] = dones[5, 2] = dones[0, 2] = 1.0  # episodes that end at steps 1, 3, 0 and the last step
    no_dones = torch.zeros(T, N)
    return [("T = 6 steps of N = 3 environments with episodes ending at steps 0, 1, 3 and 5", rewards, values, dones, last_value, 0.99, 0.95),
            ("a rollout of one step in one environment", rewards[:1, :1], values[:1, :1], torch.zeros(1, 1), last_value[:1], 0.9, 0.8),
            ("lam = 0 (one-step TD errors)", rewards, values, dones, last_value, 0.9, 0.0),
            ("lam = 1 (Monte Carlo returns minus values)", rewards, values, dones, last_value, 0.9, 1.0),
            ("gamma = 0.9 and lam = 0.5 without dones", rewards, values, no_dones, last_value, 0.9, 0.5)]


def _gae_probe() -> tuple:
    return torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), 0.9, 0.9


@exercise(reference=policy_gradient.gae, probe=_gae_probe)
def gae(fn):
    """Compare (advantages, returns) with A_t = delta_t + gamma lam (1 - d_t) A_{t+1}, returns = A + V."""
    for what, rewards, values, dones, last_value, gamma, lam in _gae_cases():
        expected_adv, expected_ret = _gae_variant(rewards, values, dones, last_value, gamma, lam)
        out, _ = _call_keeping(fn, rewards, values, dones, last_value, gamma, lam,
                               names=("rewards", "values", "dones", "last_value"))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed(f"it should return a pair (advantages, returns), but it returned {type(out).__name__}.")
        adv = _expect_tensor(out[0], f"the advantages for {what}", rewards.shape).detach()
        ret = _expect_tensor(out[1], f"the returns for {what}", rewards.shape).detach()
        if _close(adv, expected_adv, atol=1e-5) and _close(ret, expected_ret, atol=1e-5):
            continue
        for mistake, sentence in _GAE_MISTAKES.items():
            variant_adv, variant_ret = _gae_variant(rewards, values, dones, last_value, gamma, lam, mistake)
            if _close(variant_adv, expected_adv, 1e-5) and _close(variant_ret, expected_ret, 1e-5):
                continue  # this case cannot tell the mistake apart
            if _close(adv, variant_adv, atol=1e-5) and (mistake.startswith("normalised") or _close(ret, variant_ret, atol=1e-5)):
                raise CheckFailed(f"for {what}: {sentence}")
        if _close(adv, expected_adv, atol=1e-5):
            raise CheckFailed(f"for {what} your advantages are right but the returns are not; return advantages + values.")
        t, n = (int(i) for i in np.unravel_index(int((adv - expected_adv).abs().argmax()), tuple(adv.shape)))
        raise CheckFailed(f"for {what} your advantage at step {t} of environment {n} is {adv[t, n]:.4f}, expected "
                          f"{expected_adv[t, n]:.4f}; compute backwards from t = T - 1, with V_T = last_value and A_T = 0: "
                          "delta_t = r_t + gamma V_(t+1) (1 - d_t) - V_t, A_t = delta_t + gamma lam (1 - d_t) A_(t+1).")
    _check_devices(fn, _gae_cases()[0][1:], _device_hint("rewards", " (e.g. torch.zeros_like(rewards))"))
    return "advantages and returns for episodes ending mid-rollout and at its last step, one step, lam = 0, lam = 1, no dones"


def _ppo_reference(logp_new, logp_old, advantages, clip_eps: float, mistake: str | None = None) -> torch.Tensor:
    """The clipped loss (differentiable in logp_new only), or its value with one known mistake."""
    logp_old, advantages = logp_old.detach(), advantages.detach()
    if mistake in ("normalised", "normalised_biased"):
        advantages = _standardised(advantages, unbiased=mistake == "normalised")
    ratio = {"divide": logp_new / logp_old, "no_exp": logp_new - logp_old,
             "inverted": torch.exp(logp_old - logp_new)}.get(mistake, torch.exp(logp_new - logp_old))
    eps = 0.2 if mistake == "fixed_eps" else clip_eps
    unclipped = ratio * advantages
    if mistake == "clip_product":
        clipped = torch.clamp(unclipped, 1 - eps, 1 + eps)
    elif mistake == "log_clip":
        clipped = torch.exp(torch.clamp(logp_new - logp_old, -eps, eps)) * advantages
    else:
        clipped = torch.clamp(ratio, 1 - eps, 1 + eps) * advantages
    if mistake == "min_of_means":
        return -torch.min(unclipped.mean(), clipped.mean())
    surrogate = {"max": torch.max(unclipped, clipped), "no_clip": unclipped, "only_clipped": clipped}.get(mistake, torch.min(unclipped, clipped))
    if mistake == "no_minus":
        return surrogate.mean()
    return -surrogate.sum() if mistake == "sum" else -surrogate.mean()


_PPO_MISTAKES = {
    "max": "you keep the larger of the two surrogates (the max, or the min of their negatives); PPO keeps the pessimistic "
           "bound: loss = -mean(min(ratio * A, clip(ratio) * A)), i.e. the max of -ratio * A and -clip(ratio) * A.",
    "no_minus": "your loss has no minus sign: it is the surrogate objective itself, which training must maximise; return "
                "-mean(min(ratio * A, clip(ratio) * A)) so that minimising it maximises the objective.",
    "clip_product": "you clip the product ratio * A; clip the ratio alone: clip(ratio, 1 - eps, 1 + eps) * A.",
    "divide": "your ratio divides log-probabilities; the ratio pi_new / pi_old of probabilities is exp(logp_new - logp_old).",
    "no_exp": "your ratio is logp_new - logp_old, the log of the ratio; take exp(logp_new - logp_old).",
    "inverted": "your ratio is pi_old / pi_new; it is pi_new / pi_old = exp(logp_new - logp_old).",
    "fixed_eps": "you clip with 0.2 instead of the clip_eps passed in.",
    "no_clip": "you do not clip: the loss is -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)).",
    "sum": "you sum over the samples; take the mean.",
    "only_clipped": "you keep only the clipped surrogate; PPO takes, sample by sample, the smaller of ratio * A and "
                    "clip(ratio, 1 - eps, 1 + eps) * A, then the mean.",
    "min_of_means": "you take the min of the two averaged surrogates; take the min sample by sample, then the mean: "
                    "-mean(min(ratio * A, clip(ratio) * A)).",
    "log_clip": "you clip the log-ratio to [-eps, eps], which clips the ratio to [exp(-eps), exp(eps)]; clip the ratio itself "
                "to [1 - eps, 1 + eps].",
    "normalised": "you normalise the advantages inside the loss; ppo_clip_loss takes them as given (the course's PPO normalises "
                  "them once per rollout, before calling it).",
}
_PPO_MISTAKES["normalised_biased"] = _PPO_MISTAKES["normalised"]


def _ppo_losses(fn) -> list[float | None]:
    """The student's loss on every case of the check (None where it fails or is not a number): to tell mistakes apart."""
    losses = []
    for _, *tensors, clip_eps in _ppo_cases():  # (warnings silenced by the caller)
        try:
            out = _invoke(fn, (*(x.detach().clone().requires_grad_() for x in tensors), clip_eps))
            losses.append(float(out.detach()) if isinstance(out, torch.Tensor) and out.numel() == 1 else None)
        except CheckFailed:
            losses.append(None)
    return losses


def _ppo_mistake(fn) -> str | None:
    """The known mistake whose loss equals the student's on every case of the check, or None."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # (the standard deviation of one sample warns)
        losses = _ppo_losses(fn)
        variants = {mistake: [float(_ppo_reference(*case[1:], mistake=mistake)) for case in _ppo_cases()] for mistake in _PPO_MISTAKES}
    for mistake, sentence in _PPO_MISTAKES.items():
        if all(got is None or np.isclose(got, value, atol=1e-5, equal_nan=True) for got, value in zip(losses, variants[mistake])):
            return sentence
    return None


def _digits(a: float, b: float) -> int:
    """Decimals enough to show that two different numbers differ (4, 6 or 8)."""
    return next((d for d in (4, 6) if f"{a:.{d}f}" != f"{b:.{d}f}"), 8)


def _ppo_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(description, logp_new, logp_old, advantages, clip_eps): ratios inside and outside the clip range, both signs of A."""
    log_ratio = torch.tensor([-0.6, -0.3, -0.1, 0.0, 0.05, 0.15, 0.3, 0.5])  # ratios 0.55 .. 1.65
    logp_old = -torch.tensor([0.4, 1.2, 2.0, 0.7, 0.3, 1.6, 0.9, 2.5])
    advantages = torch.tensor([1.0, -1.5, 0.7, -0.4, 2.0, -0.8, 1.3, -2.2])
    return [("8 samples with ratios from 0.55 to 1.65 and clip_eps = 0.2", logp_old + log_ratio, logp_old, advantages, 0.2),
            ("the same samples with clip_eps = 0.1", logp_old + log_ratio, logp_old, -advantages, 0.1),
            ("a batch of 1 (ratio 1.5, A = 1)", torch.tensor([-0.5 + 0.405465]), torch.tensor([-0.5]), torch.tensor([1.0]), 0.2),
            ("logp_new = logp_old (ratio 1, the first epoch)", logp_old.clone(), logp_old, advantages, 0.2)]


@exercise(reference=policy_gradient.ppo_clip_loss, probe=lambda: (torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.2))
def ppo_clip_loss(fn):
    """Compare value and gradient with -mean(min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)), ratio = exp(logp_new - logp_old)."""
    for what, logp_new, logp_old, advantages, clip_eps in _ppo_cases():
        new, old, adv = (x.detach().clone().requires_grad_() for x in (logp_new, logp_old, advantages))
        expected = _ppo_reference(new, old, adv, clip_eps)
        expected_grad = torch.autograd.grad(expected, new)[0]
        expected = expected.detach()
        out, (got_new, got_old, got_adv, _) = _call_keeping(fn, new, old, adv, clip_eps, names=("logp_new", "logp_old", "advantages"))
        out = _loss_output(out, f"the loss for {what}")
        got = out.detach()
        if not torch.isclose(got, expected, atol=1e-5):
            sentence = _ppo_mistake(fn)
            if sentence:
                raise CheckFailed(f"for {what}: {sentence}")
            d = _digits(got.item(), expected.item())
            raise CheckFailed(f"for {what} your loss is {got.item():.{d}f}, expected {expected.item():.{d}f} = "
                              "-mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)).")
        out.backward()
        for name, tensor in (("logp_old", got_old), ("advantages", got_adv)):
            if _grad_of(out, tensor).abs().max() > 0:
                raise CheckFailed(f"for {what} the gradient flows into {name}; detach it ({name}.detach()): only the new policy's "
                                  "log-probabilities are trained, the old ones and the advantages are constants.")
        if not _close(_grad_of(out, got_new), expected_grad, atol=1e-6):
            raise CheckFailed(f"for {what} the value is right but the gradient with respect to logp_new is not; clipped samples "
                              "must get zero gradient (use torch.clamp on the ratio and torch.min, no .item() or detach on logp_new).")
    _check_devices(fn, _ppo_cases()[0][1:], _device_hint("logp_new"))
    return ("value and gradient of the clipped surrogate for ratios in and outside [1 - eps, 1 + eps], both signs of A, "
            "clip_eps 0.1 and 0.2, a batch of 1 and ratio 1; no gradient into logp_old or the advantages")
