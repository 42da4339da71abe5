"""Homework 2's RL checkers (dynamic programming, Q-learning, REINFORCE, GAE, PPO) accept a student's correct code and
reject planted bugs, each with the sentence that names it.

Planted bugs are built from student copies of the references (``student_copy``): the checkers refuse the course's
own functions, so a bug that called them would be rejected for that reason instead of its own.
"""
from __future__ import annotations

import numpy as np
import torch

from helpers import rejects, student_copy
from rl4lm import checks
from rl4lm.checks import pg as pg_checks
from rl4lm.rl import dp, policy_gradient, td

value_iteration = student_copy(dp.value_iteration)
policy_iteration = student_copy(dp.policy_iteration)
q_update = student_copy(td.q_learning_update)
reinforce = student_copy(policy_gradient.reinforce_loss)
gae = student_copy(policy_gradient.gae)
ppo_loss = student_copy(policy_gradient.ppo_clip_loss)


def sweeps(P, R, gamma, n=None, tol=1e-8, reduce=np.max):
    """Value iteration written as a student would: ``n`` sweeps (None: until the change is below tol)."""
    v = np.zeros(P.shape[0])
    for _ in range(n or 100_000):
        new = reduce(R + gamma * P @ v, axis=1)
        done = np.abs(new - v).max() < tol
        v = new
        if done and n is None:
            break
    return v


def greedy(P, R, gamma, v):
    return (R + gamma * P @ v).argmax(axis=1)


# --------------------------------------------------------------------------- 1. dynamic programming
def test_value_iteration_bugs():
    def returns_q(P, R, gamma, tol=1e-8):
        v = sweeps(P, R, gamma, tol=tol)
        return R + gamma * P @ v, greedy(P, R, gamma, v)

    def float_policy(P, R, gamma, tol=1e-8):
        v, policy = value_iteration(P, R, gamma, tol)
        return v, policy.astype(float)

    def renormalises_rows(P, R, gamma, tol=1e-8):
        stays = P.sum(-1, keepdims=True)
        return value_iteration(np.divide(P, stays, out=np.zeros_like(P), where=stays > 0), R, gamma, tol)

    def one_sweep(P, R, gamma, tol=1e-8):
        v = sweeps(P, R, gamma, n=1)
        return v, greedy(P, R, gamma, v)

    def loose_tol(P, R, gamma, tol=1e-8):
        v = sweeps(P, R, gamma, tol=1e-2)
        return v, greedy(P, R, gamma, v)

    def ignores_gamma(P, R, gamma, tol=1e-8):
        return value_iteration(P, R, 0.9, tol)

    def mean_over_actions(P, R, gamma, tol=1e-8):
        v = sweeps(P, R, gamma, tol=tol, reduce=np.mean)
        return v, greedy(P, R, gamma, v)

    def argmin_policy(P, R, gamma, tol=1e-8):
        v, _ = value_iteration(P, R, gamma, tol)
        return v, (R + gamma * P @ v).argmin(axis=1)

    def never_stops(P, R, gamma, tol=1e-8):
        v, change = np.zeros(P.shape[0]), np.inf
        while change > tol:
            new = (R + gamma * P @ v).max(axis=1)
            change = np.abs(new - v).max() + 1.0  # a stopping test that is never met
            v = new
        return v, greedy(P, R, gamma, v)

    def changes_P(P, R, gamma, tol=1e-8):
        P *= 1.0
        P[0, 0, 0] += 0.0
        P /= np.maximum(P.sum(-1, keepdims=True), 1.0) + 1e-3
        return value_iteration(P, R, gamma, tol)

    rejects(checks.value_iteration, returns_q, "that is q(s, a)", "v(s) = max_a q(s, a)")
    rejects(checks.value_iteration, float_policy, "dtype float64", "return integers")
    rejects(checks.value_iteration, renormalises_rows, "an episode that never ends", "use P as given")
    rejects(checks.value_iteration, one_sweep, "single sweep")
    rejects(checks.value_iteration, loose_tol, "not a fixed point", "below tol")
    rejects(checks.value_iteration, ignores_gamma, "gamma = 0.9, not the gamma = 0.95 passed in")
    rejects(checks.value_iteration, mean_over_actions, "uniformly random policy", "max over actions")
    rejects(checks.value_iteration, argmin_policy, "worst action", "argmax")
    rejects(checks.value_iteration, never_stops, f"did not return within {pg_checks.TIME_LIMIT:g} s", "largest change of v")
    rejects(checks.value_iteration, changes_P, "changed the P passed to it")


