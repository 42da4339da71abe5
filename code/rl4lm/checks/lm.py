"""Checkers of the language-model exercises: attention, positions, teacher forcing, decoding (Homework 1)."""
from __future__ import annotations

import copy
import math

import torch

from ..lm import attention, decoding, logprobs, sft
from ._core import CheckFailed, _call, _expect_tensor, _first_bad, _fmt, _generate, _random_lm, exercise


# --------------------------------------------------------------------------- 1. attention
@exercise(reference=attention.causal_self_attention)
def causal_self_attention(fn):
    """Compare with ``torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)``."""
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    shapes = [(2, 3, 5, 8), (1, 1, 1, 4), (1, 2, 7, 16), (3, 1, 4, 2)]
    for seed, (b, h, s, d) in enumerate(shapes):
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(b, h, s, d, generator=g) for _ in range(3))
        out = _call(fn, q.clone(), k.clone(), v.clone())
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed(f"it should return a tuple (output, weights), but it returned a {type(out).__name__}.")
        output, weights = out
        _expect_tensor(weights, f"the weights for q of shape {_fmt(q.shape)}", (b, h, s, s))
        _expect_tensor(output, f"the output for q of shape {_fmt(q.shape)}", (b, h, s, d))
        if torch.isnan(weights).any():
            i = _first_bad(torch.isnan(weights))[2]
            raise CheckFailed(f"the weights of query {i} contain NaN; a query must attend to itself, so mask only keys j > i.")
        future = torch.ones(s, s, dtype=torch.bool).triu(1)
        leak = weights.abs() * future
        if (leak > 1e-6).any():
            _, _, i, j = _first_bad(leak > 1e-6)
            raise CheckFailed(f"query {i} gives weight {weights[0, 0, i, j]:.2f} to key {j}, a future position; "
                              "set the scores of keys j > i to -inf before the softmax.")
        sums = weights.sum(-1)
        if ((sums - 1).abs() > 1e-4).any():
            _, _, i = _first_bad((sums - 1).abs() > 1e-4)
            raise CheckFailed(f"row {i} of your attention weights sums to {sums[0, 0, i]:.2f}; "
                              "did you apply softmax over the last dimension (the keys)?")
        mask = ~future
        scores = q @ k.transpose(-2, -1)
        expected = scores.div(math.sqrt(d)).masked_fill(~mask, float("-inf")).softmax(-1)
        if not torch.allclose(weights, expected, atol=1e-5):
            if s > 1 and torch.allclose(weights, scores.masked_fill(~mask, float("-inf")).softmax(-1), atol=1e-5):
                raise CheckFailed(f"your weights are softmax(QK^T) without the scaling; divide the scores by sqrt(d) = {math.sqrt(d):.2f}.")
            if s > 1 and torch.allclose(weights, scores.div(d).masked_fill(~mask, float("-inf")).softmax(-1), atol=1e-5):
                raise CheckFailed("your scores are divided by d; divide them by sqrt(d) instead.")
            err = (weights - expected).abs().amax()
            raise CheckFailed(f"your weights differ from softmax(QK^T / sqrt(d)) with a causal mask by up to {err:.3f}.")
        reference = sdpa(q, k, v, is_causal=True)
        if not torch.allclose(output, reference, atol=1e-5):
            err = (output - reference).abs().amax()
            raise CheckFailed(f"your weights are right but the output differs from scaled_dot_product_attention by {err:.3f}; "
                              "return weights @ v.")
    return "matches torch's scaled_dot_product_attention(is_causal=True) on 4 shapes, incl. length 1 and batch 1"


