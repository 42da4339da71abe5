"""Checkers of Homework 3's RLHF exercises: the Bradley-Terry and Plackett-Luce losses of a reward model, the KL-penalised
per-token rewards of PPO-RLHF, DPO's loss, GRPO's group-normalised advantages, and "find the bugs" in the losses of one
PPO-RLHF update (:data:`BUGGY_PPO_LM_LOSSES` is the code the homework hands out).

As in :mod:`.pg`, every checker computes what it expects first, calls the student's function on copies of its inputs,
names each known mistake in one sentence and ends with a call on the meta device (tensors made on the CPU). Each
checker's docstring lists the cases it tests, in the words the homework states them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rlhf import dpo, grpo, ppo_lm, reward_model
from ._core import CheckFailed, _expect_tensor, _fmt, exercise
from .pg import _call_keeping, _check_devices, _close, _device_hint, _digits, _grad_of

__all__ = ["BUGGY_PPO_LM_LOSSES"]


# --------------------------------------------------------------------------- shared helpers
def _scalar_output(out, what: str, average: str, grad: bool = True) -> torch.Tensor:
    """A 0-dimensional float32 tensor (with a gradient if ``grad``), or one sentence; NaN and inf are the caller's to judge."""
    _expect_tensor(out, what, dtype=None, finite=None)
    if out.dim() != 0:
        raise CheckFailed(f"{what} has shape {_fmt(out.shape)}; return one number (a 0-dimensional tensor): {average}.")
    _expect_tensor(out, what, finite=None)
    if grad and not out.requires_grad:
        raise CheckFailed(f"{what} has no gradient; compute it with torch operations on the inputs (no .item(), numpy, floats "
                          "or torch.no_grad), since training differentiates it.")
    return out


def _not_finite(out: torch.Tensor) -> bool:
    """True if a tensor holds NaN or an infinity."""
    return not bool(torch.isfinite(out.detach()).all())


def _mistake(got: torch.Tensor, expected: torch.Tensor, variants: dict[str, tuple[torch.Tensor, str]], atol: float = 1e-5) -> str | None:
    """The sentence of the first known mistake whose value the student's output equals (and the right answer does not)."""
    for value, sentence in variants.values():
        if not _close(value, expected, atol) and _close(got, value, atol):
            return sentence
    return None