def test_policy_iteration_bugs():
    def random_tie_break(P, R, gamma):
        rng = np.random.default_rng()
        policy = np.zeros(P.shape[0], dtype=np.int64)
        while True:
            v = dp.evaluate_policy(P, R, policy, gamma)
            q = R + gamma * P @ v
            best = np.where(np.isclose(q, q.max(axis=1, keepdims=True)), rng.random(q.shape), -1).argmax(axis=1)
            if np.array_equal(best, policy):
                return v, policy
            policy = best

    def one_improvement(P, R, gamma):
        policy = np.zeros(P.shape[0], dtype=np.int64)
        v = dp.evaluate_policy(P, R, policy, gamma)
        policy = greedy(P, R, gamma, v)
        return dp.evaluate_policy(P, R, policy, gamma), policy

    def initial_policy(P, R, gamma):
        policy = np.zeros(P.shape[0], dtype=np.int64)
        return dp.evaluate_policy(P, R, policy, gamma), policy

    def value_of_the_previous_policy(P, R, gamma):
        v, policy = policy_iteration(P, R, gamma)
        return v, np.zeros_like(policy)

    def float_policy(P, R, gamma):
        v, policy = policy_iteration(P, R, gamma)
        return v, policy.astype(np.float32)

    def values_of_the_initial_policy(P, R, gamma):
        v, policy = policy_iteration(P, R, gamma)
        return dp.evaluate_policy(P, R, np.zeros_like(policy), gamma), policy

    rejects(checks.policy_iteration, random_tie_break, f"did not return within {pg_checks.TIME_LIMIT:g} s", "ties")
    rejects(checks.policy_iteration, one_improvement, "was not improved until it was stable", "until no action changes")
    rejects(checks.policy_iteration, lambda P, R, gamma: initial_policy(P, R, gamma), "was not improved until it was stable")
    rejects(checks.policy_iteration, value_of_the_previous_policy, "your v is optimal but your policy is worth only")
    rejects(checks.policy_iteration, float_policy, "dtype float32", "return integers")
    rejects(checks.policy_iteration, values_of_the_initial_policy, "not the value of your policy")


def test_dp_checks_leave_no_alarm_behind():
    import signal

    for name, fn in (("value_iteration", value_iteration), ("policy_iteration", policy_iteration)):
        assert getattr(checks, name)(fn)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


# --------------------------------------------------------------------------- 2. Q-learning
def test_q_learning_update_bugs():
    def bootstraps_past_terminal(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] += alpha * (reward + gamma * q[s_next].max() - q[s, a])

    def same_action(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] += alpha * (reward + (0 if terminated else gamma * q[s_next, a]) - q[s, a])

    def mean_next(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] += alpha * (reward + (0 if terminated else gamma * q[s_next].mean()) - q[s, a])

    def no_alpha(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] = reward + (0 if terminated else gamma * q[s_next].max())

    def wrong_sign(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] -= alpha * (reward + (0 if terminated else gamma * q[s_next].max()) - q[s, a])

    def returns_a_copy(q, s, a, reward, s_next, terminated, alpha, gamma):
        q = q.copy()
        q_update(q, s, a, reward, s_next, terminated, alpha, gamma)
        return q

    def updates_the_row(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s] += alpha * (reward + (0 if terminated else gamma * q[s_next].max()) - q[s, a])

    def no_discount(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] += alpha * (reward + (0 if terminated else q[s_next].max()) - q[s, a])

    rejects(checks.q_learning_update, bootstraps_past_terminal, "terminated=True", "the reward alone")
    rejects(checks.q_learning_update, same_action, "Q(s', a) of the same action", "max_a' Q(s', a')")
    rejects(checks.q_learning_update, mean_next, "averages Q(s', .)", "takes the max")
    rejects(checks.q_learning_update, no_alpha, "you set Q(s, a) to the target", "alpha = 0.1")
    rejects(checks.q_learning_update, wrong_sign, "away from the target")
    rejects(checks.q_learning_update, returns_a_copy, "returns a new table and leaves q unchanged", "in place")
    rejects(checks.q_learning_update, updates_the_row, "also changed Q[1, 0]", "only Q[s, a] changes")
    rejects(checks.q_learning_update, no_discount, "does not discount", "gamma = 0.9")


