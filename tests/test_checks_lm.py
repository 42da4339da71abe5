"""The language-model checkers accept the reference and reject planted bugs with a helpful sentence."""
from __future__ import annotations

import math

import torch

from helpers import rejects
from rl4lm import checks
from rl4lm.lm import attention, decoding, sft


# --------------------------------------------------------------------------- attention
def test_attention_bugs():
    def wrong_axis(q, k, v):
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~attention.causal_mask(q.shape[-2]), float("-inf"))
        w = s.softmax(-2).nan_to_num()
        return w @ v, w

    def no_scale(q, k, v):
        w = (q @ k.transpose(-2, -1)).masked_fill(~attention.causal_mask(q.shape[-2]), float("-inf")).softmax(-1)
        return w @ v, w

    def mask_off_by_one(q, k, v):
        allowed = torch.ones(q.shape[-2], q.shape[-2], dtype=torch.bool).tril(1)  # sees one future key
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf")).softmax(-1)
        return w @ v, w

    def diagonal_masked(q, k, v):
        allowed = torch.ones(q.shape[-2], q.shape[-2], dtype=torch.bool).tril(-1)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf")).softmax(-1)
        return w @ v, w

    def weights_only(q, k, v):
        return attention.causal_self_attention(q, k, v)[1]

    def transposed_output(q, k, v):
        out, w = attention.causal_self_attention(q, k, v)
        return out.transpose(1, 2), w

    rejects(checks.causal_self_attention, wrong_axis, "sums to", "softmax over the last dimension")
    rejects(checks.causal_self_attention, no_scale, "sqrt(d)")
    rejects(checks.causal_self_attention, mask_off_by_one, "future position")
    rejects(checks.causal_self_attention, diagonal_masked, "NaN", "attend to itself")
    rejects(checks.causal_self_attention, weights_only, "tuple (output, weights)")
    rejects(checks.causal_self_attention, transposed_output, "has shape", "should have shape")


# --------------------------------------------------------------------------- positions
def test_sinusoidal_bugs():
    def swapped(seq_len, d_model):
        pe = attention.sinusoidal_positions(seq_len, d_model)
        out = pe.clone()
        out[:, 0::2], out[:, 1::2] = pe[:, 1::2], pe[:, 0::2]
        return out

    def wrong_frequency(seq_len, d_model):
        t = torch.arange(seq_len)[:, None].float()
        omega = 10000.0 ** (-torch.arange(0, d_model, 2).float() / 2 / d_model)  # -i/d instead of -2i/d
        pe = torch.zeros(seq_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(t * omega), torch.cos(t * omega)
        return pe

    def transposed(seq_len, d_model):
        return attention.sinusoidal_positions(seq_len, d_model).T

    rejects(checks.sinusoidal_positions, swapped, "swapped")
    rejects(checks.sinusoidal_positions, wrong_frequency, "frequency")
    rejects(checks.sinusoidal_positions, transposed, "shape")


def test_rope_bugs():
    def additive(x, positions):
        return x + attention.sinusoidal_positions(int(positions.max()) + 1, x.shape[-1])[positions]

    def rotate_half(x, positions):
        d, half = x.shape[-1], x.shape[-1] // 2
        theta = torch.cat([attention.rope_angles(positions, d)] * 2, -1)
        return x * theta.cos() + torch.cat([-x[..., half:], x[..., :half]], -1) * theta.sin()

    def wrong_direction(x, positions):
        return attention.apply_rope(x, -positions)

    def missing_cos(x, positions):
        theta = attention.rope_angles(positions, x.shape[-1])
        out = x.clone()
        out[..., 0::2] = x[..., 0::2] - x[..., 1::2] * theta.sin()
        out[..., 1::2] = x[..., 0::2] * theta.sin() + x[..., 1::2]
        return out

    rejects(checks.apply_rope, additive, "depend only on the offset")
    rejects(checks.apply_rope, rotate_half, "rotate half")
    rejects(checks.apply_rope, wrong_direction, "-theta")
    rejects(checks.apply_rope, missing_cos)


# --------------------------------------------------------------------------- teacher forcing
def test_sequence_nll_bugs():
    def token_mean(logits, labels, mask):
        tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        return (tok * mask).sum() / mask.sum()

    def unmasked(logits, labels, mask):
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels)

    def per_sequence_vector(logits, labels, mask):
        tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        return (tok * mask).sum(1) / mask.sum(1)

    def python_float(logits, labels, mask):
        return torch.tensor(sft.sequence_nll(logits, labels, mask).item())

    rejects(checks.sequence_nll, token_mean, "average within each sequence first")
    rejects(checks.sequence_nll, unmasked, "masked positions")
    rejects(checks.sequence_nll, per_sequence_vector, "one number")
    rejects(checks.sequence_nll, python_float, "no gradient")