# --------------------------------------------------------------------------- 2. positions
@exercise(reference=attention.sinusoidal_positions)
def sinusoidal_positions(fn):
    """Compare with the formula P[t, 2i] = sin(t w_i), P[t, 2i+1] = cos(t w_i), w_i = 10000^(-2i/d)."""
    reference = attention.sinusoidal_positions

    for seq_len, d_model in [(10, 16), (1, 8), (50, 64), (7, 6)]:
        out = _expect_tensor(_call(fn, seq_len, d_model), f"the encoding for seq_len={seq_len}, d_model={d_model}",
                             (seq_len, d_model))
        expected = reference(seq_len, d_model)
        out = out.float()
        if torch.allclose(out, expected, atol=1e-5):
            continue
        swapped = expected.clone()
        swapped[:, 0::2], swapped[:, 1::2] = expected[:, 1::2], expected[:, 0::2]
        if d_model % 2 == 0 and torch.allclose(out, swapped, atol=1e-5):
            raise CheckFailed("sine and cosine are swapped; even columns 2i hold sin(t w_i), odd columns 2i+1 hold cos(t w_i).")
        t, c = _first_bad((out - expected).abs() > 1e-5)
        kind = "sin" if c % 2 == 0 else "cos"
        raise CheckFailed(f"entry [t={t}, column {c}] is {out[t, c]:.4f} but should be {kind}({t} / 10000^({2 * (c // 2)}/{d_model})) "
                          f"= {expected[t, c]:.4f}; check the frequency w_i = 10000^(-2i/d).")
    return "matches the sinusoidal formula for 4 sizes, incl. one position and an odd-looking d = 6"


def _rope_score(fn, q, k, m: int, n: int) -> float:
    """q . k after rotating q to position m and k to position n with the student's apply_rope."""
    qm = _call(fn, q[None], torch.tensor([m]))
    kn = _call(fn, k[None], torch.tensor([n]))
    _expect_tensor(qm, "apply_rope's output for a single vector", (1, q.shape[-1]))
    return float((qm * kn).sum())


@exercise(reference=attention.apply_rope)
def apply_rope(fn):
    """Check RoPE's relative-position property and compare with the interleaved-pair formula (Su et al., 2021)."""
    reference = attention.apply_rope

    g = torch.Generator().manual_seed(0)
    d = 16
    q, k = torch.randn(d, generator=g), torch.randn(d, generator=g)
    for m, n, shift in [(3, 1, 5), (0, 7, 11), (10, 10, 3)]:
        before, after = _rope_score(fn, q, k, m, n), _rope_score(fn, q, k, m + shift, n + shift)
        if abs(before - after) > 1e-3 * max(1.0, abs(before)):
            raise CheckFailed(f"q\u00b7k changed from {before:.3f} to {after:.3f} when both positions ({m}, {n}) moved by {shift}; "
                              "with RoPE the score must depend only on the offset m - n (rotate, do not add).")
    cases = [((2, 3, 6, 8), torch.arange(6)), ((1, 1, 1, 4), torch.tensor([5])), ((4, 10, 16), torch.arange(10) + 3)]
    for shape, positions in cases:
        x = torch.randn(*shape, generator=g)
        out = _expect_tensor(_call(fn, x.clone(), positions), f"the output for x of shape {_fmt(shape)}", shape)
        if not torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-4):
            raise CheckFailed("the rotated vectors have a different length than the inputs; RoPE only rotates pairs, "
                              "so each pair needs both cos and sin terms.")
        expected = reference(x, positions)
        if torch.allclose(out, expected, atol=1e-5):
            continue
        half = x.shape[-1] // 2
        theta = torch.cat([positions[:, None] * 10000.0 ** (-torch.arange(0, x.shape[-1], 2) / x.shape[-1])] * 2, -1)
        rotated_half = torch.cat([-x[..., half:], x[..., :half]], -1)
        if torch.allclose(out, x * theta.cos() + rotated_half * theta.sin(), atol=1e-4):
            raise CheckFailed("you rotate the pairs (x_i, x_{i+d/2}) (the 'rotate half' layout); this exercise pairs neighbours "
                              "(x_{2i}, x_{2i+1}) as in the RoFormer paper.")
        if torch.allclose(out, reference(x, -positions), atol=1e-4):
            raise CheckFailed("you rotate by -theta; the even slot is x_{2i} cos - x_{2i+1} sin and the odd slot x_{2i} sin + x_{2i+1} cos.")
        err = (out - expected).abs().amax()
        raise CheckFailed(f"for x of shape {_fmt(shape)} your output differs from the RoPE formula by up to {err:.3f}; "
                          "check the angles theta_{t,i} = t * 10000^(-2i/d).")
    return "scores depend only on relative position, and the output matches the RoPE formula on 3 shapes"


