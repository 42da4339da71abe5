"""Checkers of the language-model exercises: attention, positions, teacher forcing, decoding (Homework 1), sequence
log-probabilities and multiple-choice scoring (Homework 2).

Each checker computes what it expects before it calls the student's function, which gets copies of the inputs.
Where the exercise can run on the meta device, a last call with meta inputs finds tensors created without
``device=`` (see :func:`._core._check_device`); where it cannot, a comment says why.
"""
from __future__ import annotations

import copy
import functools
import math

import torch

from ..lm import attention, decoding, logprobs, scoring, sft
from ._core import CheckFailed, _call, _check_device, _expect_tensor, _first_bad, _fmt, _generate, _random_lm, exercise

INF = float("inf")


def _device_hint(tensor: str, example: str = "") -> str:
    """The sentence for a tensor created on the CPU next to inputs on another device."""
    return (f"your function creates a tensor on the CPU and combines it with {tensor}, which fails when {tensor} is on a GPU "
            f"(e.g. in Colab); create new tensors on {tensor}.device{example}.")


# --------------------------------------------------------------------------- 1. attention
def _attention_probe() -> tuple:
    q = torch.zeros(1, 1, 1, 2)
    return q, q.clone(), q.clone()


@exercise(reference=attention.causal_self_attention, probe=_attention_probe)
def causal_self_attention(fn):
    """Compare with ``torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)``."""
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    shapes = [(2, 3, 5, 8), (1, 1, 1, 4), (1, 2, 7, 16), (3, 1, 4, 2)]
    for seed, (b, h, s, d) in enumerate(shapes):
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(b, h, s, d, generator=g) for _ in range(3))
        scores = q @ k.transpose(-2, -1)  # (b, h, s, s)
        future = torch.ones(s, s, dtype=torch.bool).triu(1)  # True where key j > query i
        expected = scores.div(math.sqrt(d)).masked_fill(future, -INF).softmax(-1)
        reference = sdpa(q, k, v, is_causal=True)
        masked_after = scores.div(math.sqrt(d)).softmax(-1).masked_fill(future, 0.0)  # the mask applied after the softmax

        out = _call(fn, q, k, v, names=("q", "k", "v"))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed(f"it should return a tuple (output, weights), but it returned a {type(out).__name__}.")
        output, weights = out
        what = f"for q of shape {_fmt(q.shape)}"
        _expect_tensor(weights, f"the weights {what}", (b, h, s, s), finite=None)
        _expect_tensor(output, f"the output {what}", (b, h, s, d), finite=None)
        w = weights.detach()
        if s > 1 and torch.allclose(w.nan_to_num(0.0, 0.0, 0.0), masked_after, atol=1e-5):
            raise CheckFailed("you apply the mask after the softmax, so the weights of each row no longer sum to one; set the "
                              "scores of keys j > i to -inf before the softmax.")
        if w.isnan().all(-1).any():
            i = _first_bad(w.isnan().all(-1))[2]
            raise CheckFailed(f"the weights of query {i} are all NaN because every key of that row is masked; a query must "
                              "attend to itself, so mask only the keys j > i.")
        _expect_tensor(weights, f"the weights {what}", finite="all")
        _expect_tensor(output, f"the output {what}", finite="all")
        leak = (w.abs() > 1e-6) & future
        if leak.any():
            bb, hh, i, j = _first_bad(leak)
            raise CheckFailed(f"query {i} gives weight {w[bb, hh, i, j]:.2f} to key {j}, a future position; "
                              "set the scores of keys j > i to -inf before the softmax.")
        sums = w.sum(-1)
        if ((sums - 1).abs() > 1e-4).any():
            bb, hh, i = _first_bad((sums - 1).abs() > 1e-4)
            raise CheckFailed(f"row {i} of your attention weights sums to {sums[bb, hh, i]:.2f}; "
                              "did you apply softmax over the last dimension (the keys)?")
        if not torch.allclose(w, expected, atol=1e-5):
            if s > 1 and torch.allclose(w, scores.masked_fill(future, -INF).softmax(-1), atol=1e-5):
                raise CheckFailed(f"your weights are softmax(QK^T) without the scaling; divide the scores by sqrt(d) = {math.sqrt(d):.2f}.")
            if s > 1 and torch.allclose(w, scores.div(d).masked_fill(future, -INF).softmax(-1), atol=1e-5):
                raise CheckFailed("your scores are divided by d; divide them by sqrt(d) instead.")
            err = (w - expected).abs().amax()
            raise CheckFailed(f"your weights differ from softmax(QK^T / sqrt(d)) with a causal mask by up to {err:.3f}.")
        if not torch.allclose(output.detach(), reference, atol=1e-5):
            err = (output.detach() - reference).abs().amax()
            raise CheckFailed(f"your weights are right but the output differs from scaled_dot_product_attention by {err:.3f}; "
                              "return weights @ v.")
    q, k, v = (torch.zeros(*shapes[0]) for _ in range(3))
    _check_device(fn, (q, k, v), _device_hint("q", " (e.g. torch.ones(seq, seq, dtype=torch.bool, device=q.device))"))
    return "matches torch's scaled_dot_product_attention(is_causal=True) on 4 shapes, incl. length 1 and batch 1"