def _leaves(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Fresh leaf tensors that require gradients (to compare the student's gradients with the expected ones)."""
    return tuple(t.detach().clone().requires_grad_() for t in tensors)


def _overflow(what: str, got: torch.Tensor) -> str:
    """The sentence for a loss that is NaN or inf at large margins: log(sigmoid(x)) underflows in float32."""
    return (f"for {what} your loss is {float(got.detach()):g}: sigma(-100) rounds to 0 in float32, so log(sigmoid(x)) gives "
            "-inf; compute log sigma(x) with torch.nn.functional.logsigmoid(x) (or -softplus(-x)), which stays finite.")


# --------------------------------------------------------------------------- 1. Bradley-Terry
def _bt_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(description, reward_chosen, reward_rejected)."""
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(8, generator=g) * 1.5, torch.randn(8, generator=g) * 1.5
    return [("8 pairs with margins of both signs", chosen, rejected),
            ("a batch of 1 pair", torch.tensor([0.3]), torch.tensor([-0.5])),
            ("equal rewards (the loss is log 2)", chosen[:4].clone(), chosen[:4].clone()),
            ("margins of +100 and -100 (the loss must stay finite)", torch.tensor([50.0, -50.0, 1.0]), torch.tensor([-50.0, 50.0, 0.5]))]


def _bt_variants(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """Known mistakes: name -> (the loss it gives, its diagnosis)."""
    margin = chosen - rejected
    n = len(margin)
    return {
        "swapped": (F.softplus(margin).mean(), "your loss is small when the rejected response has the larger reward: the arguments "
                                              "are swapped; the loss is -mean(log sigma(reward_chosen - reward_rejected))."),
        "sum": (F.softplus(-margin).sum(), f"you sum over the {n} pairs; take the mean."),
        "no_minus": (F.logsigmoid(margin).mean(), "your loss has no minus sign: it is the log-likelihood of the choices, which "
                                                 "training maximises; return -mean(log sigma(reward_chosen - reward_rejected))."),
        "no_log": (-torch.sigmoid(margin).mean(), "you take sigma(margin) without the log; the loss is -mean(log sigma(margin))."),
        "one_minus": ((1 - torch.sigmoid(margin)).mean(), "your loss is 1 - sigma(margin), without the log; the loss is "
                                                          "-mean(log sigma(margin))."),
        "no_sigmoid": (-margin.mean(), "your loss is -mean(margin), without log sigma; the loss is -mean(log sigma(margin)): "
                                       "unbounded margins would make it fall forever."),
    }


def _unpack_bt(out):
    """The loss of a student's output; the course's own (loss, metrics) pair is accepted too."""
    return out[0] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) else out


@exercise(reference=reward_model.bradley_terry_loss, probe=lambda: (torch.zeros(1), torch.zeros(1)))
def bradley_terry_loss(fn):
    """Value and gradient of -mean(log sigma(reward_chosen - reward_rejected)), a scalar.

    Cases tested: 8 pairs with margins of both signs; a batch of 1 pair; equal rewards (loss log 2); margins of +100 and
    -100 (the loss must stay finite: log(sigmoid(-100)) is -inf in float32). Also: the gradient reaches both rewards, the
    inputs are left unchanged, and no tensor is made on the CPU. A (loss, metrics) pair is accepted as well.
    """
    for what, chosen, rejected in _bt_cases():
        expected = F.softplus(rejected - chosen).mean()
        grad_chosen = -torch.sigmoid(rejected - chosen) / len(chosen)  # d loss / d reward_chosen = -(d loss / d reward_rejected)
        out, (got_chosen, got_rejected) = _call_keeping(fn, *_leaves(chosen, rejected), names=("reward_chosen", "reward_rejected"))
        loss = _scalar_output(_unpack_bt(out), f"the loss for {what}", "average over the pairs")
        got = loss.detach()
        if _not_finite(got) and "100" in what:
            raise CheckFailed(_overflow(what, got))
        _expect_tensor(loss, f"the loss for {what}")
        if not _close(got, expected):
            sentence = _mistake(got, expected, _bt_variants(chosen, rejected))
            if sentence:
                raise CheckFailed(f"for {what}: {sentence}")
            d = _digits(got.item(), expected.item())
            tail = ("; a clamped log(sigmoid) caps the loss of a badly ordered pair: use torch.nn.functional.logsigmoid."
                    if "100" in what else " = -mean(log sigma(reward_chosen - reward_rejected)).")
            raise CheckFailed(f"for {what} your loss is {got.item():.{d}f}, expected {expected.item():.{d}f}{tail}")
        loss.backward()
        for name, leaf, grad in (("reward_chosen", got_chosen, grad_chosen), ("reward_rejected", got_rejected, -grad_chosen)):
            if _grad_of(loss, leaf).abs().max() == 0:
                raise CheckFailed(f"for {what} no gradient reaches {name}; the reward model learns from both rewards of a pair "
                                  "(no detach, .item() or torch.no_grad).")
            if not _close(_grad_of(loss, leaf), grad, atol=1e-6):
                raise CheckFailed(f"for {what} the value is right but the gradient with respect to {name} is not; compute the loss "
                                  "with torch operations only (logsigmoid, mean).")
    _check_devices(fn, _bt_cases()[0][1:], _device_hint("reward_chosen"))
    return "value and gradient for margins of both signs, a batch of 1, equal rewards (log 2) and margins of +-100"


# --------------------------------------------------------------------------- 2. Plackett-Luce
def _pl_loss(scores: torch.Tensor) -> torch.Tensor:
    """-mean_b sum_j [s_j - log sum_{m >= j} exp s_m]."""
    rest = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)  # (batch, K)
    return -(scores - rest).sum(dim=-1).mean()


def _pl_cases() -> list[tuple[str, torch.Tensor]]:
    """(description, scores (batch, K) with column 0 the best)."""
    g = torch.Generator().manual_seed(1)
    return [("a batch of 4 rankings of K = 4 responses", torch.randn(4, 4, generator=g) * 2),
            ("a batch of 1 ranking of K = 3 responses", torch.randn(1, 3, generator=g)),
            ("K = 2 (equal to the Bradley-Terry loss of columns 0 and 1)", torch.randn(5, 2, generator=g)),
            ("K = 5 equal scores (the loss is log 5! = 4.787)", torch.full((2, 5), 1.5)),
            ("scores between -100 and 100 (the loss must stay finite)", torch.tensor([[100.0, -100.0, 50.0], [-100.0, 0.0, 100.0]]))]


def _pl_variants(scores: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """Known mistakes: name -> (the loss it gives, its diagnosis)."""
    rest = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)
    return {
        "reversed": (_pl_loss(scores.flip(-1)), "you rank column K - 1 first; column 0 is the best response, so the first stage "
                                                "chooses column 0 among all K, the next column 1 among the rest."),
        "softmax_all": (-torch.log_softmax(scores, dim=-1).sum(-1).mean(), "every stage of your ranking normalises over all K "
                        "responses; stage j chooses among the responses not yet ranked: s_j - log sum_{m >= j} exp s_m."),
        "sum": (-(scores - rest).sum(), "you sum over the batch; take the mean over the batch of each ranking's negative "
                                        "log-likelihood."),
        "no_minus": ((scores - rest).sum(-1).mean(), "your loss has no minus sign: it is the log-likelihood of the rankings; "
                                                     "return its negative."),
        "first_stage": (-torch.log_softmax(scores, dim=-1)[:, 0].mean(), "you score only the first choice (the best of all K); "
                        "the ranking's likelihood is the product over all stages: sum the log-probabilities of every stage."),
        "mean_stages": (-(scores - rest).mean(), "you average over the K stages too; sum over the stages, then take the mean "
                                                 "over the batch."),
    }


def _pl_one_column(fn) -> None:
    """K = 1: a ranking of one response has probability 1, so the loss is 0; a ValueError is accepted as well."""
    what = "K = 1 (a ranking of one response)"
    try:
        out, _ = _call_keeping(fn, torch.tensor([[0.7], [-1.2], [2.0]]), names=("scores",))
    except CheckFailed as failure:
        if "raised ValueError" in str(failure):
            return
        raise
    got = _scalar_output(out, f"the loss for {what}", "average over the batch", grad=False).detach()
    _expect_tensor(got, f"the loss for {what}")
    if abs(got.item()) > 1e-6:
        raise CheckFailed(f"for {what} your loss is {got.item():.4f}; a single response is ranked first with probability 1, so "
                          "the loss is 0 (or raise a ValueError that K must be at least 2).")


@exercise(reference=reward_model.plackett_luce_loss, probe=lambda: (torch.zeros(1, 2),))
def plackett_luce_loss(fn):
    """Value and gradient of -mean_b sum_j [s_j - log sum_{m >= j} exp s_m], column 0 the best.

    Cases tested: a batch of 4 rankings of K = 4; a batch of 1 ranking of K = 3; K = 2 (equals the Bradley-Terry loss of
    columns 0 and 1); K = 5 equal scores (loss log 5!); scores between -100 and 100 (the loss must stay finite);
    K = 1 (loss 0, or a ValueError). Also: the inputs are left unchanged and no tensor is made on the CPU.
    """
    for what, scores in _pl_cases():
        (leaf,) = _leaves(scores)
        expected = _pl_loss(leaf)
        expected_grad = torch.autograd.grad(expected, leaf)[0]
        expected = expected.detach()
        out, (got_scores,) = _call_keeping(fn, leaf, names=("scores",))
        loss = _scalar_output(out, f"the loss for {what}", "average over the batch")
        got = loss.detach()
        if _not_finite(got) and "100" in what:
            raise CheckFailed(f"for {what} your loss is {got.item():g}: exp(100) overflows float32; compute log sum_{{m >= j}} "
                              "exp s_m with torch.logsumexp (or logcumsumexp, or log_softmax of the remaining columns).")
        _expect_tensor(loss, f"the loss for {what}")
        if not _close(got, expected):
            sentence = _mistake(got, expected, _pl_variants(scores))
            if sentence:
                raise CheckFailed(f"for {what}: {sentence}")
            d = _digits(got.item(), expected.item())
            raise CheckFailed(f"for {what} your loss is {got.item():.{d}f}, expected {expected.item():.{d}f} = "
                              "-mean over the batch of sum_j [s_j - log sum_{m >= j} exp s_m].")
        loss.backward()
        if not _close(_grad_of(loss, got_scores), expected_grad, atol=1e-6):
            raise CheckFailed(f"for {what} the value is right but the gradient with respect to the scores is not; compute the loss "
                              "with torch operations only (no .item() or detach).")
    _pl_one_column(fn)
    _check_devices(fn, (_pl_cases()[0][1],), _device_hint("scores"))
    return "value and gradient for K = 4, batch 1, K = 2 (Bradley-Terry), equal scores (log K!), scores of +-100, and K = 1"


# --------------------------------------------------------------------------- 3. KL-penalised rewards
def _kl_variant(score, logp, ref_logp, mask, beta: float, mistake: str | None = None) -> torch.Tensor:
    """-beta (logp - ref_logp) on the mask plus the score on the last masked token, or that with one known mistake."""
    m = mask.to(torch.float32)
    batch, T = m.shape
    positions = torch.arange(T).expand(batch, T)
    last = torch.where(m.bool(), positions, -1).amax(dim=1)  # (batch,)
    first = torch.where(m.bool(), positions, T).amin(dim=1)
    kl = logp - ref_logp  # (batch, T)
    penalty = {"kl_plus": beta * kl * m, "kl_unmasked": -beta * kl, "no_beta": -kl * m}.get(mistake, -beta * kl * m)
    where = {"last_of_tensor": torch.full_like(last, T - 1), "first_token": first,
             "count_minus_one": m.sum(dim=1).long() - 1}.get(mistake, last)
    rows = torch.arange(batch)
    rewards = penalty.clone()
    if mistake == "score_everywhere":
        return rewards + score[:, None] * m
    if mistake == "score_replaces":
        rewards[rows, where] = score
        return rewards
    rewards[rows, where] += beta * score if mistake == "beta_on_score" else score
    return rewards


_KL_MISTAKES = {
    "last_of_tensor": "you add the score at the last position of the tensor (column T - 1), which is padding for a response "
                      "padded on the right; add it at the last position where mask is 1.",
    "count_minus_one": "you add the score at position mask.sum() - 1, which assumes the response starts at column 0; with the "
                       "prompt padded on the left, find the last position where mask is 1.",
    "first_token": "you add the score at the first response token; the reward model scores the whole response, so its score "
                   "comes at the end, on the last position where mask is 1.",
    "kl_plus": "your KL term has the wrong sign: it rewards drifting away from the reference; the penalty is "
               "-beta * (logp - ref_logp).",
    "kl_unmasked": "you charge the KL penalty on every position, prompt and padding included; multiply it by mask, so that "
                   "only response tokens are penalised.",
    "no_beta": "your KL penalty ignores beta; it is -beta * (logp - ref_logp).",
    "beta_on_score": "you multiply the score by beta; beta weighs only the KL penalty: r_t = -beta (logp_t - ref_logp_t) + "
                     "score on the last token.",
    "score_everywhere": "you add the score to every response token; it comes once, on the last token where mask is 1.",
    "score_replaces": "on the last token you replace the KL penalty by the score; add the score to the penalty there.",
}


def _kl_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(description, score, logp, ref_logp, mask, beta); logp and ref_logp differ on prompt and padding positions too."""
    g = torch.Generator().manual_seed(2)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0],  # prompt on the left, response padded on the right
                         [0, 1, 1, 1, 1, 1, 1],  # response up to the last column
                         [0, 0, 0, 0, 1, 0, 0],  # a one-token response
                         [1, 1, 1, 1, 0, 0, 0]])  # a response from column 0
    logp, ref_logp = -torch.rand(4, 7, generator=g) * 3, -torch.rand(4, 7, generator=g) * 3
    score = torch.tensor([1.5, -0.7, 0.4, 2.2])
    what = "4 responses with prompts padded on the left and responses on the right, one of a single token"
    return [(f"{what}, beta = 0.1", score, logp, ref_logp, mask, 0.1),
            (f"{what}, beta = 0", score, logp, ref_logp, mask, 0.0),
            ("a batch of 1 response that ends at the last column, beta = 0.5", score[1:2], logp[1:2], ref_logp[1:2], mask[1:2], 0.5),
            ("2 responses without any padding, beta = 0.2", score[:2], logp[:2, :5], ref_logp[:2, :5], torch.ones(2, 5, dtype=torch.long), 0.2)]


