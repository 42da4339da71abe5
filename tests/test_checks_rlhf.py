"""Homework 3's RLHF checkers (Bradley-Terry, Plackett-Luce, KL-penalised rewards, DPO, GRPO advantages, and "find the
bugs" in PPO-RLHF's losses) accept a student's correct code, refuse the course's, and reject planted bugs, each with the
sentence that names it.

The correct functions below are written as a student would, not copied from the package, so that the checkers are
tested against a second implementation of each formula.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import rejects
from rl4lm import checks
from rl4lm.checks import rlhf as rlhf_checks
from rl4lm.rlhf import dpo, grpo, ppo_lm, reward_model


# --------------------------------------------------------------------------- correct code, as a student writes it
def bt_student(reward_chosen, reward_rejected):
    return F.softplus(reward_rejected - reward_chosen).mean()  # -log sigma(x) = softplus(-x)


def pl_student(scores):
    K = scores.shape[1]
    stages = [torch.log_softmax(scores[:, j:], dim=-1)[:, 0] for j in range(K)]  # stage j picks column j among j..K-1
    return -torch.stack(stages, dim=1).sum(dim=1).mean()


def kl_student(score, logp, ref_logp, mask, beta, *, where="last", kl_sign=-1.0, masked=True, beta_on_score=False,
               everywhere=False, replace=False, kl_beta=None):
    """Per-token rewards, with switches for the planted mistakes."""
    m = mask.to(logp.dtype)
    T = logp.shape[1]
    positions = torch.arange(T, device=logp.device).expand_as(m)
    index = {"last": torch.where(m.bool(), positions, -1).amax(dim=1),
             "tensor_end": torch.full((len(score),), T - 1, device=logp.device),
             "first": torch.where(m.bool(), positions, T).amin(dim=1),
             "count": m.sum(dim=1).long() - 1}[where]
    at_score = F.one_hot(index, T).to(logp.dtype)  # (batch, T)
    penalty = kl_sign * (beta if kl_beta is None else kl_beta) * (logp - ref_logp) * (m if masked else 1.0)
    bonus = (beta * score if beta_on_score else score)[:, None]
    if everywhere:
        return penalty + bonus * m
    if replace:
        return penalty * (1 - at_score) + bonus * at_score
    return penalty + bonus * at_score


def dpo_student(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(chosen - rejected).mean(), chosen.detach(), rejected.detach()


def grpo_student(rewards, group_size, eps=1e-4):
    groups = rewards.reshape(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    return (centred / (torch.std(groups, dim=1, keepdim=True) + eps)).reshape(-1)


# The five planted bugs of BUGGY_PPO_LM_LOSSES, in the order the checker finds them: (buggy text, fixed text, diagnosis).
PPO_BUGS = [
    ("rewards = -beta * (old_logp - ref_logp)  #", "rewards = -beta * (old_logp - ref_logp) * m  #",
     "your rewards are not zero where mask is 0"),
    ("(new_values - advantages) ** 2", "(new_values - returns) ** 2", "the critic is pulled towards another target"),
    ("torch.exp(new_logp - old_logp)", "torch.exp(new_logp - old_logp.detach())", "sends a gradient into old_logp"),
    ("policy_loss = surrogate.mean()", "policy_loss = -surrogate.mean()", "makes response tokens with a positive advantage less likely"),
    ("policy_loss = -surrogate.mean()", "policy_loss = -masked_mean(surrogate, m)", "changes policy_loss from"),
]


def ppo_function(source: str):
    """The ppo_lm_losses a homework cell defines from ``source`` (run as a notebook cell would)."""
    namespace = {"__name__": "__main__"}
    exec(compile(source, "<cell: ppo_lm_losses>", "exec"), namespace)  # noqa: S102 - the course's own code
    return namespace["ppo_lm_losses"]


def fixed_source(count: int = len(PPO_BUGS)) -> str:
    """BUGGY_PPO_LM_LOSSES with its first ``count`` bugs fixed."""
    source = rlhf_checks.BUGGY_PPO_LM_LOSSES
    for buggy, fixed, _ in PPO_BUGS[:count]:
        assert source.count(buggy) == 1, buggy
        source = source.replace(buggy, fixed)
    return source


ppo_student = ppo_function(fixed_source())
STUDENT = {"bradley_terry_loss": bt_student, "plackett_luce_loss": pl_student, "kl_penalized_rewards": kl_student,
           "dpo_loss": dpo_student, "grpo_advantages": grpo_student, "ppo_lm_losses": ppo_student}
REFERENCE = {"bradley_terry_loss": reward_model.bradley_terry_loss, "plackett_luce_loss": reward_model.plackett_luce_loss,
             "kl_penalized_rewards": ppo_lm.kl_penalized_rewards, "dpo_loss": dpo.dpo_loss, "grpo_advantages": grpo.grpo_advantages,
             "ppo_lm_losses": ppo_lm.ppo_lm_losses}


@pytest.mark.parametrize("name", sorted(STUDENT))
def test_accepts_a_students_correct_code_and_refuses_the_course(name, capsys):
    assert checks.EXERCISES[name].topic == "rlhf" and checks.EXERCISES[name].reference is REFERENCE[name]
    assert getattr(checks, name)(STUDENT[name]) is True
    assert f"{STUDENT[name].__name__}: all checks passed" in capsys.readouterr().out
    rejects(getattr(checks, name), REFERENCE[name], "this is the course's own", "write the function yourself")


@pytest.mark.parametrize("name", sorted(STUDENT))
def test_not_implemented_returns_false(name, capsys):
    def stub(*args):
        raise NotImplementedError(f"{name}: not implemented yet - replace this line with your code")

    assert getattr(checks, name)(stub) is False
    assert f"{name}: not implemented yet" in capsys.readouterr().out


def test_expected_values_are_the_references():
    """The formulas inside the checkers agree with the package's references on the checkers' own cases."""
    for _, score, logp, ref_logp, mask, beta in rlhf_checks._kl_cases():
        assert torch.allclose(rlhf_checks._kl_variant(score, logp, ref_logp, mask, beta),
                              ppo_lm.kl_penalized_rewards(score, logp, ref_logp, mask, beta))
    for _, rewards, group_size, eps in rlhf_checks._grpo_cases():
        eps = 1e-4 if eps is None else eps
        assert torch.allclose(rlhf_checks._grpo_variant(rewards, group_size, eps), grpo.grpo_advantages(rewards, group_size, eps))
    for _, scores in rlhf_checks._pl_cases():
        assert torch.allclose(rlhf_checks._pl_loss(scores), reward_model.plackett_luce_loss(scores))
    scores = torch.randn(5, 2)
    assert torch.allclose(reward_model.plackett_luce_loss(scores), reward_model.bradley_terry_loss(scores[:, 0], scores[:, 1])[0])


# --------------------------------------------------------------------------- 1. Bradley-Terry
def test_bradley_terry_loss_bugs():
    def swapped(reward_chosen, reward_rejected):
        return bt_student(reward_rejected, reward_chosen)

    def log_of_sigmoid(reward_chosen, reward_rejected):
        return -torch.log(torch.sigmoid(reward_chosen - reward_rejected)).mean()

    def clamped(reward_chosen, reward_rejected):
        return -torch.log(torch.sigmoid(reward_chosen - reward_rejected).clamp(min=1e-8)).mean()

    def sums(reward_chosen, reward_rejected):
        return F.softplus(reward_rejected - reward_chosen).sum()

    def no_minus(reward_chosen, reward_rejected):
        return F.logsigmoid(reward_chosen - reward_rejected).mean()

    def no_log(reward_chosen, reward_rejected):
        return -torch.sigmoid(reward_chosen - reward_rejected).mean()

    def detached_rejected(reward_chosen, reward_rejected):
        return bt_student(reward_chosen, reward_rejected.detach())

    def per_pair(reward_chosen, reward_rejected):
        return F.softplus(reward_rejected - reward_chosen)

    def cpu_zeros(reward_chosen, reward_rejected):
        return (F.softplus(reward_rejected - reward_chosen) + torch.zeros(len(reward_chosen))).mean()

    def in_place(reward_chosen, reward_rejected):
        with torch.no_grad():
            reward_chosen -= reward_rejected
        return F.softplus(-reward_chosen).mean()

    rejects(checks.bradley_terry_loss, swapped, "the arguments are swapped")
    rejects(checks.bradley_terry_loss, log_of_sigmoid, "margins of +100 and -100", "your loss is inf", "logsigmoid")
    rejects(checks.bradley_terry_loss, clamped, "margins of +100 and -100", "clamped log(sigmoid)")
    rejects(checks.bradley_terry_loss, sums, "you sum over the 8 pairs")
    rejects(checks.bradley_terry_loss, no_minus, "no minus sign")
    rejects(checks.bradley_terry_loss, no_log, "without the log")
    rejects(checks.bradley_terry_loss, detached_rejected, "no gradient reaches reward_rejected")
    rejects(checks.bradley_terry_loss, per_pair, "has shape (8)", "one number")
    rejects(checks.bradley_terry_loss, cpu_zeros, "creates a tensor on the CPU")
    rejects(checks.bradley_terry_loss, in_place, "changed the reward_chosen")
    assert checks.bradley_terry_loss(lambda c, r: (bt_student(c, r), {"accuracy": 1.0}))  # the package's (loss, metrics) form


# --------------------------------------------------------------------------- 2. Plackett-Luce
def test_plackett_luce_loss_bugs():
    def reversed_order(scores):
        return pl_student(scores.flip(-1))

    def softmax_of_all(scores):
        return -torch.log_softmax(scores, dim=-1).sum(dim=-1).mean()

    def sums_batch(scores):
        return pl_student(scores) * scores.shape[0]

    def first_stage(scores):
        return -torch.log_softmax(scores, dim=-1)[:, 0].mean()

    def exp_overflow(scores):
        rest = torch.exp(scores).flip(-1).cumsum(-1).flip(-1)
        return -(scores - torch.log(rest)).sum(-1).mean()

    def mean_over_stages(scores):
        return pl_student(scores) / scores.shape[1]

    def k1_nan(scores):
        return pl_student(scores) * (scores.shape[1] - 1) / (scores.shape[1] - 1)

    def k1_refused(scores):
        if scores.shape[1] < 2:
            raise ValueError("scores needs k >= 2 columns")
        return pl_student(scores)

    rejects(checks.plackett_luce_loss, reversed_order, "you rank column K - 1 first")
    rejects(checks.plackett_luce_loss, softmax_of_all, "normalises over all K responses")
    rejects(checks.plackett_luce_loss, sums_batch, "you sum over the batch")
    rejects(checks.plackett_luce_loss, first_stage, "only the first choice")
    rejects(checks.plackett_luce_loss, exp_overflow, "scores between -100 and 100", "exp(100) overflows")
    rejects(checks.plackett_luce_loss, mean_over_stages, "average over the K stages")
    rejects(checks.plackett_luce_loss, k1_nan, "K = 1", "NaN")
    assert checks.plackett_luce_loss(k1_refused)  # K = 1: a ValueError is accepted as well as 0


# --------------------------------------------------------------------------- 3. KL-penalised rewards
def test_kl_penalized_rewards_bugs():
    def variant(**switches):
        return lambda *args: kl_student(*args, **switches)

    bugs = {
        "at the last position of the tensor (column T - 1)": dict(where="tensor_end"),
        "at the first response token": dict(where="first"),
        "position mask.sum() - 1": dict(where="count"),
        "KL term has the wrong sign": dict(kl_sign=1.0),
        "KL penalty on every position": dict(masked=False),
        "you multiply the score by beta": dict(beta_on_score=True),
        "add the score to every response token": dict(everywhere=True),
        "replace the KL penalty by the score": dict(replace=True),
        "KL penalty ignores beta": dict(kl_beta=1.0),
    }
    for fragment, switches in bugs.items():
        rejects(checks.kl_penalized_rewards, variant(**switches), fragment)

    def cpu_positions(score, logp, ref_logp, mask, beta):
        positions = torch.arange(logp.shape[1]).expand_as(logp)  # made on the CPU
        last = torch.where(mask.bool(), positions, -1).amax(dim=1)
        return -beta * (logp - ref_logp) * mask + score[:, None] * F.one_hot(last, logp.shape[1])

    def writes_into_logp(score, logp, ref_logp, mask, beta):
        logp -= ref_logp
        return kl_student(score, logp, torch.zeros_like(logp), mask, beta)

    rejects(checks.kl_penalized_rewards, cpu_positions, "creates a tensor on the CPU", "logp.device")
    rejects(checks.kl_penalized_rewards, writes_into_logp, "changed the logp passed to it")


# --------------------------------------------------------------------------- 4. DPO
def test_dpo_loss_bugs():
    def loss_of(h, beta, chosen, rejected):
        return -F.logsigmoid(beta * h).mean(), chosen.detach(), rejected.detach()

    def parts(pc, pr, rc, rr, beta):
        return beta * (pc - rc), beta * (pr - rr)

    def no_beta(pc, pr, rc, rr, beta):
        return loss_of((pc - rc) - (pr - rr), 1.0, *parts(pc, pr, rc, rr, beta))

    def beta_outside(pc, pr, rc, rr, beta):
        _, c, r = dpo_student(pc, pr, rc, rr, beta)
        return -beta * F.logsigmoid((pc - rc) - (pr - rr)).mean(), c, r

    def reference_minus_policy(pc, pr, rc, rr, beta):
        return loss_of((rc - pc) - (rr - pr), beta, *parts(pc, pr, rc, rr, beta))

    def reference_added(pc, pr, rc, rr, beta):
        return loss_of((pc - pr) - (rr - rc), beta, *parts(pc, pr, rc, rr, beta))

    def swapped(pc, pr, rc, rr, beta):
        return dpo_student(pr, pc, rr, rc, beta)

    def rewards_not_detached(pc, pr, rc, rr, beta):
        c, r = parts(pc, pr, rc, rr, beta)
        return -F.logsigmoid(c - r).mean(), c, r

    def rewards_without_beta(pc, pr, rc, rr, beta):
        loss, _, _ = dpo_student(pc, pr, rc, rr, beta)
        return loss, (pc - rc).detach(), (pr - rr).detach()

    def rewards_swapped(pc, pr, rc, rr, beta):
        loss, c, r = dpo_student(pc, pr, rc, rr, beta)
        return loss, r, c

    def log_of_sigmoid(pc, pr, rc, rr, beta):
        c, r = parts(pc, pr, rc, rr, beta)
        return -torch.log(torch.sigmoid(c - r)).mean(), c.detach(), r.detach()

    def sums(pc, pr, rc, rr, beta):
        loss, c, r = dpo_student(pc, pr, rc, rr, beta)
        return loss * len(pc), c, r

    def loss_only(pc, pr, rc, rr, beta):
        return dpo_student(pc, pr, rc, rr, beta)[0]

    rejects(checks.dpo_loss, no_beta, "beta is missing")
    rejects(checks.dpo_loss, beta_outside, "beta goes inside the sigmoid")
    rejects(checks.dpo_loss, reference_minus_policy, "prefers the rejected responses", "reference minus policy")
    rejects(checks.dpo_loss, reference_added, "reference log-probabilities enter with the wrong sign")
    rejects(checks.dpo_loss, swapped, "prefers the rejected responses")
    rejects(checks.dpo_loss, rewards_not_detached, "chosen_rewards carry a gradient", ".detach()")
    rejects(checks.dpo_loss, rewards_without_beta, "chosen_rewards lack beta")
    rejects(checks.dpo_loss, rewards_swapped, "chosen_rewards and rejected_rewards are swapped")
    rejects(checks.dpo_loss, log_of_sigmoid, "beta times the margin = +100 and -100", "logsigmoid")
    rejects(checks.dpo_loss, sums, "you sum over the pairs")
    rejects(checks.dpo_loss, loss_only, "triple (loss, chosen_rewards, rejected_rewards)", "Tensor")


# --------------------------------------------------------------------------- 5. GRPO advantages
def test_grpo_advantages_bugs():
    def whole_batch(rewards, group_size, eps=1e-4):
        return (rewards - rewards.mean()) / (rewards.std() + eps)

    def biased(rewards, group_size, eps=1e-4):
        groups = rewards.view(-1, group_size)
        return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True, unbiased=False) + eps)).flatten()

    def strided(rewards, group_size, eps=1e-4):
        groups = rewards.view(group_size, -1).T  # (prompts, G), but rewards[i::N/G]
        return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)).T.flatten()

    def eps_inside(rewards, group_size, eps=1e-4):
        groups = rewards.view(-1, group_size)
        return ((groups - groups.mean(1, keepdim=True)) / torch.sqrt(groups.var(1, keepdim=True) + eps)).flatten()

    def no_eps(rewards, group_size, eps=1e-4):
        groups = rewards.view(-1, group_size)
        return ((groups - groups.mean(1, keepdim=True)) / groups.std(1, keepdim=True)).flatten()

    def fixed_eps(rewards, group_size, eps=1e-4):
        return grpo_student(rewards, group_size, 1e-8)

    def no_std(rewards, group_size, eps=1e-4):
        groups = rewards.view(-1, group_size)
        return (groups - groups.mean(1, keepdim=True)).flatten()

    def per_group_shape(rewards, group_size, eps=1e-4):
        return grpo_student(rewards, group_size, eps).view(-1, group_size)

    def no_default_eps(rewards, group_size, eps):
        return grpo_student(rewards, group_size, eps)

    rejects(checks.grpo_advantages, whole_batch, "you normalise over the whole batch")
    rejects(checks.grpo_advantages, biased, "biased one")
    rejects(checks.grpo_advantages, strided, "your groups are strided")
    rejects(checks.grpo_advantages, eps_inside, "eps inside the square root")
    def nan_where_all_equal(rewards, group_size, eps=1e-4):
        std = rewards.view(-1, group_size).std(1).repeat_interleave(group_size)
        return torch.where(std > 0, grpo_student(rewards, group_size, eps), float("nan"))

    rejects(checks.grpo_advantages, no_eps, "you do not add eps = 1e-4, the default")
    rejects(checks.grpo_advantages, nan_where_all_equal, "group 1, whose rewards are all equal", "std + eps")
    def ignores_eps(rewards, group_size, eps=1e-4):
        return grpo_student(rewards, group_size)

    rejects(checks.grpo_advantages, fixed_eps, "you do not add eps = 1e-4, the default")
    rejects(checks.grpo_advantages, ignores_eps, "eps = 0.5 passed in", "you ignore the eps passed in")
    rejects(checks.grpo_advantages, no_std, "only subtract the group mean")
    rejects(checks.grpo_advantages, per_group_shape, "has shape (3, 4) but should have shape (12)")
    rejects(checks.grpo_advantages, no_default_eps, "raised TypeError", "eps")


# --------------------------------------------------------------------------- 6. find the bugs in PPO-RLHF's losses
def test_ppo_lm_losses_bugs():
    """The handed-out code fails with the first diagnosis; fixing the bugs one by one gives the next, then a pass."""
    source = rlhf_checks.BUGGY_PPO_LM_LOSSES
    assert "BUG" not in source.upper().replace("DEBUG", "")
    assert "import torch" in source and "from rl4lm.rlhf.ppo_lm import" in source
    for count, (_, _, diagnosis) in enumerate(PPO_BUGS):
        message = rejects(checks.ppo_lm_losses, ppo_function(fixed_source(count)), diagnosis)
        others = [d for i, (_, _, d) in enumerate(PPO_BUGS) if i != count]
        assert not any(d in message for d in others), message
    assert checks.ppo_lm_losses(ppo_function(fixed_source()))


def test_ppo_lm_losses_names_each_planted_bug_alone():
    """Each bug planted alone in the fixed code is named by its own diagnosis (the properties are tested independently)."""
    fixed = fixed_source()
    alone = [("rewards = -beta * (old_logp - ref_logp) * m  #", "rewards = -beta * (old_logp - ref_logp)  #"),
             ("(new_values - returns) ** 2", "(new_values - advantages) ** 2"),
             ("torch.exp(new_logp - old_logp.detach())", "torch.exp(new_logp - old_logp)"),
             ("policy_loss = -masked_mean(surrogate, m)", "policy_loss = masked_mean(surrogate, m)"),
             ("policy_loss = -masked_mean(surrogate, m)", "policy_loss = -surrogate.mean()")]
    for (right, wrong), (_, _, diagnosis) in zip(alone, PPO_BUGS):
        assert fixed.count(right) == 1
        rejects(checks.ppo_lm_losses, ppo_function(fixed.replace(right, wrong)), diagnosis)


def test_ppo_lm_losses_other_mistakes():
    fixed = fixed_source()
    mistakes = [
        ("rewards = -beta * (old_logp - ref_logp) * m", "rewards = -beta * (new_logp - ref_logp) * m", "rewards follow new_logp"),
        ("advantages = masked_whiten(advantages, m)", "pass", "standard deviation"),
        ("masked_gae(rewards, old_values,", "masked_gae(rewards, new_values,", "advantages follow new_values"),
        ("        advantages = masked_whiten(advantages, m)\n",
         "        advantages = masked_whiten(advantages, m)\n        returns = (advantages + old_values) * m\n",
         "returns are the whitened advantages plus the values"),
        ("value_loss = 0.5 * masked_mean(", "value_loss = masked_mean(", "your value_loss is"),
        ("policy_loss + vf_coef * value_loss", "policy_loss + value_loss", "not policy_loss + vf_coef * value_loss"),
        ("torch.min(ratio * advantages", "torch.max(ratio * advantages", "your policy_loss is"),
    ]
    for right, wrong, diagnosis in mistakes:
        assert fixed.count(right) == 1, right
        rejects(checks.ppo_lm_losses, ppo_function(fixed.replace(right, wrong)), diagnosis)

    def no_dict(*args):
        return ppo_student(*args)["loss"]

    def missing_returns(*args):
        out = ppo_student(*args)
        del out["returns"]
        return out

    rejects(checks.ppo_lm_losses, no_dict, "should return a dict")
    rejects(checks.ppo_lm_losses, missing_returns, "no key 'returns'")


# --------------------------------------------------------------------------- bad outputs: one sentence each
def _spoil(name: str, how: str):
    """The student's correct function with its (main) output spoiled: NaN, float64, a wrong shape or a list."""
    def first(out):  # the tensor to spoil, and how to put it back
        if isinstance(out, dict):
            return out["rewards"], lambda t: {**out, "rewards": t}
        if isinstance(out, tuple):
            return out[0], lambda t: (t, *out[1:])
        return out, lambda t: t

    def spoiled(*args):
        tensor, put = first(STUDENT[name](*args))
        if how == "nan":
            return put(tensor * float("nan"))
        if how == "float64":
            return put(tensor.double())
        if how == "shape":
            return put(tensor.unsqueeze(0))
        return put([tensor])

    return spoiled


BAD = {"nan": "NaN", "float64": "has dtype torch.float64; return torch.float32", "shape": "has shape (1",
       "list": "should be a torch.Tensor, but it is a list"}


@pytest.mark.parametrize("name", sorted(STUDENT))
@pytest.mark.parametrize("how", sorted(BAD))
def test_bad_outputs_are_one_sentence(name, how):
    rejects(getattr(checks, name), _spoil(name, how), BAD[how])