# --------------------------------------------------------------------------- 2. positions
@exercise(reference=attention.sinusoidal_positions, probe=lambda: (1, 2))
def sinusoidal_positions(fn):
    """Compare with the formula P[t, 2i] = sin(t w_i), P[t, 2i+1] = cos(t w_i), w_i = 10000^(-2i/d)."""
    reference = attention.sinusoidal_positions

    # No device check: the function has no tensor input whose device it could follow; the caller moves the result.
    for seq_len, d_model in [(10, 16), (1, 8), (50, 64), (7, 6)]:
        expected = reference(seq_len, d_model)
        what = f"the encoding for seq_len={seq_len}, d_model={d_model}"
        out = _expect_tensor(_call(fn, seq_len, d_model), what, (seq_len, d_model)).detach()
        if torch.allclose(out, expected, atol=1e-5):
            continue
        swapped = expected.clone()
        swapped[:, 0::2], swapped[:, 1::2] = expected[:, 1::2], expected[:, 0::2]
        if torch.allclose(out, swapped, atol=1e-5):
            raise CheckFailed("sine and cosine are swapped; even columns 2i hold sin(t w_i), odd columns 2i+1 hold cos(t w_i).")
        t, c = _first_bad((out - expected).abs() > 1e-5)
        kind = "sin" if c % 2 == 0 else "cos"
        raise CheckFailed(f"entry [t={t}, column {c}] is {out[t, c]:.4f} but should be {kind}({t} / 10000^({2 * (c // 2)}/{d_model})) "
                          f"= {expected[t, c]:.4f}; check the frequency w_i = 10000^(-2i/d).")
    return "matches the sinusoidal formula for 4 sizes, incl. one position and an odd-looking d = 6"


_ROPE_WRITES_X = ("your apply_rope writes the rotated pairs into x itself, so the caller's x changes; write them into a new "
                  "tensor (e.g. out = torch.empty_like(x)) and return that.")


def _rope(fn, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The student's apply_rope on copies, checked to leave x and positions alone and to return float32 of x's shape."""
    out = _call(fn, x, positions, names=("x", "positions"), hints={"x": _ROPE_WRITES_X})
    return _expect_tensor(out, f"the output for x of shape {_fmt(x.shape)}", x.shape).detach()


@exercise(reference=attention.apply_rope, probe=lambda: (torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)))
def apply_rope(fn):
    """Check RoPE's relative-position property and compare with the interleaved-pair formula (Su et al., 2021)."""
    reference = attention.apply_rope

    g = torch.Generator().manual_seed(0)
    d = 16
    q, k = torch.randn(1, d, generator=g), torch.randn(1, d, generator=g)
    for m, n, shift in [(3, 1, 5), (0, 7, 11), (10, 10, 3)]:
        scores = [float((_rope(fn, q, torch.tensor([a])) * _rope(fn, k, torch.tensor([b]))).sum())
                  for a, b in [(m, n), (m + shift, n + shift)]]
        before, after = scores
        if abs(before - after) > 1e-3 * max(1.0, abs(before)):
            raise CheckFailed(f"q\u00b7k changed from {before:.3f} to {after:.3f} when both positions ({m}, {n}) moved by {shift}; "
                              "with RoPE the score must depend only on the offset m - n (rotate, do not add).")
    cases = [((2, 3, 6, 8), torch.arange(6)), ((1, 1, 1, 4), torch.tensor([5])), ((4, 10, 16), torch.arange(10) + 3)]
    for shape, positions in cases:
        x = torch.randn(*shape, generator=g)
        expected = reference(x, positions)
        out = _rope(fn, x, positions)
        if not torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-4):
            raise CheckFailed("the rotated vectors have a different length than the inputs; RoPE only rotates pairs, "
                              "so each pair needs both cos and sin terms.")
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
    _check_device(fn, (x, positions), _device_hint("x", " (e.g. torch.arange(0, d, 2, device=x.device))"))
    return "scores depend only on relative position, x is left unchanged, and the output matches the RoPE formula on 3 shapes"


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


def _changed_labels(original: torch.Tensor, changed: torch.Tensor) -> str:
    """Diagnosis for a sequence_nll that wrote into its labels."""
    if changed.shape == original.shape and torch.equal(changed[:, :-1], original[:, 1:]):
        return ("your function shifts labels in place; logits[:, t] already predicts labels[:, t] (the caller shifted them), "
                "so use labels as they are and leave them unchanged.")
    return ("your function changed the labels passed to it; leave labels unchanged (e.g. labels.masked_fill(...) returns a "
            "new tensor, labels[...] = ... writes into the caller's).")


_SEQUENCE_NLL_HINTS = {
    "labels": _changed_labels,
    "mask": "your function writes into mask (e.g. mask.fill_ or mask[...] = ...), so the caller's mask is lost; leave mask "
            "unchanged: it says which tokens count, and the token losses are multiplied by it.",
}


def _nll_probe() -> tuple:
    return torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long)


@exercise(reference=sft.sequence_nll, probe=_nll_probe)
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
        logits.requires_grad_()
        variants = {key: value.detach() for key, value in _nll_variants(logits, labels, mask).items()}
        out = _call(fn, logits, labels, mask, names=("logits", "labels", "mask"), hints=_SEQUENCE_NLL_HINTS)
        what = f"the loss for logits of shape {_fmt(logits.shape)}"
        _expect_tensor(out, what, finite=None)
        if out.dim() != 0:
            raise CheckFailed(f"it should return one number (a 0-dimensional tensor) but returned shape {_fmt(out.shape)}; "
                              "average over sequences at the end.")
        if not out.requires_grad:
            raise CheckFailed("your loss has no gradient; compute it with torch operations on the logits (no .item(), numpy or floats).")
        _expect_tensor(out, what)
        got = out.detach()
        if torch.isclose(got, variants["reference"], atol=1e-5):
            continue
        hints = {
            "token_mean": "you averaged over all counted tokens of the batch; average within each sequence first, then over sequences.",
            "no_mask": "your loss counts masked positions; multiply the token losses by the mask before averaging.",
            "sum": "you summed the token losses of each sequence; divide by the number of counted tokens in it.",
        }
        for key, hint in hints.items():
            if torch.isclose(got, variants[key], atol=1e-5):
                raise CheckFailed(f"for masks {mask.tolist()} you return {got.item():.4f} instead of {variants['reference']:.4f}: {hint}")
        raise CheckFailed(f"for masks {mask.tolist()} you return {got.item():.4f} instead of {variants['reference']:.4f}; "
                          "logits[:, t] predicts labels[:, t] (no shift inside this function) and the loss is -log softmax.")
    logits, mask = cases[0]
    _check_device(fn, (logits, torch.zeros_like(mask), mask), _device_hint("the logits", " (or derive them from the inputs, e.g. zeros_like)"))
    return "matches torch's cross_entropy, averaged per sequence then over the batch, with padding, batch 1 and length 1"