def test_sft_step_bugs():
    def no_shift(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = sft.sequence_nll(logits, batch["input_ids"], batch["loss_mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def all_tokens(model, optimizer, batch):
        return sft.sft_step(model, optimizer, {**batch, "loss_mask": batch["attention_mask"]})

    def no_zero_grad(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = sft.sequence_nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
        loss.backward()
        optimizer.step()
        return loss.item()

    def no_step(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = sft.sequence_nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
        return loss.item()

    rejects(checks.sft_step, no_shift, "predict token t+1")
    rejects(checks.sft_step, all_tokens, "loss_mask")
    rejects(checks.sft_step, no_zero_grad, "zero_grad")
    rejects(checks.sft_step, no_step, "optimizer.step()")


# --------------------------------------------------------------------------- decoding
def test_temperature_bugs():
    def multiplies(logits, t):
        return torch.softmax(logits * t, dim=-1)

    def naive_exp(logits, t):
        e = torch.exp(logits / t)
        return e / e.sum(-1, keepdim=True)

    def wrong_axis(logits, t):
        return torch.softmax(logits / t, dim=0)

    rejects(checks.temperature_softmax, multiplies, "divide them by t")
    rejects(checks.temperature_softmax, naive_exp, "NaN or inf", "maximum")
    rejects(checks.temperature_softmax, wrong_axis, "last dimension")


def test_top_k_bugs():
    def keeps_k_plus_one(logits, k):
        return decoding.top_k_filter(logits, k + 1)

    def exactly_k_indices(logits, k):
        k = min(k, logits.shape[-1])
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)
        return logits.masked_fill(~keep, float("-inf"))

    def zeros_not_inf(logits, k):
        out = decoding.top_k_filter(logits, k)
        return out.masked_fill(torch.isinf(out), 0.0)

    def in_place(logits, k):
        kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
        return logits.masked_fill_(logits < kth, float("-inf"))

    rejects(checks.top_k_filter, keeps_k_plus_one, "keeps 6 tokens")
    rejects(checks.top_k_filter, exactly_k_indices, "ties")
    rejects(checks.top_k_filter, zeros_not_inf, "-inf")
    rejects(checks.top_k_filter, in_place, "changed the logits")


def test_top_p_bugs():
    def one_too_few(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative > p  # drops the token that takes the mass past p
        remove[..., 0] = False
        return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))

    def one_too_many(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        remove = (probs.cumsum(-1) - probs) > p  # keeps one token past the first that reaches p
        remove[..., :2] = False
        return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))

    def forgets_to_unsort(logits, p):
        sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        remove = (probs.cumsum(-1) - probs) >= p
        remove[..., 0] = False
        return logits.masked_fill(remove, float("-inf"))  # mask in sorted order applied to vocabulary order

    def drops_tail_at_one(logits, p):
        out = decoding.top_p_filter(logits, p)
        return out.masked_fill(logits == logits.min(-1, keepdim=True).values, float("-inf")) if p >= 1 else out

    rejects(checks.top_p_filter, drops_tail_at_one, "with p = 1 every token must be kept")
    rejects(checks.top_p_filter, one_too_few, "reaches p")
    rejects(checks.top_p_filter, one_too_many, "stop at the first token")
    rejects(checks.top_p_filter, forgets_to_unsort, "not the most likely")


def test_greedy_bugs():
    def only_new_tokens(model, input_ids, max_new_tokens):
        return decoding.greedy_decode(model, input_ids, max_new_tokens)[:, input_ids.shape[1]:]

    def first_position(model, input_ids, max_new_tokens):
        ids = input_ids
        for _ in range(max_new_tokens):
            nxt = model(input_ids=ids).logits[:, 0].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], -1)
        return ids

    def argmin(model, input_ids, max_new_tokens):
        ids = input_ids
        for _ in range(max_new_tokens):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmin(-1, keepdim=True)], -1)
        return ids

    rejects(checks.greedy_decode, only_new_tokens, "return the prompt followed by the new tokens")
    rejects(checks.greedy_decode, first_position, "argmax of the logits at the last position")
    rejects(checks.greedy_decode, argmin, "greedy decoding picks")


def test_beam_search_bugs():
    def greedy_instead(model, input_ids, num_beams, max_new_tokens):
        return decoding.greedy_decode(model, input_ids, max_new_tokens)

    @torch.no_grad()
    def no_accumulation(model, input_ids, num_beams, max_new_tokens):
        batch = input_ids.shape[0]
        beams = input_ids.repeat_interleave(num_beams, 0)
        first = True
        for _ in range(max_new_tokens):
            logprobs = torch.log_softmax(model(input_ids=beams).logits[:, -1], -1)
            vocab = logprobs.shape[-1]
            if first:  # only the first beam is expanded at step 1
                logprobs = logprobs.view(batch, num_beams, vocab).clone()
                logprobs[:, 1:] = float("-inf")
                first = False
            total = logprobs.reshape(batch, num_beams * vocab)  # forgets the running score
            _, flat = torch.topk(total, num_beams, -1)
            rows = (torch.arange(batch)[:, None] * num_beams + flat // vocab).view(-1)
            beams = torch.cat([beams[rows], (flat % vocab).view(-1, 1)], -1)
        return beams.view(batch, num_beams, -1)[:, 0]

    rejects(checks.beam_search, greedy_instead, "greedy sequence")
    rejects(checks.beam_search, no_accumulation, "log-probability")