@exercise(reference=ppo_lm.kl_penalized_rewards, probe=lambda: (torch.zeros(1), torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), 0.1))
def kl_penalized_rewards(fn):
    """Compare with r_t = -beta (logp_t - ref_logp_t) where mask is 1, 0 elsewhere, plus the score on the last token where mask is 1.

    Cases tested: 4 responses with prompts padded on the left and responses padded on the right (one response ending at
    the last column, one of a single token, one starting at column 0), with beta = 0.1 and with beta = 0; a batch of 1
    response that ends at the last column; 2 responses without padding. The mask holds integers (0/1, dtype int64);
    logp and ref_logp differ on prompt and padding positions too. Also: the inputs are left unchanged and no tensor is
    made on the CPU.
    """
    for what, score, logp, ref_logp, mask, beta in _kl_cases():
        expected = _kl_variant(score, logp, ref_logp, mask, beta)
        out, _ = _call_keeping(fn, score, logp, ref_logp, mask, beta, names=("score", "logp", "ref_logp", "mask"))
        got = _expect_tensor(out, f"the rewards for {what}", logp.shape).detach()
        if _close(got, expected, atol=1e-5):
            continue
        for mistake, sentence in _KL_MISTAKES.items():
            variant = _kl_variant(score, logp, ref_logp, mask, beta, mistake)
            if not _close(variant, expected, 1e-5) and _close(got, variant, atol=1e-5):
                raise CheckFailed(f"for {what}: {sentence}")
        row, t = (int(i) for i in divmod(int((got - expected).abs().argmax()), got.shape[1]))
        raise CheckFailed(f"for {what} your reward at row {row}, position {t} is {got[row, t]:.4f}, expected {expected[row, t]:.4f} "
                          f"(mask there is {int(mask[row, t])}); the reward is -beta (logp - ref_logp) where mask is 1, 0 elsewhere, "
                          "plus the score on the last position where mask is 1.")
    _check_devices(fn, _kl_cases()[0][1:], _device_hint("logp", " (e.g. torch.arange(T, device=logp.device))"))
    return ("per-token rewards with prompts padded on the left and responses on the right, a one-token response, beta = 0, "
            "a batch of 1 and no padding")