def _sft_batch():
    """A small batch: right padding in row 1, loss on the last tokens (the 'answer')."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 50, (2, 8), generator=g)
    attention_mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    loss_mask = torch.tensor([[0] * 5 + [1] * 3, [0] * 4 + [1] * 2 + [0] * 2])
    ids[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


def _sft_probe() -> tuple:
    model = copy.deepcopy(_random_lm()).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.0), _sft_batch()


@exercise(reference=sft.sft_step, probe=_sft_probe)
def sft_step(fn):
    """Compare two training steps with the reference (shifted, masked loss; zero_grad, backward, step)."""
    nll, reference = sft.sequence_nll, sft.sft_step

    # No device check on meta: a step ends with loss.item(), which meta tensors (they hold no values) cannot give,
    # so the call could never finish there; the tensors it needs come from the model and the batch anyway.
    batch = _sft_batch()
    base = _random_lm()
    ref_model, model = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    ref_opt, opt = torch.optim.SGD(ref_model.parameters(), lr=0.5), torch.optim.SGD(model.parameters(), lr=0.5)
    with torch.no_grad():
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        candidates = {
            "no_shift": nll(logits, batch["input_ids"], batch["loss_mask"]).item(),
            "all_tokens": nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["attention_mask"][:, 1:]).item(),
        }
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(2):
        expected = reference(ref_model, ref_opt, {key: value.clone() for key, value in batch.items()})
        got = _call(fn, model, opt, batch)
        if isinstance(got, torch.Tensor):
            raise CheckFailed("it returns the loss as a torch.Tensor; return loss.item(), a Python float (a tensor keeps "
                              "the computation graph alive, and the experiment plots these numbers).")
        if not isinstance(got, float):
            raise CheckFailed(f"it should return the loss as a Python float (loss.item()), not a {type(got).__name__}.")
        if not math.isfinite(got):
            raise CheckFailed(f"your loss is {got}; run your function on a small batch and print the intermediate tensors to "
                              "see where it first appears.")
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
    return "the loss (a Python float) and the parameters after two SGD steps match the reference step on a small random GPT-2"


# --------------------------------------------------------------------------- 4. decoding
def _kept(logits: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the tokens a filter kept (finite logits)."""
    return torch.isfinite(logits)


def _check_filter_output(out, logits, what: str) -> torch.Tensor:
    """Shape, dtype, -inf for removed tokens, unchanged values for kept ones; returns the kept tokens."""
    out = _expect_tensor(out, f"the filtered logits {what}", logits.shape, finite="no-nan").detach()
    changed = out != logits  # -inf inputs stay -inf
    if changed.any():
        values = out[changed].unique()
        if len(values) == 1 and values[0] == 0:
            raise CheckFailed(f"removed tokens {what} are set to 0, which softmax still gives probability; set them to -inf.")
        if len(values) == 1 and math.isfinite(values[0]) and values[0] <= -1e3:
            raise CheckFailed(f"removed tokens {what} are set to {float(values[0]):.0e}, not -inf; use float('-inf') as "
                              "transformers' filters do, so that removed tokens get probability exactly 0 and stay "
                              "recognisably removed (torch.isinf) when filters are combined.")
        if (values != -INF).any():
            raise CheckFailed(f"some logits {what} changed value; a filter sets removed tokens to -inf and leaves the others as they are.")
    return _kept(out)


def _logits_probe() -> tuple:
    return (torch.zeros(1, 2),)


@exercise(reference=decoding.temperature_softmax, probe=lambda: (*_logits_probe(), 1.0))
def temperature_softmax(fn):
    """Compare with softmax(TemperatureLogitsWarper(t)(logits)) from transformers."""
    from transformers import TemperatureLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 20, generator=g) * 3
    filtered = logits.clone()
    filtered[:, ::3] = -INF
    cases = [(logits, 1.0), (logits, 0.5), (logits, 2.0), (logits[:1], 0.7), (filtered, 0.8), (logits * 100, 0.01)]
    for z, t in cases:
        expected = torch.softmax(TemperatureLogitsWarper(t)(None, z.clone()), dim=-1)
        out = _call(fn, z, t, names=("logits", None))
        out = _expect_tensor(out, f"the probabilities for t = {t}", z.shape, finite=None).detach()
        if not torch.isfinite(out).all() and z.abs().max() > 100:
            raise CheckFailed(f"with large logits and t = {t} you get NaN or inf; subtract each row's maximum before exp "
                              "(or use torch.softmax).")
        _expect_tensor(out, f"the probabilities for t = {t}" + (" and logits with -inf" if (z == -INF).any() else ""))
        if torch.allclose(out, expected, atol=1e-5):
            continue
        if torch.allclose(out, torch.softmax(z * t, -1), atol=1e-5):
            raise CheckFailed(f"you multiply the logits by t = {t}; divide them by t (t < 1 sharpens, t > 1 flattens).")
        sums = out.sum(-1)
        if ((sums - 1).abs() > 1e-4).any():
            row = _first_bad((sums - 1).abs() > 1e-4)[0]
            raise CheckFailed(f"row {row} of your probabilities sums to {sums[row]:.2f}; apply the softmax over the last dimension (the vocabulary).")
        raise CheckFailed(f"for t = {t} your probabilities differ from softmax(logits / t) by up to {(out - expected).abs().max():.4f}.")
    _check_device(fn, (logits, 0.7), _device_hint("the logits"))
    return "matches transformers' TemperatureLogitsWarper + softmax for 5 temperatures, incl. -inf logits and large logits"