# --------------------------------------------------------------------------- 3. REINFORCE
def test_reinforce_loss_bugs():
    def gradient_through_baseline(logprobs, returns, baseline):
        return -(logprobs * (returns - baseline)).mean()

    def sums(logprobs, returns, baseline):
        return -(logprobs * (returns - baseline.detach())).sum()

    def wrong_sign(logprobs, returns, baseline):
        return (logprobs * (returns - baseline.detach())).mean()

    def forgets_baseline(logprobs, returns, baseline):
        return -(logprobs * returns).mean()

    def no_gradient(logprobs, returns, baseline):
        return torch.tensor(reinforce(logprobs, returns, baseline).item())

    def per_sample(logprobs, returns, baseline):
        return -(logprobs * (returns - baseline.detach()))

    def float64(logprobs, returns, baseline):
        return reinforce(logprobs, returns, baseline).double()

    def numpy_out(logprobs, returns, baseline):
        return reinforce(logprobs, returns, baseline).detach().numpy()

    def nan(logprobs, returns, baseline):
        return reinforce(logprobs, returns, baseline) * float("nan")

    def cpu_zeros(logprobs, returns, baseline):
        baseline = baseline.detach() + torch.zeros(len(logprobs))  # made on the CPU
        return -(logprobs * (returns - baseline)).mean()

    rejects(checks.reinforce_loss, gradient_through_baseline, "gradient flows into the baseline", "baseline.detach()")
    rejects(checks.reinforce_loss, sums, "you sum over the 6 samples", "take the mean")
    rejects(checks.reinforce_loss, wrong_sign, "wrong sign")
    rejects(checks.reinforce_loss, forgets_baseline, "ignores the baseline")
    rejects(checks.reinforce_loss, no_gradient, "has no gradient")
    rejects(checks.reinforce_loss, per_sample, "has shape (6)", "average over the N samples")
    rejects(checks.reinforce_loss, float64, "has dtype torch.float64; return torch.float32")
    rejects(checks.reinforce_loss, numpy_out, "numpy array; return a torch.Tensor")
    rejects(checks.reinforce_loss, nan, "contains NaN")
    rejects(checks.reinforce_loss, cpu_zeros, "creates a tensor on the CPU", "logprobs.device")


# --------------------------------------------------------------------------- 4. GAE and PPO
def gae_loop(rewards, values, dones, last_value, gamma, lam, *, use_dones=True, carry_mask=True, next_done=False,
             bootstrap_last=True, add_values=True, swap=False, device_of_buffer=True):
    """A student's GAE with switches for the planted mistakes."""
    if swap:
        gamma, lam = lam, gamma
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards) if device_of_buffer else torch.zeros(rewards.shape)
    running = torch.zeros_like(last_value)
    next_value = last_value if bootstrap_last else torch.zeros_like(last_value)
    for t in reversed(range(T)):
        if not use_dones:
            done = torch.zeros_like(dones[t])
        elif next_done:
            done = dones[t + 1] if t + 1 < T else torch.zeros_like(dones[t])
        else:
            done = dones[t]
        delta = rewards[t] + gamma * next_value * (1 - done) - values[t]
        running = delta + gamma * lam * (1 - done if carry_mask else 1) * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values if add_values else advantages


