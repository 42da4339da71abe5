"""The language-model checkers accept a student's correct code and reject planted bugs with a helpful sentence.

Planted bugs are built from student copies of the references (``student_copy``): the checkers refuse the course's
own functions, so a bug that called them would be rejected for that reason instead of its own.
"""
from __future__ import annotations

import math

import torch

from helpers import rejects, student_copy
from rl4lm import checks
from rl4lm.checks import lm as lm_checks
from rl4lm.lm import attention, decoding, sft

attend = student_copy(attention.causal_self_attention)
positions_table = student_copy(attention.sinusoidal_positions)
rope = student_copy(attention.apply_rope)
nll = student_copy(sft.sequence_nll)
step = student_copy(sft.sft_step)
top_k = student_copy(decoding.top_k_filter)
top_p = student_copy(decoding.top_p_filter)
greedy = student_copy(decoding.greedy_decode)
beam = student_copy(decoding.beam_search)


def causal(q):
    """The (seq, seq) causal mask for q, on q's device."""
    return torch.ones(q.shape[-2], q.shape[-2], dtype=torch.bool, device=q.device).tril()


# --------------------------------------------------------------------------- attention
def test_attention_bugs():
    def wrong_axis(q, k, v):
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~causal(q), float("-inf"))
        w = s.softmax(-2).nan_to_num()
        return w @ v, w

    def no_scale(q, k, v):
        w = (q @ k.transpose(-2, -1)).masked_fill(~causal(q), float("-inf")).softmax(-1)
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
        return attend(q, k, v)[1]

    def transposed_output(q, k, v):
        out, w = attend(q, k, v)
        return out.transpose(1, 2), w

    def mask_after_softmax(q, k, v):
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) * causal(q)
        return w @ v, w

    def mask_after_softmax_with_inf(q, k, v):
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1).masked_fill(~causal(q), float("-inf"))
        return w.nan_to_num(0.0, 0.0, 0.0) @ v, w

    def scales_q_in_place(q, k, v):
        q /= math.sqrt(q.shape[-1])
        w = (q @ k.transpose(-2, -1)).masked_fill(~causal(q), float("-inf")).softmax(-1)
        return w @ v, w

    rejects(checks.causal_self_attention, wrong_axis, "sums to", "softmax over the last dimension")
    rejects(checks.causal_self_attention, no_scale, "sqrt(d)")
    rejects(checks.causal_self_attention, mask_off_by_one, "future position")
    rejects(checks.causal_self_attention, diagonal_masked, "NaN", "attend to itself")
    rejects(checks.causal_self_attention, weights_only, "tuple (output, weights)")
    rejects(checks.causal_self_attention, transposed_output, "has shape", "should have shape")
    message = rejects(checks.causal_self_attention, mask_after_softmax, "mask after the softmax", "before the softmax")
    assert "last dimension" not in message  # the old hint sent students to the softmax's axis
    rejects(checks.causal_self_attention, mask_after_softmax_with_inf, "mask after the softmax")
    rejects(checks.causal_self_attention, scales_q_in_place, "changed the q passed to it")


def test_attention_mask_made_on_the_cpu_is_caught_without_a_gpu():
    def mask_without_device(q, k, v):
        mask = torch.ones(q.shape[-2], q.shape[-2]).tril()  # on the CPU whatever q's device
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(mask == 0, float("-inf")).softmax(-1)
        return w @ v, w

    rejects(checks.causal_self_attention, mask_without_device, "on the CPU", "create new tensors on q.device")


def test_code_that_meta_tensors_cannot_run_is_not_blamed_on_devices(capsys):
    def checks_its_own_weights(q, k, v):
        out, w = attend(q, k, v)
        if bool(w.isnan().any()):  # needs values: raises on meta, fine on a GPU
            raise ValueError("NaN weights")
        return out, w

    assert checks.causal_self_attention(checks_its_own_weights) is True


# --------------------------------------------------------------------------- positions
def test_sinusoidal_bugs():
    def swapped(seq_len, d_model):
        pe = positions_table(seq_len, d_model)
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
        return positions_table(seq_len, d_model).T

    rejects(checks.sinusoidal_positions, swapped, "swapped")
    rejects(checks.sinusoidal_positions, wrong_frequency, "frequency")
    rejects(checks.sinusoidal_positions, transposed, "shape")