@exercise(reference=decoding.top_k_filter, probe=lambda: (*_logits_probe(), 1))
def top_k_filter(fn):
    """Compare the kept tokens with transformers' TopKLogitsWarper (ties at the k-th value are all kept)."""
    from transformers import TopKLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 30, generator=g)
    ties = torch.randint(0, 4, (3, 30), generator=g).float()  # many equal logits
    cases = [(logits, 5), (logits, 1), (logits[:1], 30), (logits, 50), (ties, 4), (ties[:1], 1)]
    for z, k in cases:
        expected = _kept(TopKLogitsWarper(k)(None, z.clone()))
        vocab = z.shape[-1]
        try:
            out = _call(fn, z, k, names=("logits", None))
        except CheckFailed as failure:
            if k > vocab and "out of range" in str(failure):
                raise CheckFailed(f"with k = {k}, more than the {vocab} tokens of the vocabulary, every token must be kept, "
                                  "but your function raised an error: torch.topk accepts at most k = vocabulary size.") from None
            raise
        kept = _check_filter_output(out, z, f"for k = {k}")
        if torch.equal(kept, expected):
            continue
        row = int((kept != expected).any(-1).nonzero()[0])
        n_kept, n_expected = int(kept[row].sum()), int(expected[row].sum())
        if k >= vocab:
            raise CheckFailed(f"with k = {k} >= the vocabulary size {vocab} every token must be kept, but row {row} keeps {n_kept}.")
        if n_expected > k:
            raise CheckFailed(f"row {row} has ties at the k-th largest logit (k = {k}); keep every token whose logit is >= the "
                              f"k-th largest value ({n_expected} tokens, as transformers does), you kept {n_kept}.")
        raise CheckFailed(f"for k = {k} row {row} keeps {n_kept} tokens but should keep the {n_expected} largest logits.")
    _check_device(fn, (logits, 5), _device_hint("the logits", " (e.g. torch.full_like(logits, float('-inf')))"))
    return "keeps the same tokens as transformers' TopKLogitsWarper, incl. k = 1, k >= vocabulary, ties, and leaves the logits unchanged"


def _near_boundary(z: torch.Tensor, p: float) -> bool:
    """True if a cumulative probability is within 1e-5 of p: float rounding may decide such a token."""
    probs = torch.sort(z.double().softmax(-1), descending=True).values
    return bool(((probs.cumsum(-1) - p).abs() < 1e-5).any())


@exercise(reference=decoding.top_p_filter, probe=lambda: (*_logits_probe(), 0.5))
def top_p_filter(fn):
    """Compare the kept tokens with transformers' TopPLogitsWarper (min_tokens_to_keep = 1)."""
    from transformers import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 40, generator=g) * 2
    after_top_k = logits.clone()
    after_top_k[:, 10:] = -INF
    cases = [(logits, p) for p in (0.1, 0.5, 0.9, 0.95, 1.0)] + [(logits[:1], 1e-6), (after_top_k, 0.8)]
    for z, p in cases:
        expected = _kept(TopPLogitsWarper(p)(None, z.clone()))
        order = torch.sort(z, dim=-1, descending=True, stable=True).indices
        in_sorted_order = expected.gather(-1, order)  # the decision of rank r at position r
        out = _call(fn, z, p, names=("logits", None))
        kept = _check_filter_output(out, z, f"for p = {p}")
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
            if torch.equal(kept[row], in_sorted_order[row]) or torch.equal(kept[row], in_sorted_order[row].gather(-1, order[row])):
                raise CheckFailed(f"for p = {p} row {row} keeps the right number of tokens at the wrong places: your mask is still "
                                  "in sorted order; map it back to vocabulary order (the token at sorted position r is "
                                  "order[r], e.g. mask.scatter(-1, order, sorted_mask)).")
            raise CheckFailed(f"for p = {p} row {row} keeps the right number of tokens but not the most likely ones; "
                              "rank the tokens by probability, descending.")
    # ties: equal logits may be ordered either way, so compare the number kept and that the kept ones are the largest
    uniform = torch.zeros(2, 4)
    uniform[1] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    for p in (0.5, 0.6):
        expected = _kept(TopPLogitsWarper(p)(None, uniform.clone()))
        out = _call(fn, uniform, p, names=("logits", None))
        kept = _check_filter_output(out, uniform, f"for tied logits and p = {p}")
        for row in range(2):
            counts_match = int(kept[row].sum()) == int(expected[row].sum())
            top_set = kept[row].all() or bool(uniform[row][kept[row]].min() >= uniform[row][~kept[row]].max())
            if not (counts_match and top_set):
                raise CheckFailed(f"for the tied logits {uniform[row].tolist()} and p = {p} you keep {int(kept[row].sum())} tokens; "
                                  f"the smallest set reaching p has {int(expected[row].sum())} tokens.")
    _check_device(fn, (logits, 0.9), _device_hint("the logits"))
    return ("keeps the same tokens as transformers' TopPLogitsWarper for 7 values of p, incl. p = 1, tiny p, -inf inputs "
            "and ties, and leaves the logits unchanged")


def _check_generation(out, prompt, expected, what: str) -> torch.Tensor:
    """Shape, dtype and prompt checks shared by greedy and beam search."""
    out = _expect_tensor(out, what, dtype=None, finite=None)
    if out.shape == (prompt.shape[0], expected.shape[1] - prompt.shape[1]) and prompt.shape[1] > 0:
        raise CheckFailed(f"{what} has shape {_fmt(out.shape)}: return the prompt followed by the new tokens, "
                          f"shape {_fmt(expected.shape)}.")
    _expect_tensor(out, what, expected.shape, dtype=torch.long, finite=None)
    if not torch.equal(out[:, :prompt.shape[1]], prompt):
        raise CheckFailed(f"{what} does not start with the prompt; append new tokens after input_ids.")
    return out