# --------------------------------------------------------------------------- 3. teacher forcing
def _nll_variants(logits, labels, mask):
    """Reference loss and common mistakes, for diagnosis."""
    tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # (b, s)
    m = mask.float()
    per_seq = (tok * m).sum(1) / m.sum(1).clamp(min=1)
    return {
        "reference": per_seq.mean(),
        "token_mean": (tok * m).sum() / m.sum(),
        "no_mask": tok.mean(),
        "sum": (tok * m).sum(1).mean(),
    }


@exercise(reference=sft.sequence_nll)
def sequence_nll(fn):
    """Compare with per-token cross_entropy, averaged within each sequence (masked), then over the batch."""
    g = torch.Generator().manual_seed(0)
    vocab = 11
    cases = [
        (torch.randn(3, 6, vocab, generator=g), torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])),
        (torch.randn(1, 1, vocab, generator=g), torch.ones(1, 1, dtype=torch.long)),
        (torch.randn(2, 5, vocab, generator=g), torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])),
    ]
    for logits, mask in cases:
        labels = torch.randint(vocab, mask.shape, generator=g)
        logits = logits.clone().requires_grad_()
        out = _call(fn, logits, labels, mask)
        _expect_tensor(out, f"the loss for logits of shape {_fmt(logits.shape)}")
        if out.dim() != 0:
            raise CheckFailed(f"it should return one number (a 0-dimensional tensor) but returned shape {_fmt(out.shape)}; "
                              "average over sequences at the end.")
        if not out.requires_grad:
            raise CheckFailed("your loss has no gradient; compute it with torch operations on the logits (no .item(), numpy or floats).")
        variants = {key: value.detach() for key, value in _nll_variants(logits, labels, mask).items()}
        if torch.isclose(out.detach(), variants["reference"], atol=1e-5):
            continue
        hints = {
            "token_mean": "you averaged over all counted tokens of the batch; average within each sequence first, then over sequences.",
            "no_mask": "your loss counts masked positions; multiply the token losses by the mask before averaging.",
            "sum": "you summed the token losses of each sequence; divide by the number of counted tokens in it.",
        }
        for key, hint in hints.items():
            if torch.isclose(out.detach(), variants[key], atol=1e-5):
                raise CheckFailed(f"for masks {mask.tolist()} you return {out.item():.4f} instead of {variants['reference']:.4f}: {hint}")
        raise CheckFailed(f"for masks {mask.tolist()} you return {out.item():.4f} instead of {variants['reference']:.4f}; "
                          "logits[:, t] predicts labels[:, t] (no shift inside this function) and the loss is -log softmax.")
    return "matches torch's cross_entropy, averaged per sequence then over the batch, with padding, batch 1 and length 1"


def _sft_batch():
    """A small batch: right padding in row 1, loss on the last tokens (the 'answer')."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 50, (2, 8), generator=g)
    attention = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    loss_mask = torch.tensor([[0] * 5 + [1] * 3, [0] * 4 + [1] * 2 + [0] * 2])
    ids[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": loss_mask}


@exercise(reference=sft.sft_step)
def sft_step(fn):
    """Compare two training steps with the reference (shifted, masked loss; zero_grad, backward, step)."""
    nll = sft.sequence_nll

    batch = _sft_batch()
    base = _random_lm(seed=3)
    ref_model, model = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    ref_opt, opt = torch.optim.SGD(ref_model.parameters(), lr=0.5), torch.optim.SGD(model.parameters(), lr=0.5)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        candidates = {
            "no_shift": nll(logits, batch["input_ids"], batch["loss_mask"]).item(),
            "all_tokens": nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["attention_mask"][:, 1:]).item(),
        }
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(2):
        reference = sft.sft_step

        expected = reference(ref_model, ref_opt, batch)
        got = _call(fn, model, opt, batch)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"it should return the loss as a number (loss.item()), not a {type(got).__name__}.") from None
        if step == 0 and abs(got - expected) > 1e-4:
            if abs(got - candidates["no_shift"]) < 1e-4:
                raise CheckFailed("the logits at position t predict token t+1: pass logits[:, :-1], input_ids[:, 1:] and loss_mask[:, 1:].")
            if abs(got - candidates["all_tokens"]) < 1e-4:
                raise CheckFailed("your loss counts every token; use batch['loss_mask'][:, 1:] so that only answer tokens count.")
            raise CheckFailed(f"your first loss is {got:.4f} instead of {expected:.4f}; use sequence_nll on the shifted logits "
                              "and labels (if the sequence_nll check fails, fix that first).")
        if step == 0 and all(torch.equal(a, b) for a, b in zip(before, model.parameters())):
            raise CheckFailed("the parameters did not change; call loss.backward() and then optimizer.step().")
        differs = any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(ref_model.parameters(), model.parameters()))
        if differs and step == 0:
            raise CheckFailed("the loss is right but the parameters after one step differ from one optimizer step on it; "
                              "call loss.backward() once and optimizer.step() once.")
        if differs:
            raise CheckFailed("the second step differs from the reference; call optimizer.zero_grad() before loss.backward(), "
                              "otherwise gradients accumulate across steps.")
    return "the loss and the parameters after two SGD steps match the reference step on a small random GPT-2"


# --------------------------------------------------------------------------- 4. decoding
def _kept(logits: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the tokens a filter kept (finite logits)."""
    return torch.isfinite(logits)