def test_rope_bugs():
    def additive(x, positions):
        return x + positions_table(int(positions.max()) + 1, x.shape[-1])[positions]

    def rotate_half(x, positions):
        d, half = x.shape[-1], x.shape[-1] // 2
        theta = torch.cat([attention.rope_angles(positions, d)] * 2, -1)
        return x * theta.cos() + torch.cat([-x[..., half:], x[..., :half]], -1) * theta.sin()

    def wrong_direction(x, positions):
        return rope(x, -positions)

    def missing_cos(x, positions):
        theta = attention.rope_angles(positions, x.shape[-1])
        out = x.clone()
        out[..., 0::2] = x[..., 0::2] - x[..., 1::2] * theta.sin()
        out[..., 1::2] = x[..., 0::2] * theta.sin() + x[..., 1::2]
        return out

    def writes_into_x(x, positions):
        rotated = rope(x, positions)
        x[...] = rotated  # right values, but the caller's x is overwritten
        return x

    rejects(checks.apply_rope, additive, "depend only on the offset")
    rejects(checks.apply_rope, rotate_half, "rotate half")
    rejects(checks.apply_rope, wrong_direction, "-theta")
    rejects(checks.apply_rope, missing_cos)
    rejects(checks.apply_rope, writes_into_x, "writes the rotated pairs into x itself", "empty_like")


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
        return torch.tensor(nll(logits, labels, mask).item())

    def shifts_labels_in_place(logits, labels, mask):
        labels[:, :-1] = labels[:, 1:].clone()  # the caller already shifted them
        return nll(logits, labels, mask)

    def fills_mask(logits, labels, mask):
        mask.fill_(1)
        return nll(logits, labels, mask)

    def accumulates_on_the_cpu(logits, labels, mask):
        total = torch.zeros(())
        for row in range(logits.shape[0]):
            tok = torch.nn.functional.cross_entropy(logits[row], labels[row], reduction="none")
            total = total + (tok * mask[row]).sum() / mask[row].sum()
        return total / logits.shape[0]

    def accumulates_in_a_vector_on_the_cpu(logits, labels, mask):
        per_sequence = torch.zeros(logits.shape[0])
        tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        per_sequence = per_sequence + (tok * mask).sum(1) / mask.sum(1)
        return per_sequence.mean()

    rejects(checks.sequence_nll, token_mean, "average within each sequence first")
    rejects(checks.sequence_nll, unmasked, "masked positions")
    rejects(checks.sequence_nll, per_sequence_vector, "one number")
    rejects(checks.sequence_nll, python_float, "no gradient")
    rejects(checks.sequence_nll, shifts_labels_in_place, "shifts labels in place", "already predicts labels[:, t]")
    rejects(checks.sequence_nll, fills_mask, "writes into mask")
    assert checks.sequence_nll(accumulates_on_the_cpu)  # a 0-dim CPU tensor mixes with any device, as on a GPU
    rejects(checks.sequence_nll, accumulates_in_a_vector_on_the_cpu, "on the CPU", "logits.device")