def test_gae_bugs():
    bugs = {
        "bootstrap past the end of an episode": dict(use_dones=False),
        "still flows back across dones[t] = 1": dict(carry_mask=False),
        "you use dones[t + 1] where dones[t] belongs": dict(next_done=True),
        "does not bootstrap from last_value": dict(bootstrap_last=False),
        "your returns equal the advantages": dict(add_values=False),
        "gamma and lam are swapped": dict(swap=True),
        "creates a tensor on the CPU": dict(device_of_buffer=False),
    }
    for fragment, switches in bugs.items():
        rejects(checks.gae, lambda *args, s=switches: gae_loop(*args, **s), fragment)
    assert checks.gae(lambda *args: gae_loop(*args))  # the loop itself is right

    def float64(*args):
        return tuple(x.double() for x in gae(*args))

    def one_output(*args):
        return gae(*args)[0]

    def forward_loop(rewards, values, dones, last_value, gamma, lam):
        advantages = torch.zeros_like(rewards)
        for t in range(rewards.shape[0]):
            next_value = values[t + 1] if t + 1 < rewards.shape[0] else last_value
            advantages[t] = rewards[t] + gamma * next_value * (1 - dones[t]) - values[t]
            if t:
                advantages[t - 1] += gamma * lam * (1 - dones[t - 1]) * advantages[t]
        return advantages, advantages + values

    def writes_into_rewards(rewards, values, dones, last_value, gamma, lam):
        rewards += 0.0
        rewards[dones.bool()] = 0.0
        return gae(rewards, values, dones, last_value, gamma, lam)

    rejects(checks.gae, float64, "has dtype torch.float64")
    rejects(checks.gae, one_output, "pair (advantages, returns)")
    rejects(checks.gae, forward_loop, "compute backwards from t = T - 1")
    rejects(checks.gae, writes_into_rewards, "changed the rewards passed to it")


def test_ppo_clip_loss_bugs():
    def ratio_and_clip(logp_new, logp_old, advantages, clip_eps, ratio=None):
        ratio = torch.exp(logp_new - logp_old.detach()) if ratio is None else ratio
        return ratio, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)

    def max_of_negatives_as_min(logp_new, logp_old, advantages, clip_eps):
        ratio, clipped = ratio_and_clip(logp_new, logp_old, advantages, clip_eps)
        return torch.min(-ratio * advantages, -clipped * advantages).mean()

    def clips_the_product(logp_new, logp_old, advantages, clip_eps):
        ratio, _ = ratio_and_clip(logp_new, logp_old, advantages, clip_eps)
        return -torch.min(ratio * advantages, torch.clamp(ratio * advantages, 1 - clip_eps, 1 + clip_eps)).mean()

    def no_minus(logp_new, logp_old, advantages, clip_eps):
        return -ppo_loss(logp_new, logp_old, advantages, clip_eps)

    def ratio_of_logprobs(logp_new, logp_old, advantages, clip_eps):
        ratio, clipped = ratio_and_clip(logp_new, logp_old, advantages, clip_eps, ratio=logp_new / logp_old.detach())
        return -torch.min(ratio * advantages, clipped * advantages).mean()

    def forgets_exp(logp_new, logp_old, advantages, clip_eps):
        ratio, clipped = ratio_and_clip(logp_new, logp_old, advantages, clip_eps, ratio=logp_new - logp_old.detach())
        return -torch.min(ratio * advantages, clipped * advantages).mean()

    def gradient_through_old(logp_new, logp_old, advantages, clip_eps):
        ratio = torch.exp(logp_new - logp_old)
        return -torch.min(ratio * advantages.detach(), torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages.detach()).mean()

    def gradient_through_advantages(logp_new, logp_old, advantages, clip_eps):
        ratio, clipped = ratio_and_clip(logp_new, logp_old, advantages, clip_eps)
        return -torch.min(ratio * advantages, clipped * advantages).mean()

    def fixed_eps(logp_new, logp_old, advantages, clip_eps):
        return ppo_loss(logp_new, logp_old, advantages, 0.2)

    def per_sample(logp_new, logp_old, advantages, clip_eps):
        ratio, clipped = ratio_and_clip(logp_new, logp_old, advantages, clip_eps)
        return -torch.min(ratio * advantages.detach(), clipped * advantages.detach())

    def eps_tensor_on_cpu(logp_new, logp_old, advantages, clip_eps):
        ratio = torch.exp(logp_new - logp_old.detach())
        low, high = torch.full(ratio.shape, 1 - clip_eps), torch.full(ratio.shape, 1 + clip_eps)  # made on the CPU
        return -torch.min(ratio * advantages.detach(), torch.minimum(torch.maximum(ratio, low), high) * advantages.detach()).mean()

    rejects(checks.ppo_clip_loss, max_of_negatives_as_min, "larger of the two surrogates", "pessimistic")
    rejects(checks.ppo_clip_loss, clips_the_product, "clip the ratio alone")
    rejects(checks.ppo_clip_loss, no_minus, "no minus sign")
    rejects(checks.ppo_clip_loss, ratio_of_logprobs, "divides log-probabilities", "exp(logp_new - logp_old)")
    rejects(checks.ppo_clip_loss, forgets_exp, "the log of the ratio")
    rejects(checks.ppo_clip_loss, gradient_through_old, "gradient flows into logp_old")
    rejects(checks.ppo_clip_loss, gradient_through_advantages, "gradient flows into advantages")
    rejects(checks.ppo_clip_loss, fixed_eps, "0.2 instead of the clip_eps passed in")
    rejects(checks.ppo_clip_loss, per_sample, "has shape (8)")
    rejects(checks.ppo_clip_loss, eps_tensor_on_cpu, "creates a tensor on the CPU", "logp_new.device")