def _check_filter_output(out, logits, what: str) -> torch.Tensor:
    """Shape, -inf for removed tokens, unchanged values for kept ones."""
    out = _expect_tensor(out, f"the filtered logits {what}", logits.shape)
    if torch.isnan(out).any():
        raise CheckFailed(f"the filtered logits {what} contain NaN; set removed tokens to -inf and leave the others as they are.")
    kept = _kept(out)
    if not torch.equal(out[kept], logits[kept]):
        raise CheckFailed(f"some kept logits {what} changed value; a filter only sets removed tokens to -inf.")
    if (out[~kept] != float("-inf")).any():
        raise CheckFailed(f"removed tokens {what} should be set to -inf (so that softmax gives them probability 0).")
    return kept


def _no_in_place(fn, logits, *args):
    """Call a filter on a copy and fail if it modified its input."""
    copy_ = logits.clone()
    out = _call(fn, copy_, *args)
    if not torch.equal(copy_.nan_to_num(), logits.nan_to_num()):
        raise CheckFailed("your function changed the logits passed to it; work on a copy (e.g. masked_fill rather than masked_fill_).")
    return out


@exercise(reference=decoding.temperature_softmax)
def temperature_softmax(fn):
    """Compare with softmax(TemperatureLogitsWarper(t)(logits)) from transformers."""
    from transformers import TemperatureLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 20, generator=g) * 3
    filtered = logits.clone()
    filtered[:, ::3] = float("-inf")
    cases = [(logits, 1.0), (logits, 0.5), (logits, 2.0), (logits[:1], 0.7), (filtered, 0.8), (logits * 100, 0.01)]
    for z, t in cases:
        out = _expect_tensor(_no_in_place(fn, z, t), f"for t = {t}", z.shape)
        expected = torch.softmax(TemperatureLogitsWarper(t)(None, z.clone()), dim=-1)
        if not torch.isfinite(out).all():
            raise CheckFailed(f"with large logits and t = {t} you get NaN or inf; subtract each row's maximum before exp "
                              "(or use torch.softmax), and give -inf logits probability 0.")
        if torch.allclose(out, expected, atol=1e-5):
            continue
        if torch.allclose(out, torch.softmax(z * t, -1), atol=1e-5):
            raise CheckFailed(f"you multiply the logits by t = {t}; divide them by t (t < 1 sharpens, t > 1 flattens).")
        if not torch.allclose(out.sum(-1), torch.ones(len(z)), atol=1e-4):
            raise CheckFailed(f"row 0 of your probabilities sums to {out[0].sum():.2f}; apply the softmax over the last dimension (the vocabulary).")
        raise CheckFailed(f"for t = {t} your probabilities differ from softmax(logits / t) by up to {(out - expected).abs().max():.4f}.")
    return "matches transformers' TemperatureLogitsWarper + softmax for 5 temperatures, incl. -inf logits and large logits"