def test_sft_step_bugs():
    def no_shift(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = nll(logits, batch["input_ids"], batch["loss_mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def all_tokens(model, optimizer, batch):
        return step(model, optimizer, {**batch, "loss_mask": batch["attention_mask"]})

    def no_zero_grad(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
        loss.backward()
        optimizer.step()
        return loss.item()

    def no_step(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
        return loss.item()

    def returns_the_tensor(model, optimizer, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = nll(logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    rejects(checks.sft_step, no_shift, "predict token t+1")
    rejects(checks.sft_step, all_tokens, "loss_mask")
    rejects(checks.sft_step, no_zero_grad, "zero_grad")
    rejects(checks.sft_step, no_step, "optimizer.step()")
    rejects(checks.sft_step, returns_the_tensor, "torch.Tensor", "loss.item()", "Python float")


# --------------------------------------------------------------------------- decoding
def test_temperature_bugs():
    def multiplies(logits, t):
        return torch.softmax(logits * t, dim=-1)

    def naive_exp(logits, t):
        e = torch.exp(logits / t)
        return e / e.sum(-1, keepdim=True)

    def wrong_axis(logits, t):
        return torch.softmax(logits / t, dim=0)

    def divides_in_place(logits, t):
        return torch.softmax(logits.div_(t), dim=-1)

    def temperature_as_a_cpu_vector(logits, t):
        return torch.softmax(logits / torch.tensor([t]), dim=-1)

    rejects(checks.temperature_softmax, multiplies, "divide them by t")
    rejects(checks.temperature_softmax, naive_exp, "NaN or inf", "maximum")
    rejects(checks.temperature_softmax, wrong_axis, "last dimension")
    rejects(checks.temperature_softmax, divides_in_place, "changed the logits")
    rejects(checks.temperature_softmax, temperature_as_a_cpu_vector, "on the CPU", "logits.device")


def test_top_k_bugs():
    def keeps_k_plus_one(logits, k):
        return top_k(logits, k + 1)

    def exactly_k_indices(logits, k):
        k = min(k, logits.shape[-1])
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)
        return logits.masked_fill(~keep, float("-inf"))

    def zeros_not_inf(logits, k):
        out = top_k(logits, k)
        return out.masked_fill(torch.isinf(out), 0.0)

    def large_negative_not_inf(logits, k):
        out = top_k(logits, k)
        return out.masked_fill(torch.isinf(out), -1e9)

    def in_place(logits, k):
        kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
        return logits.masked_fill_(logits < kth, float("-inf"))

    def k_above_vocabulary(logits, k):
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # fails for k > vocabulary size
        return logits.masked_fill(logits < kth, float("-inf"))

    def fill_made_on_the_cpu(logits, k):
        kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
        return torch.where(logits < kth, torch.full(logits.shape, float("-inf")), logits)

    rejects(checks.top_k_filter, keeps_k_plus_one, "keeps 6 tokens")
    rejects(checks.top_k_filter, exactly_k_indices, "ties")
    message = rejects(checks.top_k_filter, zeros_not_inf, "set to 0", "-inf")
    assert "keeps" not in message
    message = rejects(checks.top_k_filter, large_negative_not_inf, "-1e+09, not -inf", "float('-inf')")
    assert "keeps" not in message  # the old message said how many tokens to keep, which was right already
    rejects(checks.top_k_filter, in_place, "changed the logits")
    rejects(checks.top_k_filter, k_above_vocabulary, "more than the 30 tokens", "every token must be kept")
    rejects(checks.top_k_filter, fill_made_on_the_cpu, "on the CPU", "logits.device")


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

    def unsorts_with_gather(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        remove = (probs.cumsum(-1) - probs) >= p
        remove[..., 0] = False
        return logits.masked_fill(remove.gather(-1, order), float("-inf"))  # the wrong permutation

    def drops_tail_at_one(logits, p):
        out = top_p(logits, p)
        return out.masked_fill(logits == logits.min(-1, keepdim=True).values, float("-inf")) if p >= 1 else out

    def large_negative_not_inf(logits, p):
        out = top_p(logits, p)
        return out.masked_fill(torch.isinf(out) & torch.isfinite(logits), -1e9)

    def positions_made_on_the_cpu(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        remove = (probs.cumsum(-1) - probs) >= p
        remove[..., 0] = False
        unsorted = torch.zeros(logits.shape, dtype=torch.bool).scatter(-1, order, remove)
        return logits.masked_fill(unsorted, float("-inf"))

    def in_place(logits, p):
        out = top_p(logits, p)
        return logits.copy_(out)

    rejects(checks.top_p_filter, drops_tail_at_one, "with p = 1 every token must be kept")
    rejects(checks.top_p_filter, in_place, "changed the logits")
    rejects(checks.top_p_filter, one_too_few, "reaches p")
    rejects(checks.top_p_filter, one_too_many, "stop at the first token")
    message = rejects(checks.top_p_filter, forgets_to_unsort, "still in sorted order", "vocabulary order")
    assert "sort by probability" not in message  # the old hint: they had sorted already
    rejects(checks.top_p_filter, unsorts_with_gather, "still in sorted order", "scatter")
    rejects(checks.top_p_filter, large_negative_not_inf, "not -inf")
    rejects(checks.top_p_filter, positions_made_on_the_cpu, "on the CPU", "logits.device")


def test_greedy_bugs():
    def only_new_tokens(model, input_ids, max_new_tokens):
        return greedy(model, input_ids, max_new_tokens)[:, input_ids.shape[1]:]

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

    def float_ids(model, input_ids, max_new_tokens):
        return greedy(model, input_ids, max_new_tokens).float()

    def new_tokens_collected_on_the_cpu(model, input_ids, max_new_tokens):
        new = torch.zeros(input_ids.shape[0], 0, dtype=torch.long)
        for _ in range(max_new_tokens):
            ids = torch.cat([input_ids, new.to(input_ids.device)], -1)
            new = torch.cat([new, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], -1)
        return torch.cat([input_ids, new], -1)

    def clears_the_prompt(model, input_ids, max_new_tokens):
        out = greedy(model, input_ids, max_new_tokens)
        input_ids.zero_()
        return out

    rejects(checks.greedy_decode, only_new_tokens, "return the prompt followed by the new tokens")
    rejects(checks.greedy_decode, clears_the_prompt, "changed the input_ids")
    rejects(checks.greedy_decode, first_position, "argmax of the logits at the last position")
    rejects(checks.greedy_decode, argmin, "greedy decoding picks")
    rejects(checks.greedy_decode, float_ids, "token ids are integers", "torch.int64")
    rejects(checks.greedy_decode, new_tokens_collected_on_the_cpu, "on the CPU", "input_ids.device")


@torch.no_grad()
def beam_with(model, input_ids, num_beams, max_new_tokens, mistake=None):
    """Beam search, correct or with one known mistake (each beam's own argmax, duplicates, last-token ranking, CPU scores)."""
    batch = input_ids.shape[0]
    beams = input_ids.repeat_interleave(num_beams, 0)  # (batch * beams, seq)
    device = None if mistake == "cpu_scores" else input_ids.device
    scores = torch.zeros(batch, num_beams, device=device)
    if mistake != "duplicates":
        scores[:, 1:] = float("-inf")  # the beams start identical: expand only the first one
    for t in range(max_new_tokens):
        logprobs = torch.log_softmax(model(input_ids=beams).logits[:, -1], -1)
        vocab = logprobs.shape[-1]
        if mistake == "own_argmax" and t > 0:
            best = logprobs.max(-1)
            scores = scores + best.values.view(batch, num_beams)
            beams = torch.cat([beams, best.indices[:, None]], -1)
            continue
        if mistake == "last_token":
            scores = torch.where(torch.isinf(scores), scores, torch.zeros_like(scores))
        total = (scores.reshape(-1, 1) + logprobs).view(batch, num_beams * vocab)
        scores, flat = torch.topk(total, num_beams, -1)
        rows = (torch.arange(batch, device=beams.device)[:, None] * num_beams + flat // vocab).view(-1)
        beams = torch.cat([beams[rows], (flat % vocab).view(-1, 1)], -1)
    best = scores.argmax(-1)
    return beams.view(batch, num_beams, -1)[torch.arange(batch, device=beams.device), best]


def test_beam_cases_tell_every_known_mistake_apart_from_beam_search():
    model = lm_checks._random_lm(**lm_checks._BEAM_MODEL)
    g = torch.Generator().manual_seed(0)
    differs = {"greedy": False, "own_argmax": False, "last_token": False}
    for batch, length, beams, new in lm_checks._BEAM_CASES:
        prompt = torch.randint(0, 50, (batch, length), generator=g)
        expected = lm_checks._generate(model, prompt, new, num_beams=beams)
        assert torch.equal(beam_with(model, prompt, beams, new), expected)
        differs["greedy"] |= not torch.equal(greedy(model, prompt, new), expected)
        for mistake in ("own_argmax", "last_token"):
            differs[mistake] |= not torch.equal(beam_with(model, prompt, beams, new, mistake), expected)
    assert all(differs.values()), differs


def test_beam_search_bugs():
    def greedy_instead(model, input_ids, num_beams, max_new_tokens):
        return greedy(model, input_ids, max_new_tokens)

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

    def each_beam_greedy(model, input_ids, num_beams, max_new_tokens):
        return beam_with(model, input_ids, num_beams, max_new_tokens, "own_argmax")

    def duplicate_beams(model, input_ids, num_beams, max_new_tokens):
        return beam_with(model, input_ids, num_beams, max_new_tokens, "duplicates")

    def last_token_only(model, input_ids, num_beams, max_new_tokens):
        return beam_with(model, input_ids, num_beams, max_new_tokens, "last_token")

    def scores_on_the_cpu(model, input_ids, num_beams, max_new_tokens):
        return beam_with(model, input_ids, num_beams, max_new_tokens, "cpu_scores")

    def clears_the_prompt(model, input_ids, num_beams, max_new_tokens):
        out = beam_with(model, input_ids, num_beams, max_new_tokens)
        input_ids.zero_()
        return out

    assert checks.beam_search(beam_with)  # the helper itself is a correct beam search
    rejects(checks.beam_search, clears_the_prompt, "changed the input_ids")
    rejects(checks.beam_search, greedy_instead, "greedy sequence")
    rejects(checks.beam_search, no_accumulation, "log-probability", "last token only")
    rejects(checks.beam_search, last_token_only, "last token only", "running score")
    rejects(checks.beam_search, each_beam_greedy, "grows by its own most likely token", "num_beams x vocabulary")
    message = rejects(checks.beam_search, duplicate_beams, "copies of the same sequence", "expand only one copy")
    assert "greedy" not in message
    rejects(checks.beam_search, scores_on_the_cpu, "on the CPU", "input_ids.device")


def test_rope_frequencies_made_on_the_cpu_are_caught_without_a_gpu():
    def cpu_frequencies(x, positions):
        d = x.shape[-1]
        omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # on the CPU whatever x's device
        theta = positions.to(torch.float32)[:, None] * omega
        out = torch.empty_like(x)
        out[..., 0::2] = x[..., 0::2] * theta.cos() - x[..., 1::2] * theta.sin()
        out[..., 1::2] = x[..., 0::2] * theta.sin() + x[..., 1::2] * theta.cos()
        return out

    rejects(checks.apply_rope, cpu_frequencies, "x.device")


# --------------------------------------------------------------------------- Homework 2: sequence log-probabilities
def shifted_logprobs(model, input_ids, attention_mask, positions=True, mask=True):
    """log P(input_ids[:, t + 1] | ...) for every t, (batch, seq - 1), as a student computes it (switches for mistakes)."""
    kwargs = {}
    if mask:
        kwargs["attention_mask"] = attention_mask
    if positions:
        kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, **kwargs).logits
    return torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def test_sequence_logprob_bugs():
    from rl4lm.lm import logprobs

    correct = student_copy(logprobs.sequence_logprob)

    def off_by_one(model, input_ids, attention_mask, response_mask):
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
        lp = torch.log_softmax(logits, -1).gather(-1, input_ids[..., None]).squeeze(-1)  # token t with the logits at t
        return (lp * response_mask).sum(-1)

    def no_position_ids(model, input_ids, attention_mask, response_mask):
        return (shifted_logprobs(model, input_ids, attention_mask, positions=False) * response_mask[:, 1:]).sum(-1)

    def no_attention_mask(model, input_ids, attention_mask, response_mask):
        return (shifted_logprobs(model, input_ids, attention_mask, positions=False, mask=False) * response_mask[:, 1:]).sum(-1)

    def averages(model, input_ids, attention_mask, response_mask):
        lp = shifted_logprobs(model, input_ids, attention_mask)
        return (lp * response_mask[:, 1:]).sum(-1) / response_mask[:, 1:].sum(-1)

    def includes_prompt(model, input_ids, attention_mask, response_mask):
        return (shifted_logprobs(model, input_ids, attention_mask) * attention_mask[:, 1:]).sum(-1)

    def mask_shifted(model, input_ids, attention_mask, response_mask):
        return (shifted_logprobs(model, input_ids, attention_mask) * response_mask[:, :-1]).sum(-1)

    @torch.no_grad()
    def under_no_grad(model, input_ids, attention_mask, response_mask):
        return (shifted_logprobs(model, input_ids, attention_mask) * response_mask[:, 1:]).sum(-1)

    def cpu_accumulator(model, input_ids, attention_mask, response_mask):
        total = torch.zeros(input_ids.shape[0])  # made on the CPU
        return total + (shifted_logprobs(model, input_ids, attention_mask) * response_mask[:, 1:]).sum(-1)

    def arange_positions(model, input_ids, attention_mask, response_mask):
        positions = torch.arange(input_ids.shape[1])[None] - (attention_mask.cumsum(-1) == 0).sum(-1, keepdim=True)  # on the CPU
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions.clamp(min=0)).logits
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        return (lp * response_mask[:, 1:]).sum(-1)

    def keeps_a_dimension(*args):
        return correct(*args)[:, None]

    def float64(*args):
        return correct(*args).double()

    rejects(checks.sequence_logprob, off_by_one, "with the logits at position t", "logits[:, t - 1]")
    rejects(checks.sequence_logprob, no_position_ids, "left padding", "position_ids = (attention_mask.cumsum(-1) - 1)")
    rejects(checks.sequence_logprob, no_attention_mask, "without the attention mask")
    rejects(checks.sequence_logprob, averages, "you average over the response tokens", "sum")
    rejects(checks.sequence_logprob, includes_prompt, "also count the prompt's tokens")
    rejects(checks.sequence_logprob, mask_shifted, "response_mask[:, 1:], not response_mask[:, :-1]")
    rejects(checks.sequence_logprob, under_no_grad, "have no gradient", "torch.no_grad")
    rejects(checks.sequence_logprob, cpu_accumulator, "creates a tensor on the CPU", "input_ids.device")
    rejects(checks.sequence_logprob, arange_positions, "creates a tensor on the CPU")  # right values, but not on a GPU
    def negated(*args):
        return -correct(*args)

    def positions_without_mask(model, input_ids, attention_mask, response_mask):
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, position_ids=positions).logits
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        return (lp * response_mask[:, 1:]).sum(-1)

    rejects(checks.sequence_logprob, negated, "minus the log-probabilities")
    rejects(checks.sequence_logprob, positions_without_mask, "position ids but no attention_mask")
    rejects(checks.sequence_logprob, keeps_a_dimension, "has shape (3, 1) but should have shape (3)")
    rejects(checks.sequence_logprob, float64, "has dtype torch.float64")


# --------------------------------------------------------------------------- Homework 2: multiple choice
def option_scores(model, tokenizer, context, options, normalize="none", space=" ", first=0, count_context=False,
                  sizes=None, to_device=True):
    """A student's score_options with switches for the planted mistakes (each option scored in its own pass)."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    scores = []
    for option in options:
        option_ids = tokenizer(space + option, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([context_ids + option_ids])
        if to_device:
            ids = ids.to(model.device)
        lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        start = 0 if count_context else len(context_ids) - 1 + first
        sizes_by_name = {"none": 1, "per_token": len(option_ids), "per_char": len(option)}
        size = sizes_by_name[normalize] if sizes in (None, "per_char_with_space") else sizes_by_name[sizes]
        if sizes == "per_char_with_space" and normalize == "per_char":
            size = len(option) + 1
        scores.append(lp[start:].sum() / size)
    return torch.stack(scores)


def test_score_options_bugs():
    def with_switches(**switches):
        def score_options(model, tokenizer, context, options, normalize="none"):
            if switches.get("sizes") == "other":
                other = {"none": "none", "per_token": "per_char", "per_char": "per_token"}[normalize]
                return option_scores(model, tokenizer, context, options, normalize, sizes=other)
            return option_scores(model, tokenizer, context, options, normalize, **switches)
        return score_options

    assert checks.score_options(with_switches())  # the switches' default is right
    rejects(checks.score_options, with_switches(count_context=True), "include the log-probability of the context")
    rejects(checks.score_options, with_switches(space=""), "without the space", "' ' + option")
    rejects(checks.score_options, with_switches(first=1), "leave out the option's first token")
    rejects(checks.score_options, with_switches(sizes="none"), "normalize='per_token' asks for it to be divided",
            "number of tokens")
    rejects(checks.score_options, with_switches(sizes="other"), "normalize='per_token' divides by the option's number of tokens")
    rejects(checks.score_options, with_switches(sizes="per_char_with_space"), "without the separating space")
    rejects(checks.score_options, with_switches(to_device=False), "token ids on the CPU", ".to(model.device)")

    def scored_at_own_position(model, tokenizer, context, options, normalize="none"):
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        scores = []
        for option in options:
            option_ids = tokenizer(" " + option, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([context_ids + option_ids])
            lp = torch.log_softmax(model(input_ids=ids).logits[0], -1).gather(-1, ids[0, :, None]).squeeze(-1)
            size = {"none": 1, "per_token": len(option_ids), "per_char": len(option)}[normalize]
            scores.append(lp[len(context_ids):].sum() / size)
        return torch.stack(scores)

    def always_per_token(model, tokenizer, context, options, normalize="none"):
        return option_scores(model, tokenizer, context, options, "per_token")

    rejects(checks.score_options, scored_at_own_position, "with the logits at its own position")
    rejects(checks.score_options, always_per_token, "normalize='none' asks for the summed log-probability")
    rejects(checks.score_options, lambda *args: with_switches()(*args).tolist(), "should be a torch.Tensor, but it is a list")