# --------------------------------------------------------------------------- mistakes found by the review (Homework 2)
def test_value_iteration_tells_early_stopping_from_a_wrong_backup():
    def sums_over_the_wrong_axis(P, R, gamma, tol=1e-8):  # v(s) instead of v(s'): converges, to the wrong values
        v = np.zeros(P.shape[0])
        while True:
            new = (R + gamma * (P * v[:, None, None]).sum(axis=2)).max(axis=1)
            if np.abs(new - v).max() < tol:
                return new, greedy(P, R, gamma, new)
            v = new

    def twenty_sweeps(P, R, gamma, tol=1e-8):
        v = sweeps(P, R, gamma, n=20)
        return v, greedy(P, R, gamma, v)

    def in_place_sweeps_with_loose_test(P, R, gamma, tol=1e-8):  # Gauss-Seidel that stops at 1000 tol
        v = np.zeros(P.shape[0])
        while True:
            change = 0.0
            for s in range(len(v)):
                new = (R[s] + gamma * P[s] @ v).max()
                change, v[s] = max(change, abs(new - v[s])), new
            if change < 1000 * tol:
                return v, greedy(P, R, gamma, v)

    rejects(checks.value_iteration, sums_over_the_wrong_axis, "returns the same v", "R + gamma * P @ v")
    rejects(checks.value_iteration, twenty_sweeps, "after 20 sweeps", "below tol")
    rejects(checks.value_iteration, in_place_sweeps_with_loose_test, "not a fixed point", "keep sweeping")


def test_q_learning_target_read_after_the_update():
    def decays_first(q, s, a, reward, s_next, terminated, alpha, gamma):
        q[s, a] *= 1 - alpha
        q[s, a] += alpha * (reward + (0 if terminated else gamma * q[s_next].max()))

    rejects(checks.q_learning_update, decays_first, "alpha = 1 and s_next = s", "after you had already changed Q(s, a)")


def test_reinforce_loss_normalised_or_own_baseline():
    def normalises(logprobs, returns, baseline):
        advantage = returns - baseline.detach()
        return -(logprobs * (advantage - advantage.mean()) / (advantage.std() + 1e-8)).mean()

    def mean_return_as_baseline(logprobs, returns, baseline):
        return -(logprobs * (returns - returns.mean())).mean()

    rejects(checks.reinforce_loss, normalises, "you normalise (return - baseline)")
    rejects(checks.reinforce_loss, mean_return_as_baseline, "mean return instead of the baseline passed in")


def test_gae_masks_each_term_and_leaves_normalising_to_ppo():
    def delta_unmasked(rewards, values, dones, last_value, gamma, lam):
        advantages, running, next_value = torch.zeros_like(rewards), torch.zeros_like(last_value), last_value
        for t in reversed(range(rewards.shape[0])):
            running = rewards[t] + gamma * next_value - values[t] + gamma * lam * (1 - dones[t]) * running
            advantages[t], next_value = running, values[t]
        return advantages, advantages + values

    def last_step_unmasked(rewards, values, dones, last_value, gamma, lam):
        advantages, running, T = torch.zeros_like(rewards), torch.zeros_like(last_value), rewards.shape[0]
        for t in reversed(range(T)):
            next_value = last_value if t == T - 1 else values[t + 1] * (1 - dones[t])
            running = rewards[t] + gamma * next_value - values[t] + gamma * lam * (1 - dones[t]) * running
            advantages[t] = running
        return advantages, advantages + values

    def normalised(*args):
        advantages, returns = gae(*args)
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8), returns

    rejects(checks.gae, delta_unmasked, "running advantage stops at dones[t] = 1, but delta_t still adds gamma V_{t+1}")
    rejects(checks.gae, last_step_unmasked, "at the last step you bootstrap from last_value")
    rejects(checks.gae, normalised, "normalised to mean 0")