# --------------------------------------------------------------------------- 4. DPO
def _dpo_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(description, policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): sequence log-probabilities (batch,)."""
    g = torch.Generator().manual_seed(3)
    ref_chosen, ref_rejected = -torch.rand(6, generator=g) * 20 - 5, -torch.rand(6, generator=g) * 20 - 5
    policy_chosen = ref_chosen + torch.randn(6, generator=g) * 3
    policy_rejected = ref_rejected + torch.randn(6, generator=g) * 3
    big = torch.tensor([500.0, -500.0])
    return [("6 pairs, beta = 0.1", policy_chosen, policy_rejected, ref_chosen, ref_rejected, 0.1),
            ("the same pairs with beta = 0.5", policy_chosen, policy_rejected, ref_chosen, ref_rejected, 0.5),
            ("a batch of 1 pair", policy_chosen[:1], policy_rejected[:1], ref_chosen[:1], ref_rejected[:1], 0.1),
            ("a policy equal to the reference (loss log 2, rewards 0)", ref_chosen.clone(), ref_rejected.clone(), ref_chosen, ref_rejected, 0.1),
            ("beta times the margin = +100 and -100 (the loss must stay finite)", ref_chosen[:2] + big, ref_rejected[:2] - big,
             ref_chosen[:2], ref_rejected[:2], 0.1)]


def _dpo_variants(pc, pr, rc, rr, beta: float) -> dict[str, tuple[torch.Tensor, str]]:
    """Known mistakes of the loss: name -> (the loss it gives, its diagnosis)."""
    h = (pc - rc) - (pr - rr)  # (batch,)
    return {
        "no_beta": (-F.logsigmoid(h).mean(), "beta is missing; the loss is -mean(log sigma(beta * ((policy_chosen - ref_chosen) - "
                                             "(policy_rejected - ref_rejected))))."),
        "beta_outside": (-beta * F.logsigmoid(h).mean(), "you multiply log sigma by beta; beta goes inside the sigmoid: "
                                                          "log sigma(beta * (chosen log-ratio - rejected log-ratio))."),
        "swapped": (-F.logsigmoid(-beta * h).mean(), "your loss prefers the rejected responses: chosen and rejected are swapped, or "
                                                     "both log-ratios are taken as reference minus policy; each is log pi(y) - log pi_ref(y)."),
        "ref_sign": (-F.logsigmoid(beta * ((pc + rc) - (pr + rr))).mean(), "the reference log-probabilities enter with the wrong "
                     "sign; each log-ratio is policy minus reference: (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)."),
        "no_ref": (-F.logsigmoid(beta * (pc - pr)).mean(), "your loss ignores the reference model; subtract ref_chosen_logps and "
                                                           "ref_rejected_logps from the policy's log-probabilities."),
        "sum": (-F.logsigmoid(beta * h).sum(), "you sum over the pairs; take the mean."),
        "no_minus": (F.logsigmoid(beta * h).mean(), "your loss has no minus sign: it is the log-likelihood of the preferences; "
                                                    "return its negative."),
    }


def _dpo_reward_variants(policy, ref, other_policy, other_ref, beta: float, name: str) -> dict[str, tuple[torch.Tensor, str]]:
    """Known mistakes of the implicit rewards of one response: name -> (the rewards it gives, its diagnosis)."""
    return {
        "no_beta": (policy - ref, f"your {name} lack beta; the implicit reward is beta * (policy log-prob - reference log-prob)."),
        "swapped": (beta * (other_policy - other_ref), "your chosen_rewards and rejected_rewards are swapped; return "
                                                       "(loss, chosen_rewards, rejected_rewards) in that order."),
        "sign": (beta * (ref - policy), f"your {name} have the wrong sign; the implicit reward is beta * (log pi(y) - log pi_ref(y))."),
        "no_ref": (beta * policy, f"your {name} ignore the reference; the implicit reward is beta * (log pi(y) - log pi_ref(y))."),
    }


@exercise(reference=dpo.dpo_loss, probe=lambda: (torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.1))
def dpo_loss(fn):
    """Compare (loss, chosen_rewards, rejected_rewards) with Rafailov et al. (2023), eq. 7, and rewards beta (log pi - log pi_ref).

    Cases tested: 6 pairs with beta = 0.1 and with beta = 0.5; a batch of 1 pair; a policy equal to the reference (loss
    log 2, rewards 0); beta times the margin = +100 and -100 (the loss must stay finite). Also: the gradient of the loss
    with respect to the policy's log-probabilities, rewards returned detached (no gradient), the inputs left unchanged
    and no tensor made on the CPU.
    """
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    for what, pc, pr, rc, rr, beta in _dpo_cases():
        leaf_c, leaf_r = _leaves(pc, pr)
        h = (leaf_c - rc) - (leaf_r - rr)
        expected = -F.logsigmoid(beta * h).mean()
        expected_grads = torch.autograd.grad(expected, (leaf_c, leaf_r))
        expected = expected.detach()
        expected_rewards = (beta * (pc - rc), beta * (pr - rr))
        out, (got_c, got_r, *_) = _call_keeping(fn, leaf_c, leaf_r, rc, rr, beta, names=names)
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise CheckFailed(f"it should return a triple (loss, chosen_rewards, rejected_rewards), but it returned "
                              f"{type(out).__name__}{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}.")
        loss = _scalar_output(out[0], f"the loss for {what}", "average over the pairs")
        got = loss.detach()
        if _not_finite(got) and "100" in what:
            raise CheckFailed(_overflow(what, got))
        _expect_tensor(loss, f"the loss for {what}")
        if not _close(got, expected):
            sentence = _mistake(got, expected, _dpo_variants(pc, pr, rc, rr, beta))
            if sentence:
                raise CheckFailed(f"for {what}: {sentence}")
            d = _digits(got.item(), expected.item())
            raise CheckFailed(f"for {what} your loss is {got.item():.{d}f}, expected {expected.item():.{d}f} = -mean(log sigma(beta * "
                              "((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)))).")
        for name, reward, want, (policy, ref, other_policy, other_ref) in (
                ("chosen_rewards", out[1], expected_rewards[0], (pc, rc, pr, rr)),
                ("rejected_rewards", out[2], expected_rewards[1], (pr, rr, pc, rc))):
            reward = _expect_tensor(reward, f"the {name} for {what}", pc.shape)
            if reward.requires_grad:
                raise CheckFailed(f"for {what} your {name} carry a gradient; return them detached (.detach()): they are for "
                                  "logging, and only the loss is differentiated.")
            if not _close(reward, want, atol=1e-5):
                sentence = _mistake(reward, want, _dpo_reward_variants(policy, ref, other_policy, other_ref, beta, name))
                raise CheckFailed(f"for {what}: {sentence}" if sentence else
                                  f"for {what} your {name} differ from beta * (policy log-prob - reference log-prob) of each response.")
        loss.backward()
        for name, leaf, want in (("policy_chosen_logps", got_c, expected_grads[0]), ("policy_rejected_logps", got_r, expected_grads[1])):
            if not _close(_grad_of(loss, leaf), want, atol=1e-6):
                raise CheckFailed(f"for {what} the loss is right but its gradient with respect to {name} is not; compute it with "
                                  "torch operations on the policy's log-probabilities (no detach or .item()).")
    _check_devices(fn, _dpo_cases()[0][1:], _device_hint("policy_chosen_logps"))
    return "loss, rewards and gradient for beta 0.1 and 0.5, a batch of 1, policy = reference (log 2) and margins of +-100"


# --------------------------------------------------------------------------- 5. GRPO advantages
def _grpo_variant(rewards: torch.Tensor, group_size: int, eps: float, mistake: str | None = None) -> torch.Tensor:
    """(r - mean(group)) / (std(group) + eps), groups consecutive and std unbiased, or that with one known mistake."""
    if mistake == "whole_batch":
        return (rewards - rewards.mean()) / (rewards.std() + eps)
    if mistake == "strided":  # rewards.view(group_size, -1): groups are columns, rewards[i::N/G]
        g = rewards.view(group_size, -1)
        return ((g - g.mean(0)) / (g.std(0) + eps)).flatten()
    g = rewards.view(-1, group_size)  # (prompts, G)
    centred = g - g.mean(dim=1, keepdim=True)
    std = g.std(dim=1, keepdim=True, correction=0 if mistake == "biased" else 1)
    scale = {"eps_inside": torch.sqrt(g.var(dim=1, keepdim=True) + eps), "no_std": torch.ones_like(std),
             "batch_std": rewards.std() + eps, "no_eps": std, "eps_1e-4": std + 1e-4, "eps_1e-8": std + 1e-8}.get(mistake, std + eps)
    return (centred / scale).flatten()


_GRPO_MISTAKES = {
    "whole_batch": "you normalise over the whole batch; each reward is compared with its own group: subtract the group's mean and "
                   "divide by the group's standard deviation (+ eps).",
    "strided": "your groups are strided (rewards[i], rewards[i + N / group_size], ...), as rewards.view(group_size, -1) gives; "
               "a group is group_size consecutive rewards: rewards.view(-1, group_size).",
    "biased": "your standard deviation is the biased one (divided by G); use the unbiased one, as torch.std does by default "
              "(and TRL).",
    "eps_inside": "you add eps inside the square root; add it to the standard deviation: (r - mean) / (std + eps).",
    "no_std": "you only subtract the group mean; also divide by the group's standard deviation + eps.",
    "batch_std": "you subtract each group's mean but divide by the standard deviation of the whole batch; use the group's.",
    "no_eps": "EPS",
    "eps_1e-4": "EPS",
    "eps_1e-8": "EPS",
}
_EPS_DEFAULT = "you do not add eps = 1e-4, the default, to the standard deviation; divide by std + eps."
_EPS_PASSED = "you ignore the eps passed in; use it: (r - mean) / (std + eps)."


def _grpo_cases() -> list[tuple[str, torch.Tensor, int, float | None]]:
    """(description, rewards (N,), group_size, eps or None for the default)."""
    g = torch.Generator().manual_seed(4)
    offsets = torch.tensor([0.0, 3.0, -2.0]).repeat_interleave(4)
    return [("12 rewards in 3 groups of 4", torch.randn(12, generator=g) + offsets, 4, None),
            ("6 rewards in 3 groups of 2", torch.tensor([0.5, 1.5, 3.0, 2.0, -1.0, -4.0]), 2, None),
            ("one group of 5 (the whole batch)", torch.randn(5, generator=g), 5, None),
            ("0/1 rewards in 4 groups of 3, one group all 0 and one all 1 (advantage 0, not NaN)",
             torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]), 3, None),
            ("12 rewards in 3 groups of 4 with eps = 0.5 passed in", torch.randn(12, generator=g) * 0.5 + offsets, 4, 0.5)]


@exercise(reference=grpo.grpo_advantages, probe=lambda: (torch.zeros(2), 2))
def grpo_advantages(fn):
    """Compare with (r_i - mean(group)) / (std(group) + eps), consecutive groups, std unbiased as torch.std.

    Cases tested: 12 rewards in 3 groups of 4 (groups with different means); 6 rewards in 3 groups of 2; one group of
    5 (the whole batch); 0/1 rewards in 4 groups of 3 with one group all 0 and one all 1 (advantage 0, not NaN); eps = 0.5
    passed in. The default eps = 1e-4 is used where eps is not passed. Also: the inputs are left unchanged and no
    tensor is made on the CPU.
    """
    for what, rewards, group_size, eps in _grpo_cases():
        expected = _grpo_variant(rewards, group_size, 1e-4 if eps is None else eps)
        args = (rewards, group_size) if eps is None else (rewards, group_size, eps)
        out, _ = _call_keeping(fn, *args, names=("rewards",))
        got = _expect_tensor(out, f"the advantages for {what}", rewards.shape, finite=None).detach()
        if got.isnan().any():
            groups = got.view(-1, group_size).isnan().any(dim=1)
            k = int(groups.nonzero()[0])
            if bool((rewards.view(-1, group_size)[k] == rewards[k * group_size]).all()):
                raise CheckFailed(f"for {what} your advantages are NaN in group {k}, whose rewards are all equal: its standard "
                                  "deviation is 0; divide by std + eps, which gives advantage 0 there.")
        _expect_tensor(got, f"the advantages for {what}", rewards.shape)
        if _close(got, expected, atol=1e-5):
            continue
        for mistake, sentence in _GRPO_MISTAKES.items():
            variant = _grpo_variant(rewards, group_size, 1e-4 if eps is None else eps, mistake)
            if not _close(variant, expected, 1e-5) and _close(got, variant, atol=1e-5):
                sentence = sentence if sentence != "EPS" else _EPS_DEFAULT if eps is None else _EPS_PASSED
                raise CheckFailed(f"for {what}: {sentence}")
        i = int((got - expected).abs().argmax())
        raise CheckFailed(f"for {what} your advantage {i} is {got[i]:.4f}, expected {expected[i]:.4f} = (r - mean of its group) / "
                          "(std of its group + eps), groups of group_size consecutive rewards.")
    _check_devices(fn, _grpo_cases()[0][1:3], _device_hint("rewards"))
    return ("group-normalised advantages for groups of 4, 2 and the whole batch, all-equal groups (0, not NaN), the default "
            "eps and eps = 0.5")


# --------------------------------------------------------------------------- 6. find the bugs: the losses of one PPO-RLHF update
BUGGY_PPO_LM_LOSSES = '''\
import torch

from rl4lm.rlhf.ppo_lm import last_token_index, masked_gae, masked_mean, masked_whiten


def ppo_lm_losses(new_logp, new_values, old_logp, ref_logp, old_values, score, mask, beta, clip_eps=0.2, gamma=1.0,
                  lam=0.95, vf_coef=0.1):
    """The losses of one PPO-RLHF update from a rollout's tensors: all (batch, T) but score (batch,)."""
    m = mask.to(new_logp.dtype)  # (batch, T): 1 on response tokens
    with torch.no_grad():
        rewards = -beta * (old_logp - ref_logp)  # (batch, T): the KL penalty of each token
        rewards[torch.arange(len(score)), last_token_index(mask)] += score  # the reward model's score on the last token
        advantages, returns = masked_gae(rewards, old_values, mask, gamma, lam)
        advantages = masked_whiten(advantages, m)
    ratio = torch.exp(new_logp - old_logp)  # (batch, T): pi_new / pi_old
    surrogate = torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = surrogate.mean()
    value_loss = 0.5 * masked_mean((new_values - advantages) ** 2, m)
    return {"loss": policy_loss + vf_coef * value_loss, "policy_loss": policy_loss, "value_loss": value_loss,
            "rewards": rewards, "advantages": advantages, "returns": returns}