@exercise(reference=decoding.top_k_filter)
def top_k_filter(fn):
    """Compare the kept tokens with transformers' TopKLogitsWarper (ties at the k-th value are all kept)."""
    from transformers import TopKLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 30, generator=g)
    ties = torch.randint(0, 4, (3, 30), generator=g).float()  # many equal logits
    cases = [(logits, 5), (logits, 1), (logits[:1], 30), (logits, 50), (ties, 4), (ties[:1], 1)]
    for z, k in cases:
        out = _no_in_place(fn, z, k)
        kept = _check_filter_output(out, z, f"for k = {k}")
        expected = _kept(TopKLogitsWarper(k)(None, z.clone()))
        if torch.equal(kept, expected):
            continue
        row = int((kept != expected).any(-1).nonzero()[0])
        n_kept, n_expected = int(kept[row].sum()), int(expected[row].sum())
        if n_expected > min(k, z.shape[-1]):
            raise CheckFailed(f"row {row} has ties at the k-th largest logit (k = {k}); keep every token whose logit is >= the "
                              f"k-th largest value ({n_expected} tokens, as transformers does), you kept {n_kept}.")
        raise CheckFailed(f"for k = {k} row {row} keeps {n_kept} tokens but should keep the {n_expected} largest logits.")
    return "keeps the same tokens as transformers' TopKLogitsWarper, incl. k = 1, k >= vocabulary and ties"


def _near_boundary(z: torch.Tensor, p: float) -> bool:
    """True if a cumulative probability is within 1e-5 of p: float rounding may decide such a token."""
    probs = torch.sort(z.double().softmax(-1), descending=True).values
    return bool(((probs.cumsum(-1) - p).abs() < 1e-5).any())


@exercise(reference=decoding.top_p_filter)
def top_p_filter(fn):
    """Compare the kept tokens with transformers' TopPLogitsWarper (min_tokens_to_keep = 1)."""
    from transformers import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 40, generator=g) * 2
    after_top_k = logits.clone()
    after_top_k[:, 10:] = float("-inf")
    cases = [(logits, p) for p in (0.1, 0.5, 0.9, 0.95, 1.0)] + [(logits[:1], 1e-6), (after_top_k, 0.8)]
    for z, p in cases:
        out = _no_in_place(fn, z, p)
        kept = _check_filter_output(out, z, f"for p = {p}")
        expected = _kept(TopPLogitsWarper(p)(None, z.clone()))
        if p >= 1.0 and not torch.equal(kept, torch.isfinite(z)):
            raise CheckFailed(f"with p = 1 every token must be kept, but you removed {int((torch.isfinite(z) & ~kept).sum())}; "
                              "check the comparison with p (floating-point sums can reach 1.0 early).")
        for row in range(len(z)):
            if torch.equal(kept[row], expected[row]) or (p < 1.0 and _near_boundary(z[row], p)):
                continue
            probs = z[row].softmax(-1)
            n_kept, n_expected = int(kept[row].sum()), int(expected[row].sum())
            if n_kept < n_expected:
                raise CheckFailed(f"for p = {p} row {row} keeps {n_kept} tokens with total probability {probs[kept[row]].sum():.3f} < p; "
                                  f"keep the smallest set of most likely tokens whose probability reaches p ({n_expected} tokens).")
            if n_kept > n_expected:
                raise CheckFailed(f"for p = {p} row {row} keeps {n_kept} tokens, but the {n_expected} most likely already have "
                                  f"probability {probs[expected[row]].sum():.3f} >= p; stop at the first token that reaches p.")
            raise CheckFailed(f"for p = {p} row {row} keeps the right number of tokens but not the most likely ones; sort by probability, descending.")
    # ties: equal logits may be ordered either way, so compare the number kept and that the kept ones are the largest
    uniform = torch.zeros(2, 4)
    uniform[1] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    for p in (0.5, 0.6):
        out = _no_in_place(fn, uniform, p)
        kept = _check_filter_output(out, uniform, f"for tied logits and p = {p}")
        expected = _kept(TopPLogitsWarper(p)(None, uniform.clone()))
        for row in range(2):
            counts_match = int(kept[row].sum()) == int(expected[row].sum())
            top_set = kept[row].all() or bool(uniform[row][kept[row]].min() >= uniform[row][~kept[row]].max())
            if not (counts_match and top_set):
                raise CheckFailed(f"for the tied logits {uniform[row].tolist()} and p = {p} you keep {int(kept[row].sum())} tokens; "
                                  f"the smallest set reaching p has {int(expected[row].sum())} tokens.")
    return "keeps the same tokens as transformers' TopPLogitsWarper for 6 values of p, incl. p = 1, tiny p, -inf inputs and ties"