def _decode_probe(*args) -> tuple:
    return (copy.deepcopy(_random_lm()), torch.zeros(1, 1, dtype=torch.long), *args)


@exercise(reference=decoding.greedy_decode, probe=lambda: _decode_probe(1))
def greedy_decode(fn):
    """Compare with ``model.generate(do_sample=False, num_beams=1)`` on a small random GPT-2 (equal-length prompts)."""
    model = _random_lm()
    yours = copy.deepcopy(model)  # what the student's code does to its model stays there
    g = torch.Generator().manual_seed(0)
    for batch, length, new in [(2, 4, 5), (1, 1, 3), (3, 6, 1)]:
        prompt = torch.randint(0, 50, (batch, length), generator=g)
        expected = _generate(model, prompt, new)
        out = _check_generation(_call(fn, yours, prompt, new, names=(None, "input_ids", None)), prompt, expected,
                                f"the output for {batch} prompts of length {length} and max_new_tokens={new}")
        if not torch.equal(out, expected):
            b, t = _first_bad(out != expected)
            raise CheckFailed(f"new token {t - length} of sequence {b} is {int(out[b, t])} but greedy decoding picks "
                              f"{int(expected[b, t])}, the argmax of the logits at the last position.")
    _check_device(fn, (model, prompt, 2), _device_hint("input_ids"))
    return "identical tokens to transformers' generate(do_sample=False) for batch 1 and 3, prompt length 1, 1 to 5 new tokens"


# Beam search: a random GPT-2 with flat next-token distributions (scale 1.5) on which beam search, greedy decoding,
# beams that each grow by their own argmax, and a ranking by the last token only all give different tokens on the
# first case; at every step the num_beams-th and the next candidate differ by more than 5e-3 in log-probability,
# far above float32 rounding. tests/test_checks_lm.py verifies that each of these mistakes is told apart.
_BEAM_MODEL = dict(seed=1, scale=1.5)
_BEAM_CASES = [(2, 3, 3, 5), (1, 1, 2, 4), (1, 4, 1, 3), (2, 2, 4, 1), (1, 2, 4, 6)]  # (batch, prompt length, beams, new)