'''
"""The code of Homework 3's "find the bugs" exercise: one PPO-RLHF update's losses with five planted mistakes (a student
fixes them one by one; :func:`ppo_lm_losses` names the first one still there)."""

_PPO_LM_NAMES = ("new_logp", "new_values", "old_logp", "ref_logp", "old_values", "score", "mask")
_PPO_LM_KEYS = ("loss", "policy_loss", "value_loss", "rewards", "advantages", "returns")


def _ppo_lm_cases() -> list[tuple[str, tuple]]:
    """(description, the arguments of ppo_lm_losses): log-probabilities and values differ on prompt and padding positions too."""
    cases = []
    g = torch.Generator().manual_seed(5)
    for what, mask, score, options in (
            ("3 responses (prompts padded on the left, responses on the right, beta = 0.1, gamma = 1)",
             torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0, 0]]),
             torch.tensor([1.0, -0.5, 2.0]), (0.1, 0.2, 1.0, 0.95, 0.1)),
            ("2 responses (one from column 0, beta = 0.05, gamma = 0.9)",
             torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]]), torch.tensor([-1.0, 0.8]), (0.05, 0.1, 0.9, 0.8, 0.5))):
        shape = tuple(mask.shape)
        old_logp = -torch.rand(shape, generator=g) * 3 - 0.1
        ref_logp = old_logp + torch.randn(shape, generator=g) * 0.3
        new_logp = old_logp + torch.randn(shape, generator=g) * 0.15  # ratios inside and outside the clip range
        old_values = torch.randn(shape, generator=g) * 0.5
        new_values = old_values + torch.randn(shape, generator=g) * 0.2
        tensors = _leaves(new_logp, new_values, old_logp, ref_logp, old_values, score)
        cases.append((what, (*tensors, mask, *options)))
    return cases


def _ppo_lm_call(fn, args: tuple, what: str) -> tuple[dict, tuple]:
    """The student's dict of losses on copies of ``args`` (checked for keys, shapes and dtypes), and the copies."""
    out, copies = _call_keeping(fn, *args, names=_PPO_LM_NAMES)
    if not isinstance(out, dict):
        raise CheckFailed(f"it should return a dict with the keys {', '.join(_PPO_LM_KEYS)}, but it returned {type(out).__name__}.")
    missing = [key for key in _PPO_LM_KEYS if key not in out]
    if missing:
        raise CheckFailed(f"the dict it returns has no key {missing[0]!r}; it needs {', '.join(_PPO_LM_KEYS)}.")
    for key in ("loss", "policy_loss", "value_loss"):
        _expect_tensor(_scalar_output(out[key], f"{key} for {what}", "a mean over the response tokens"), f"{key} for {what}")
    for key in ("rewards", "advantages", "returns"):
        _expect_tensor(out[key], f"the {key} for {what}", args[0].shape)
    return out, copies


def _expected_ppo_lm(args: tuple) -> dict:
    """The course's losses on ``args`` (its loss and gradients with respect to new_logp and new_values)."""
    new_logp, new_values, *rest = args
    leaf_logp, leaf_values = _leaves(new_logp, new_values)
    out = ppo_lm.ppo_lm_losses(leaf_logp, leaf_values, *rest)
    grads = torch.autograd.grad(out["loss"], (leaf_logp, leaf_values), retain_graph=True)
    policy_grad = torch.autograd.grad(out["policy_loss"], leaf_logp)[0]
    return {**{key: value.detach() for key, value in out.items()}, "grad_logp": grads[0], "grad_values": grads[1],
            "policy_grad": policy_grad}


def _where(got: torch.Tensor, expected: torch.Tensor) -> str:
    """'row r, position t: got instead of expected' at the largest difference."""
    row, t = divmod(int((got - expected).abs().argmax()), got.shape[1])
    return f"row {row}, position {t}: {got[row, t]:.4f} instead of {expected[row, t]:.4f}"


def _ppo_lm_rewards(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 1: rewards are -beta (old_logp - ref_logp) on response tokens, 0 elsewhere, plus the score on the last one."""
    out, _ = _ppo_lm_call(fn, args, what)
    got, mask = out["rewards"].detach(), args[6]
    off = (mask == 0) & (got.abs() > 1e-6)
    if off.any():
        row, t = (int(i) for i in off.nonzero()[0])
        raise CheckFailed(f"for {what} your rewards are not zero where mask is 0 (row {row}, position {t}: {got[row, t]:.4f}): "
                          "prompt and padding positions, which the policy did not generate, are charged a KL penalty.")
    if _close(got, expected["rewards"], atol=1e-5):
        return
    new_logp, _, _, ref_logp, _, score, mask, beta = args[:8]
    if _close(got, ppo_lm.kl_penalized_rewards(score, new_logp, ref_logp, mask, beta), atol=1e-5):
        raise CheckFailed(f"for {what} your rewards follow new_logp, the log-probabilities being trained, although a rollout's "
                          "rewards were fixed when it was sampled.")
    raise CheckFailed(f"for {what} your rewards are not -beta (old_logp - ref_logp) on the response with the score on its last "
                      f"token ({_where(got, expected['rewards'])}).")


def _ppo_lm_advantages(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 2: advantages are GAE on the old values, whitened over the response; returns are GAE's advantages + old values."""
    out, _ = _ppo_lm_call(fn, args, what)
    adv, ret = out["advantages"].detach(), out["returns"].detach()
    if _close(adv, expected["advantages"], atol=1e-5) and _close(ret, expected["returns"], atol=1e-5):
        return
    rewards, m = expected["rewards"], args[6].float()
    if not _close(adv, expected["advantages"], atol=1e-5):
        raw, _ = ppo_lm.masked_gae(rewards, args[4].detach(), args[6], *args[9:11])
        if _close(adv, raw, atol=1e-5):
            mean = ppo_lm.masked_mean(adv, m)
            std = ppo_lm.masked_mean((adv - mean) ** 2, m).sqrt()
            raise CheckFailed(f"for {what} your advantages have mean {mean:.3f} and standard deviation {std:.3f} over the response "
                              "tokens, not 0 and 1.")
        with_new, _ = ppo_lm.masked_gae(rewards, args[1].detach(), args[6], *args[9:11])
        if _close(adv, ppo_lm.masked_whiten(with_new, m), atol=1e-5):
            raise CheckFailed(f"for {what} your advantages follow new_values, the critic being trained, although they were fixed "
                              "when the rollout was sampled.")
        raise CheckFailed(f"for {what} your advantages differ from GAE on the old values, whitened over the response tokens "
                          f"({_where(adv, expected['advantages'])}).")
    if _close(ret, (expected["advantages"] + args[4].detach()) * m, atol=1e-5):
        raise CheckFailed(f"for {what} your returns are the whitened advantages plus the values, so the critic's target has lost "
                          "the scale of the rewards.")
    raise CheckFailed(f"for {what} your returns differ from GAE's advantages plus the old values on the response "
                      f"({_where(ret, expected['returns'])}).")


def _ppo_lm_value_loss(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 3: the value loss is 0 when new_values equal the returns, and 1/2 mean (new_values - returns)^2 otherwise."""
    at_returns = (args[0], *_leaves(expected["returns"]), *args[2:])
    out, _ = _ppo_lm_call(fn, at_returns, what)
    got = out["value_loss"].detach()
    if abs(got.item()) > 1e-6:
        raise CheckFailed(f"for {what}, with new_values equal to the returns (GAE's advantages plus the old values), your "
                          f"value_loss is {got.item():.4f}, not 0: the critic is pulled towards another target.")
    out, _ = _ppo_lm_call(fn, args, what)
    got, want = out["value_loss"].detach(), expected["value_loss"]
    if not _close(got, want, atol=1e-6):
        d = _digits(got.item(), want.item())
        raise CheckFailed(f"for {what} your value_loss is {got.item():.{d}f}, expected {want.item():.{d}f}, half the mean over the "
                          "response tokens of (new_values - returns)^2.")


def _ppo_lm_constants(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 4: no gradient reaches the rollout's constants (old_logp, ref_logp, old_values, score)."""
    out, copies = _ppo_lm_call(fn, args, what)
    out["loss"].backward()
    for name, tensor in zip(_PPO_LM_NAMES[2:6], copies[2:6]):
        if _grad_of(out["loss"], tensor).abs().max() > 0:
            raise CheckFailed(f"for {what} your loss sends a gradient into {name}, which was recorded when the rollout was "
                              "sampled: a training step would move it as if it were part of the policy.")


def _ppo_lm_sign(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 5: descending the policy loss makes tokens with a positive advantage likelier."""
    out, copies = _ppo_lm_call(fn, args, what)
    if not out["policy_loss"].requires_grad:
        raise CheckFailed(f"for {what} your policy_loss has no gradient, so the policy cannot learn from it.")
    got = torch.autograd.grad(out["policy_loss"], copies[0], allow_unused=True)[0]
    got = torch.zeros_like(copies[0]) if got is None else got
    want = expected["policy_grad"]
    active = want.abs() > 1e-7
    if active.any() and bool((torch.sign(got[active]) == -torch.sign(want[active])).all()):
        raise CheckFailed(f"for {what} a gradient-descent step on your policy_loss makes response tokens with a positive advantage "
                          "less likely and those with a negative advantage more likely.")


def _ppo_lm_padding(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 6: appending padding positions (mask 0) on the right changes none of the losses."""
    out, _ = _ppo_lm_call(fn, args, what)
    g = torch.Generator().manual_seed(6)
    batch, extra = args[0].shape[0], 3
    padded = [torch.cat([t.detach(), -torch.rand(batch, extra, generator=g) * 2], dim=1).requires_grad_() for t in args[:5]]
    mask = torch.cat([args[6], torch.zeros(batch, extra, dtype=args[6].dtype)], dim=1)
    out_padded, _ = _ppo_lm_call(fn, (*padded, args[5], mask, *args[7:]), f"{what} with 3 padding positions appended")
    for key in ("policy_loss", "value_loss"):
        before, after = out[key].item(), out_padded[key].item()
        if abs(before - after) > 1e-6:
            d = _digits(before, after)
            raise CheckFailed(f"for {what}, appending 3 padding positions (mask 0) to every row changes {key} from {before:.{d}f} "
                              f"to {after:.{d}f}: positions outside the responses count in it.")


def _ppo_lm_rest(fn, what: str, args: tuple, expected: dict) -> None:
    """Property 7: the policy loss, loss = policy_loss + vf_coef value_loss, and the gradients of the loss equal the course's."""
    out, copies = _ppo_lm_call(fn, args, what)
    got = {key: out[key].detach() for key in ("loss", "policy_loss", "value_loss")}
    if not _close(got["policy_loss"], expected["policy_loss"], atol=1e-6):
        d = _digits(got["policy_loss"].item(), expected["policy_loss"].item())
        raise CheckFailed(f"for {what} your policy_loss is {got['policy_loss'].item():.{d}f}, expected "
                          f"{expected['policy_loss'].item():.{d}f}, minus the mean over response tokens of the clipped surrogate.")
    combined = got["policy_loss"] + args[11] * got["value_loss"]
    if not _close(got["loss"], combined, atol=1e-6):
        raise CheckFailed(f"for {what} your loss is {got['loss'].item():.4f}, not policy_loss + vf_coef * value_loss = {combined.item():.4f}.")
    out["loss"].backward()
    for name, leaf, want in (("new_logp", copies[0], expected["grad_logp"]), ("new_values", copies[1], expected["grad_values"])):
        if not _close(_grad_of(out["loss"], leaf), want, atol=1e-6):
            raise CheckFailed(f"for {what} the losses are right but the gradient of loss with respect to {name} is not "
                              f"({_where(_grad_of(out['loss'], leaf), want)}).")


_PPO_LM_PROPERTIES = (_ppo_lm_rewards, _ppo_lm_advantages, _ppo_lm_value_loss, _ppo_lm_constants, _ppo_lm_sign, _ppo_lm_padding,
                      _ppo_lm_rest)


def _ppo_lm_probe() -> tuple:
    z = torch.zeros(1, 1)
    return z, z.clone(), z.clone(), z.clone(), z.clone(), torch.zeros(1), torch.ones(1, 1), 0.1


@exercise(reference=ppo_lm.ppo_lm_losses, probe=_ppo_lm_probe)
def ppo_lm_losses(fn):
    """Find the bugs: check the fixed losses of one PPO-RLHF update, property by property, naming the first one still broken.

    The properties, in this order, each on both cases: (1) the rewards are zero where mask is 0 and equal
    -beta (old_logp - ref_logp) plus the score on the last response token; (2) the advantages are GAE on the old values,
    whitened over the response tokens, and the returns GAE's advantages plus the old values; (3) value_loss is 0 when
    new_values equal the returns, and half the mean over response tokens of (new_values - returns)^2; (4) no gradient
    reaches old_logp, ref_logp, old_values or score; (5) a gradient-descent step on policy_loss makes tokens with a
    positive advantage likelier; (6) appending padding positions (mask 0) changes neither policy_loss nor value_loss;
    (7) policy_loss, loss = policy_loss + vf_coef * value_loss and the gradients with respect to new_logp and
    new_values equal the course's. Cases: 3 responses with prompts padded on the left and responses on the right, one of
    2 tokens (beta 0.1, clip_eps 0.2, gamma 1, lam 0.95, vf_coef 0.1); 2 responses, one from column 0 (beta 0.05,
    clip_eps 0.1, gamma 0.9, lam 0.8, vf_coef 0.5). Ratios lie inside and outside the clip range. The dict returned must
    hold at least loss, policy_loss, value_loss, rewards, advantages and returns. Failures describe the symptom, not the fix.
    """
    cases = [(what, args, _expected_ppo_lm(args)) for what, args in _ppo_lm_cases()]
    for check in _PPO_LM_PROPERTIES:
        for what, args, expected in cases:
            check(fn, what, args, expected)
    _check_devices(fn, _ppo_lm_cases()[0][1], _device_hint("new_logp"))
    return ("rewards on the response only, whitened GAE advantages and returns, the value target, no gradient into the rollout's "
            "constants, the sign of the policy loss, padding that changes nothing, and the gradients")