def test_ppo_clip_loss_diagnoses_hold_on_every_case():
    def ratio(logp_new, logp_old):
        return torch.exp(logp_new - logp_old.detach())

    def min_of_means(logp_new, logp_old, advantages, clip_eps):  # clips, but takes the min of the averages
        r, a = ratio(logp_new, logp_old), advantages.detach()
        return -torch.min((r * a).mean(), (torch.clamp(r, 1 - clip_eps, 1 + clip_eps) * a).mean())

    def clips_the_log_ratio(logp_new, logp_old, advantages, clip_eps):
        log_ratio, a = logp_new - logp_old.detach(), advantages.detach()
        return -torch.min(log_ratio.exp() * a, torch.clamp(log_ratio, -clip_eps, clip_eps).exp() * a).mean()

    def normalises(logp_new, logp_old, advantages, clip_eps):  # as CleanRL's update loop does
        return ppo_loss(logp_new, logp_old, (advantages - advantages.mean()) / (advantages.std() + 1e-8), clip_eps)

    def only_clipped(logp_new, logp_old, advantages, clip_eps):
        return -(torch.clamp(ratio(logp_new, logp_old), 1 - clip_eps, 1 + clip_eps) * advantages.detach()).mean()

    message = rejects(checks.ppo_clip_loss, min_of_means, "min of the two averaged surrogates")
    assert "you do not clip" not in message
    rejects(checks.ppo_clip_loss, clips_the_log_ratio, "clip the log-ratio", "[1 - eps, 1 + eps]")
    rejects(checks.ppo_clip_loss, normalises, "you normalise the advantages inside the loss")
    rejects(checks.ppo_clip_loss, only_clipped, "only the clipped surrogate")


def test_correct_variants_pass():
    def gauss_seidel(P, R, gamma, tol=1e-8):
        v = np.zeros(P.shape[0])
        while True:
            change = 0.0
            for s in range(len(v)):
                new = (R[s] + gamma * P[s] @ v).max()
                change, v[s] = max(change, abs(new - v[s])), new
            if change < tol:
                return v, greedy(P, R, gamma, v)

    def plain_argmax_policy_iteration(P, R, gamma):
        states, policy = np.arange(P.shape[0]), np.zeros(P.shape[0], dtype=np.int64)
        while True:
            v = np.linalg.solve(np.eye(len(states)) - gamma * P[states, policy], R[states, policy])
            new = (R + gamma * P @ v).argmax(axis=1)
            if np.array_equal(new, policy):
                return v, policy
            policy = new

    def ppo_by_sign_of_the_advantage(logp_new, logp_old, advantages, clip_eps):
        r, a = torch.exp(logp_new - logp_old.detach()), advantages.detach()
        return -(torch.where(a > 0, torch.clamp(r, max=1 + clip_eps), torch.clamp(r, min=1 - clip_eps)) * a).mean()

    assert checks.value_iteration(gauss_seidel)
    assert checks.policy_iteration(plain_argmax_policy_iteration)
    assert checks.ppo_clip_loss(ppo_by_sign_of_the_advantage)


def test_greedy_step_without_gamma():
    def value_iteration_greedy_without_gamma(P, R, gamma, tol=1e-8):
        v = sweeps(P, R, gamma, tol=tol)
        return v, greedy(P, R, 1.0, v)

    def policy_iteration_greedy_without_gamma(P, R, gamma):
        states, policy = np.arange(P.shape[0]), np.zeros(P.shape[0], dtype=np.int64)
        for _ in range(100):
            v = np.linalg.solve(np.eye(len(states)) - gamma * P[states, policy], R[states, policy])
            new = greedy(P, R, 1.0, v)
            if np.array_equal(new, policy):
                break
            policy = new
        return v, policy

    rejects(checks.value_iteration, value_iteration_greedy_without_gamma, "reward 1 now and 1.6 one step later", "without gamma")
    rejects(checks.policy_iteration, policy_iteration_greedy_without_gamma, "without gamma", "use gamma in the greedy step")