@torch.no_grad()
def _beam_mistake(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int, mistake: str) -> torch.Tensor:
    """What beam search returns with a known mistake: "own_argmax" (after the first step each beam grows by its own
    most likely token) or "last_token" (candidates ranked by their last token's log-probability only)."""
    batch = input_ids.shape[0]
    beams = input_ids.repeat_interleave(num_beams, dim=0)  # (batch * beams, seq)
    scores = torch.full((batch, num_beams), -INF)
    scores[:, 0] = 0.0
    for step in range(max_new_tokens):
        lp = torch.log_softmax(model(input_ids=beams).logits[:, -1].float(), dim=-1)  # (batch * beams, vocab)
        vocab = lp.shape[-1]
        if mistake == "own_argmax" and step > 0:
            best = lp.max(-1)
            scores = scores + best.values.view(batch, num_beams)
            beams = torch.cat([beams, best.indices[:, None]], dim=-1)
            continue
        base = torch.where(scores.isinf(), scores, torch.zeros_like(scores)) if mistake == "last_token" else scores
        total = (base.reshape(-1, 1) + lp).view(batch, num_beams * vocab)
        scores, flat = torch.topk(total, num_beams, dim=-1)
        rows = (torch.arange(batch)[:, None] * num_beams + flat // vocab).view(-1)
        beams = torch.cat([beams[rows], (flat % vocab).view(-1, 1)], dim=-1)
    best = scores.argmax(-1) if mistake != "last_token" else torch.zeros(batch, dtype=torch.long)
    return beams.view(batch, num_beams, -1)[torch.arange(batch), best]


class _RecordInputs:
    """Record the input_ids of every forward call of a model while the student's function runs."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __enter__(self):
        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if isinstance(ids, torch.Tensor):
                self.calls.append(ids.detach().clone())
        self.handle = self.model.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def duplicate_after_first_step(self, prompt_len: int) -> bool:
        """True if, once tokens were added, some call holds the same sequence twice (beams that are copies)."""
        return any(ids.dim() == 2 and ids.shape[1] > prompt_len and len(ids.unique(dim=0)) < len(ids) for ids in self.calls)


@exercise(reference=decoding.beam_search, probe=lambda: _decode_probe(2, 1))
def beam_search(fn):
    """Compare with ``model.generate(num_beams=B, do_sample=False, length_penalty=0, early_stopping=True)``, no EOS."""
    sequence_log_likelihood = logprobs.sequence_log_likelihood

    model = _random_lm(**_BEAM_MODEL)
    yours = copy.deepcopy(model)  # what the student's code does to its model stays there
    g = torch.Generator().manual_seed(0)
    runs = []  # (prompt, beams, new, expected, out, record) of every case: a mistake is named only if it explains all
    for batch, length, beams, new in _BEAM_CASES:
        prompt = torch.randint(0, 50, (batch, length), generator=g)
        expected = _generate(model, prompt, new, num_beams=beams)
        with _RecordInputs(yours) as record:
            out = _call(fn, yours, prompt, beams, new, names=(None, "input_ids", None, None))
        out = _check_generation(out, prompt, expected, f"the output for {batch} prompts, num_beams={beams}, max_new_tokens={new}")
        runs.append((prompt, beams, new, expected, out, record))
    wrong = [run for run in runs if not torch.equal(run[4], run[3])]
    if wrong:
        prompt, beams, new, expected, out, _ = wrong[0]
        length = prompt.shape[1]
        b = int((out != expected).any(-1).nonzero()[0])
        got_lp = float(sequence_log_likelihood(model, out[b:b + 1], length))
        best_lp = float(sequence_log_likelihood(model, expected[b:b + 1], length))
        explains = lambda mistake: all(torch.equal(o, mistake(p, k, n)) for p, k, n, _, o, _ in runs)  # noqa: E731
        if any(record.duplicate_after_first_step(p.shape[1]) for p, _, _, _, _, record in runs):
            raise CheckFailed(f"with num_beams={beams} some of your beams are copies of the same sequence: all beams start as "
                              "the same prompt, so expanding every copy at the first step keeps one continuation several "
                              "times; expand only one copy at the first step (start the others with score -inf).")
        if explains(lambda p, k, n: _generate(model, p, n)):
            raise CheckFailed(f"with num_beams={beams} you return the greedy sequence (log-probability {got_lp:.2f}) but beam search "
                              f"finds one with {best_lp:.2f}; keep the num_beams best prefixes and expand every one of them.")
        if explains(lambda p, k, n: _beam_mistake(model, p, k, n, "own_argmax")):
            raise CheckFailed(f"with num_beams={beams} each of your beams grows by its own most likely token only (log-probability "
                              f"{got_lp:.2f}, beam search finds {best_lp:.2f}); at every step score all num_beams x vocabulary "
                              "extensions together and keep the num_beams best of them.")
        if explains(lambda p, k, n: _beam_mistake(model, p, k, n, "last_token")):
            raise CheckFailed(f"you rank the candidates by the log-probability of their last token only (your sequence has "
                              f"{got_lp:.2f}, beam search finds {best_lp:.2f}); add it to the beam's running score, the sum "
                              "of the log-probabilities of all its new tokens.")
        raise CheckFailed(f"for prompt {b} (num_beams={beams}, max_new_tokens={new}) your sequence has log-probability {got_lp:.2f} "
                          f"and generate's best beam {best_lp:.2f}; at each step expand every beam by every token, keep the "
                          "num_beams candidates of highest summed log-probability, and return the best at the end.")
    batch, length, beams, new = _BEAM_CASES[0]
    _check_device(fn, (model, torch.zeros(batch, length, dtype=torch.long), beams, 2),
                  _device_hint("input_ids", " (e.g. torch.full(..., device=input_ids.device))"))
    return "identical tokens to transformers' beam search (length_penalty=0, no EOS) for 1-4 beams, batch 1 and 2, prompt length 1"


# --------------------------------------------------------------------------- Homework 2, 5. sequence log-probabilities
class _DeviceProbeLM(torch.nn.Module):
    """A stand-in causal LM for the meta-device check: it refuses inputs that are not on its own device.

    transformers' GPT-2 calls ``.item()`` on its attention mask, which meta tensors cannot do, so on meta it fails
    before it could notice position ids made on the CPU. This model only embeds tokens and positions (any shapes, any
    device) and raises the error a GPU would raise when an input lives elsewhere.
    """

    def __init__(self, vocab: int = 50, width: int = 8, positions: int = 64):
        super().__init__()
        self.tokens, self.positions = torch.nn.Embedding(vocab, width), torch.nn.Embedding(positions, width)
        self.head = torch.nn.Linear(width, vocab)

    @property
    def device(self) -> torch.device:
        """The device of the parameters, as transformers models have it."""
        return self.head.weight.device

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        """logits (batch, seq, vocab) of tokens plus positions; an input on another device raises as on a GPU."""
        for tensor in (input_ids, attention_mask, position_ids):
            if isinstance(tensor, torch.Tensor) and tensor.device != self.device:
                raise RuntimeError(f"Tensor on device {tensor.device} is not on the expected device {self.device}!")
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=self.device)[None]
        hidden = self.tokens(input_ids) + self.positions(position_ids)  # (batch, seq, width)
        return _Output(self.head(hidden))


class _Output:
    """What a transformers causal LM returns, as far as the exercises use it: ``.logits``."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def __getitem__(self, index):
        return (self.logits,)[index]


@functools.lru_cache(maxsize=1)
def _probe_lm() -> _DeviceProbeLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _DeviceProbeLM().eval()


def _padded(rows: list[list[int]], prompt_lens: list[int], side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask, response_mask (batch, seq) of token rows padded with id 0 on ``side``."""
    width = max(len(r) for r in rows)
    ids, attention, response = (torch.zeros(len(rows), width, dtype=torch.long) for _ in range(3))
    for b, (row, prompt_len) in enumerate(zip(rows, prompt_lens)):
        start = width - len(row) if side == "left" else 0
        ids[b, start:start + len(row)] = torch.tensor(row)
        attention[b, start:start + len(row)] = 1
        response[b, start + prompt_len:start + len(row)] = 1
    return ids, attention, response


@torch.no_grad()
def _row_logprobs(model, row: list[int]) -> torch.Tensor:
    """log P(row[t] | row[:t]) for t >= 1 of one unpadded row, (len - 1,): the ground truth, free of padding questions."""
    ids = torch.tensor([row])
    return torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)


@torch.no_grad()
def _sequence_logprob_variants(model, rows, prompt_lens, ids, attention, response) -> dict[str, torch.Tensor]:
    """The expected (batch,) sums and what each known mistake returns on the same batch."""
    expected, mean, prompt_too, off_by_one = [], [], [], []
    for row, prompt_len in zip(rows, prompt_lens):
        lp = _row_logprobs(model, row)  # [t - 1] scores row[t]
        expected.append(lp[prompt_len - 1:].sum())
        mean.append(lp[prompt_len - 1:].mean())
        prompt_too.append(lp.sum())
        row_ids = torch.tensor([row])
        same_position = torch.log_softmax(model(input_ids=row_ids).logits[0].float(), -1).gather(-1, row_ids[0, :, None]).squeeze(-1)
        off_by_one.append(same_position[prompt_len:].sum())  # token t scored with the logits at t
    positions = (attention.cumsum(-1) - 1).clamp(min=0)

    def masked(logits, mask):  # sum of log P(ids[:, t + 1]) over mask[:, t] = 1
        lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (lp * mask).sum(-1)

    right_positions = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits
    return {
        "expected": torch.stack(expected),
        "negated": -torch.stack(expected),
        "mean": torch.stack(mean),
        "prompt": torch.stack(prompt_too),
        "off_by_one": torch.stack(off_by_one),
        "shifted_mask": masked(right_positions, response[:, :-1]),
        "no_positions": masked(model(input_ids=ids, attention_mask=attention).logits, response[:, 1:]),
        "no_mask": masked(model(input_ids=ids).logits, response[:, 1:]),
        "positions_no_mask": masked(model(input_ids=ids, position_ids=positions).logits, response[:, 1:]),
    }


_SEQUENCE_LOGPROB_MISTAKES = {
    "negated": "your values are minus the log-probabilities (a negative log-likelihood, as cross_entropy returns); "
               "log pi(y | x) is the sum of log P itself, a negative number.",
    "off_by_one": "you score token t with the logits at position t; the logits at t predict token t + 1, so token t's "
                  "log-probability comes from logits[:, t - 1] (compare logits[:, :-1] with input_ids[:, 1:]).",
    "shifted_mask": "your response mask is shifted by one: entry t of the shifted log-probabilities scores input_ids[:, t + 1], "
                    "so multiply them by response_mask[:, 1:], not response_mask[:, :-1].",
    "mean": "you average over the response tokens; log pi(y | x) is the sum of their log-probabilities.",
    "prompt": "you also count the prompt's tokens; sum only where response_mask is 1.",
    "no_positions": "with left padding your positions are shifted by the padding: pass position_ids = "
                    "(attention_mask.cumsum(-1) - 1).clamp(min=0) to the model, so each row's first real token is at position 0.",
    "no_mask": "you call the model without the attention mask, so with left padding the real tokens attend to padding; "
               "pass attention_mask (and position ids counted from it) to the model.",
    "positions_no_mask": "you pass position ids but no attention_mask, so with left padding the real tokens attend to the "
                         "padding; pass attention_mask as well.",
}


def _sequence_logprob_cases():
    """(description, rows, prompt lengths, padding side) of the check; rows are unpadded token ids."""
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(1, 50, (n,), generator=g).tolist() for n in (8, 6, 5)]
    prompt_lens = [3, 2, 4]
    return [("3 rows of 8, 6 and 5 tokens with right padding", rows, prompt_lens, "right"),
            ("the same rows with left padding", rows, prompt_lens, "left"),
            ("a batch of 1 without padding whose response starts at position 1", rows[:1], [1], "right"),
            ("a batch of 1 with a response of one token", rows[2:], [4], "left")]


def _sequence_logprob_probe() -> tuple:
    ids = torch.ones(1, 2, dtype=torch.long)
    return copy.deepcopy(_random_lm()), ids, torch.ones_like(ids), torch.tensor([[0, 1]])


@exercise(reference=logprobs.sequence_logprob, probe=_sequence_logprob_probe)
def sequence_logprob(fn):
    """Compare with log P summed over the response, each row scored alone without padding, on right and left padding."""
    model = _random_lm()
    yours = copy.deepcopy(model)  # what the student's code does to its model stays there
    for what, rows, prompt_lens, side in _sequence_logprob_cases():
        ids, attention, response = _padded(rows, prompt_lens, side)
        variants = _sequence_logprob_variants(model, rows, prompt_lens, ids, attention, response)
        expected = variants.pop("expected")
        out = _call(fn, yours, ids, attention, response, names=(None, "input_ids", "attention_mask", "response_mask"))
        out = _expect_tensor(out, f"the output for {what}", (len(rows),), finite=None)
        if out.is_floating_point() and out.dtype != torch.float32:
            _expect_tensor(out, f"the output for {what}")
        _expect_tensor(out, f"the output for {what}", finite="all")
        got = out.detach()
        if not torch.allclose(got, expected, atol=1e-3, rtol=1e-5):
            for mistake, sentence in _SEQUENCE_LOGPROB_MISTAKES.items():
                value = variants[mistake]
                if not torch.allclose(value, expected, atol=1e-3) and torch.allclose(got, value, atol=1e-3, rtol=1e-5):
                    raise CheckFailed(f"for {what}: {sentence}")
            b = int((got - expected).abs().argmax())
            raise CheckFailed(f"for {what} row {b} gets {got[b]:.3f} but the sum of log P(token | earlier tokens) over its response "
                              f"is {expected[b]:.3f}; shift by one (logits[:, :-1] score input_ids[:, 1:]), use log_softmax, "
                              "and sum where response_mask[:, 1:] is 1.")
        if not out.requires_grad:
            raise CheckFailed("your log-probabilities have no gradient (torch.no_grad, .detach() or .item() somewhere); REINFORCE "
                              "differentiates them, so compute them with gradient.")
    ids, attention, response = _padded(*_sequence_logprob_cases()[1][1:])
    _check_device(fn, (_probe_lm(), ids, attention, response),
                  _device_hint("input_ids", " (e.g. torch.arange(seq, device=input_ids.device), or from attention_mask.cumsum)"))
    return ("sums of log P(token | earlier tokens) over the response, with gradient, for right and left padding, a batch of 1 "
            "and a response of one token")


# --------------------------------------------------------------------------- Homework 2, 6. multiple choice
_MC_CORPUS = ["the film was great and the cast was wonderful", "the plot was bad , a complete waste of time",
              "i loved the acting . the music was dull", "what a boring thriller", "an excellent comedy with a great ending"]


@functools.lru_cache(maxsize=1)
def _bpe_tokenizer():
    """A byte-level BPE tokenizer (GPT-2's kind) of 300 tokens, trained in memory on five sentences: no download, no profile."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_MC_CORPUS * 3, vocab_size=300, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


_MC_CASES = [  # (context, options, normalize)
    ("the film was", ["great", "bad", "a complete waste of time"], "none"),
    ("the film was", ["great", "bad", "a complete waste of time"], "per_token"),
    ("the film was", ["great", "bad", "a complete waste of time"], "per_char"),
    ("what a boring thriller . i", ["loved the acting", "hated it"], "none"),
    ("an excellent", ["comedy"], "per_token"),
]


@torch.no_grad()
def _option_variants(model, tokenizer, context: str, options: list[str], normalize: str) -> dict[str, torch.Tensor]:
    """The expected scores (n_options,) and what each known mistake returns, every option scored in its own forward pass."""
    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    context_ids = encode(context)
    n = len(context_ids)

    def scores(option_ids, skip: int, sizes=None) -> torch.Tensor:  # sum of the row's log-probabilities [skip:] / size
        sizes = sizes or [1] * len(option_ids)
        return torch.stack([_row_logprobs(model, context_ids + ids)[skip:].sum() / size for ids, size in zip(option_ids, sizes)])

    with_space = [encode(" " + option) for option in options]
    no_space = [encode(option) for option in options]
    sizes = {"none": None, "per_token": [len(ids) for ids in with_space], "per_char": [len(option) for option in options]}
    variants = {"expected": scores(with_space, n - 1, sizes[normalize]),  # [n - 1] scores the option's first token
                "context": scores(with_space, 0, sizes[normalize]),  # every token after the first, context included
                "no_space": scores(no_space, n - 1, [len(ids) for ids in no_space] if normalize == "per_token" else sizes[normalize]),
                "drops_first": scores(with_space, n, sizes[normalize]),
                "off_by_one": torch.stack([_same_position_logprobs(model, context_ids + ids)[n:].sum() / size
                                           for ids, size in zip(with_space, sizes[normalize] or [1] * len(options))])}
    if normalize == "none":
        variants.update(normalised_anyway=scores(with_space, n - 1, sizes["per_token"]),
                        normalised_anyway_char=scores(with_space, n - 1, sizes["per_char"]))
    if normalize != "none":
        other = "per_char" if normalize == "per_token" else "per_token"
        variants.update(unnormalised=scores(with_space, n - 1), other_normalisation=scores(with_space, n - 1, sizes[other]),
                        space_counted=scores(with_space, n - 1, [len(option) + 1 for option in options]))
    return variants


_SCORE_OPTIONS_MISTAKES = {
    "context": "your scores include the log-probability of the context; score only the option's tokens, log P(option | context).",
    "no_space": "you tokenize each option without the space that separates it from the context; tokenize ' ' + option "
                "(with byte-level BPE 'great' and ' great' are different tokens).",
    "drops_first": "you leave out the option's first token; its log-probability comes from the logits at the context's last "
                   "position.",
    "unnormalised": "you return the summed log-probability although normalize='{normalize}' asks for it to be divided "
                    "({how}).",
    "other_normalisation": "normalize='{normalize}' divides by {how}; your scores divide by the other length.",
    "space_counted": "normalize='per_char' divides by the option's number of characters without the separating space.",
    "off_by_one": "you score each option token with the logits at its own position; the logits at position t predict token "
                  "t + 1, so the option's first token is scored by the logits at the context's last position.",
    "normalised_anyway": "normalize='none' asks for the summed log-probability; you divide by the option's number of tokens.",
    "normalised_anyway_char": "normalize='none' asks for the summed log-probability; you divide by the option's number of "
                              "characters.",
}


@torch.no_grad()
def _same_position_logprobs(model, row: list[int]) -> torch.Tensor:
    """log softmax(logits[t])[row[t]] for every t of one row: token t scored with the logits at t (the off-by-one mistake)."""
    ids = torch.tensor([row])
    return torch.log_softmax(model(input_ids=ids).logits[0].float(), -1).gather(-1, ids[0, :, None]).squeeze(-1)


def _score_options_probe() -> tuple:
    return copy.deepcopy(_random_lm(seed=2, vocab=300, scale=2.0)), _bpe_tokenizer(), "the film was", ["great"]


@exercise(reference=scoring.score_options, probe=_score_options_probe)
def score_options(fn):
    """Compare with log P(option | context) (optionally per token or per character), each option scored alone."""
    tokenizer = _bpe_tokenizer()
    model = _random_lm(seed=2, vocab=len(tokenizer), scale=2.0)
    yours = copy.deepcopy(model)
    for context, options, normalize in _MC_CASES:
        variants = _option_variants(model, tokenizer, context, options, normalize)
        expected = variants.pop("expected")
        what = f"context {context!r}, options {options} and normalize={normalize!r}"
        out = _call(fn, yours, tokenizer, context, options, normalize, names=(None, None, None, "options", None))
        out = _expect_tensor(out, f"the scores for {what}", (len(options),))
        got = out.detach().cpu()
        if torch.allclose(got, expected, atol=1e-4, rtol=1e-5):
            continue
        how = {"per_token": "the option's number of tokens", "per_char": "the option's number of characters"}.get(normalize, "")
        for mistake, sentence in _SCORE_OPTIONS_MISTAKES.items():
            value = variants.get(mistake)
            if value is not None and not torch.allclose(value, expected, atol=1e-4) and torch.allclose(got, value, atol=1e-4, rtol=1e-5):
                raise CheckFailed(f"for {what}: {sentence.format(normalize=normalize, how=how)}")
        i = int((got - expected).abs().argmax())
        raise CheckFailed(f"for {what} option {i} scores {got[i]:.3f} instead of {expected[i]:.3f}; sum log P(token | context, "
                          "earlier option tokens) over the tokens of ' ' + option appended to the context's tokens"
                          + (f", then divide by {how}." if how else "."))
    _check_device(fn, (_probe_lm(), tokenizer, "the film", ["great"], "none"),
                  "your function gives the model token ids on the CPU while the model is on another device (a GPU in Colab); "
                  "move them with .to(model.device) (or next(model.parameters()).device).")
    return ("log P(option | context) for options of 1 to 13 tokens, with normalize 'none', 'per_token' and 'per_char', "
            "a single option, and context and options tokenized apart")