def _check_generation(out, prompt, expected, what: str) -> torch.Tensor:
    """Shape and prompt checks shared by greedy and beam search."""
    out = _expect_tensor(out, what)
    if out.shape == (prompt.shape[0], expected.shape[1] - prompt.shape[1]) and prompt.shape[1] > 0:
        raise CheckFailed(f"{what} has shape {_fmt(out.shape)}: return the prompt followed by the new tokens, "
                          f"shape {_fmt(expected.shape)}.")
    _expect_tensor(out, what, expected.shape)
    if not torch.equal(out[:, :prompt.shape[1]], prompt):
        raise CheckFailed(f"{what} does not start with the prompt; append new tokens after input_ids.")
    return out


@exercise(reference=decoding.greedy_decode)
def greedy_decode(fn):
    """Compare with ``model.generate(do_sample=False, num_beams=1)`` on a small random GPT-2 (equal-length prompts)."""
    model = _random_lm()
    g = torch.Generator().manual_seed(0)
    for batch, length, new in [(2, 4, 5), (1, 1, 3), (3, 6, 1)]:
        prompt = torch.randint(0, 50, (batch, length), generator=g)
        expected = _generate(model, prompt, new)
        out = _check_generation(_call(fn, model, prompt.clone(), new), prompt, expected,
                                f"the output for {batch} prompts of length {length} and max_new_tokens={new}")
        if not torch.equal(out, expected):
            b, t = _first_bad(out != expected)
            raise CheckFailed(f"new token {t - length} of sequence {b} is {int(out[b, t])} but greedy decoding picks "
                              f"{int(expected[b, t])}, the argmax of the logits at the last position.")
    return "identical tokens to transformers' generate(do_sample=False) for batch 1 and 3, prompt length 1, 1 to 5 new tokens"


@exercise(reference=decoding.beam_search)
def beam_search(fn):
    """Compare with ``model.generate(num_beams=B, do_sample=False, length_penalty=0, early_stopping=True)``, no EOS."""
    sequence_log_likelihood = logprobs.sequence_log_likelihood

    model = _random_lm()
    g = torch.Generator().manual_seed(1)
    for batch, length, beams, new in [(2, 3, 3, 4), (1, 1, 2, 3), (1, 4, 1, 3), (2, 2, 4, 1), (1, 2, 4, 6)]:
        prompt = torch.randint(0, 50, (batch, length), generator=g)
        expected = _generate(model, prompt, new, num_beams=beams)
        out = _check_generation(_call(fn, model, prompt.clone(), beams, new), prompt, expected,
                                f"the output for {batch} prompts, num_beams={beams}, max_new_tokens={new}")
        if torch.equal(out, expected):
            continue
        b = int((out != expected).any(-1).nonzero()[0])
        got_lp = float(sequence_log_likelihood(model, out[b:b + 1], length))
        best_lp = float(sequence_log_likelihood(model, expected[b:b + 1], length))
        greedy = _generate(model, prompt, new)
        if beams > 1 and torch.equal(out[b], greedy[b]):
            raise CheckFailed(f"with num_beams={beams} you return the greedy sequence (log-probability {got_lp:.2f}) but beam search "
                              f"finds one with {best_lp:.2f}; keep the num_beams best prefixes and expand every one of them.")
        if got_lp < best_lp - 1e-4:
            raise CheckFailed(f"for prompt {b} (num_beams={beams}) your sequence has log-probability {got_lp:.2f}, generate's best beam "
                              f"{best_lp:.2f}; rank candidates by the running sum of log-probabilities (add each step's to the beam's score).")
        raise CheckFailed(f"for prompt {b} (num_beams={beams}) your sequence differs from generate's beam search; keep exactly "
                          "num_beams candidates per step, ranked by the summed log-probability.")
    return "identical tokens to transformers' beam search (length_penalty=0, no EOS) for 1-4 beams, batch 1 and 2"
