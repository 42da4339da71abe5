"""The language-model reference code agrees with torch and transformers (attention, decoding, log-probs, SFT)."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from rl4lm.lm import attention, decoding, logprobs, sft


@pytest.fixture(scope="module")
def model():
    """A small random GPT-2 with two pairs of duplicated token embeddings, so that some logits tie exactly."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    lm = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        lm.lm_head.weight.mul_(6.0)
        lm.transformer.wte.weight[7] = lm.transformer.wte.weight[3]  # tied input/output embeddings:
        lm.transformer.wte.weight[9] = lm.transformer.wte.weight[5]  # tokens 3/7 and 5/9 always tie
    return lm


def generate(lm, ids, new, beams=1):
    """generate() with no EOS so that both sides produce exactly ``new`` tokens."""
    extra = dict(length_penalty=0.0, early_stopping=True) if beams > 1 else {}
    config = GenerationConfig(do_sample=False, num_beams=beams, max_new_tokens=new, eos_token_id=None, pad_token_id=0, **extra)
    return lm.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)


@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 3, 5, 8), (1, 4, 17, 16), (3, 2, 9, 1)])
def test_attention_matches_sdpa(shape):
    g = torch.Generator().manual_seed(sum(shape))
    q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
    out, weights = attention.causal_self_attention(q, k, v)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(weights.sum(-1), torch.ones(shape[:-1]))
    assert (weights.triu(1) == 0).all()


def test_rope_scores_depend_on_relative_position_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 32, generator=g)
    for m, n in [(0, 0), (3, 9), (20, 1)]:
        base = attention.apply_rope(q[None], torch.tensor([m])) @ attention.apply_rope(k[None], torch.tensor([n])).T
        for shift in (1, 7, 100):
            moved = attention.apply_rope(q[None], torch.tensor([m + shift])) @ attention.apply_rope(k[None], torch.tensor([n + shift])).T
            torch.testing.assert_close(base, moved, rtol=1e-4, atol=1e-4)
    x = torch.randn(3, 5, 8, generator=g)
    torch.testing.assert_close(attention.apply_rope(x, torch.arange(5)).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(attention.apply_rope(x, torch.zeros(5, dtype=torch.long)), x)


def test_sinusoidal_positions_formula():
    pe = attention.sinusoidal_positions(12, 10)
    t, i = 7, 3
    assert math.isclose(pe[t, 2 * i], math.sin(t / 10000 ** (2 * i / 10)), rel_tol=1e-5)
    assert math.isclose(pe[t, 2 * i + 1], math.cos(t / 10000 ** (2 * i / 10)), rel_tol=1e-5)


def test_sequence_nll_matches_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(3, 7, 13, generator=g), torch.randint(13, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0]])
    per_sequence = [torch.nn.functional.cross_entropy(logits[b][mask[b].bool()], labels[b][mask[b].bool()]) for b in range(3)]
    torch.testing.assert_close(sft.sequence_nll(logits, labels, mask), torch.stack(per_sequence).mean())
    ones = torch.ones(3, 7)
    torch.testing.assert_close(sft.sequence_nll(logits, labels, ones),
                               torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels))


def test_qa_prompt_handles_tiny_and_squad_rows():
    tiny = {"context": "a fine film .", "question": "did the reviewer like the film ?", "answer": "yes"}
    squad = {"context": "Paris is in France.", "question": "Where is Paris?", "answers": {"text": ["France", "in France"], "answer_start": [12, 9]}}
    assert sft.qa_prompt(tiny) == ("review : a fine film . question : did the reviewer like the film ? answer :", " yes")
    assert sft.qa_prompt(squad)[1] == " France"


def test_temperature_matches_transformers():
    z = torch.randn(4, 30) * 3
    for t in (0.3, 1.0, 2.5):
        torch.testing.assert_close(decoding.temperature_softmax(z, t), TemperatureLogitsWarper(t)(None, z.clone()).softmax(-1))


@pytest.mark.parametrize("seed", range(3))
def test_filters_match_transformers(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(5, 100, generator=g) * 2
    ties = torch.randint(0, 5, (5, 100), generator=g).float()
    for k in (1, 3, 10, 100, 500):
        for logits in (z, ties):
            torch.testing.assert_close(decoding.top_k_filter(logits, k), TopKLogitsWarper(k)(None, logits.clone()))
    for p in (1e-6, 0.2, 0.5, 0.9, 0.99, 1.0):
        torch.testing.assert_close(decoding.top_p_filter(z, p), TopPLogitsWarper(p)(None, z.clone()))
        ours, theirs = torch.isfinite(decoding.top_p_filter(ties, p)), torch.isfinite(TopPLogitsWarper(p)(None, ties.clone()))
        assert torch.equal(ours.sum(-1), theirs.sum(-1))  # ties: same number kept (which tied tokens may differ)


def test_top_p_keeps_every_token_at_p_one_for_a_large_vocabulary():
    z = torch.randn(2, 50000) * 8
    assert torch.isfinite(decoding.top_p_filter(z, 1.0)).all()


@pytest.mark.parametrize("batch,length,new", [(1, 1, 6), (3, 4, 8), (2, 7, 1)])
def test_greedy_matches_generate(model, batch, length, new):
    ids = torch.randint(0, 40, (batch, length), generator=torch.Generator().manual_seed(batch * 10 + length))
    assert torch.equal(decoding.greedy_decode(model, ids, new), generate(model, ids, new))


def test_greedy_breaks_exact_ties_like_generate(model):
    ids = torch.arange(40)[:, None]  # every token as a one-token prompt
    ours = decoding.greedy_decode(model, ids, 5)
    assert torch.equal(ours, generate(model, ids, 5))
    assert not torch.isin(ours[:, 1:], torch.tensor([7, 9])).any()  # of two tied tokens, the lower id wins


@pytest.mark.parametrize("batch,length,beams,new", [(2, 3, 2, 5), (3, 1, 4, 6), (1, 5, 3, 1), (2, 2, 1, 4)])
def test_beam_search_matches_generate(model, batch, length, beams, new):
    ids = torch.randint(0, 40, (batch, length), generator=torch.Generator().manual_seed(batch + 7 * beams + new))
    ours, theirs = decoding.beam_search(model, ids, beams, new), generate(model, ids, new, beams)
    if not torch.equal(ours, theirs):  # may only differ by swapping exactly tied tokens
        swap = {7: 3, 9: 5}
        canon = lambda t: t.clone().apply_(lambda x: swap.get(x, x))  # noqa: E731
        assert torch.equal(canon(ours), canon(theirs))
    torch.testing.assert_close(logprobs.sequence_log_likelihood(model, ours, length),
                               logprobs.sequence_log_likelihood(model, theirs, length))


def test_token_log_probs_match_the_models_own_loss():
    """Mean of -log P(w_t | w_<t) over a sequence equals transformers' causal-LM loss with labels = inputs."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    ids = torch.randint(0, 40, (3, 12))
    token_lp = logprobs.token_log_probs(model, ids)
    assert token_lp.shape == (3, 11)
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(-token_lp.mean(), loss)
    torch.testing.assert_close(logprobs.sequence_log_likelihood(model, ids, 4), token_lp[:, 3:].sum(-1))


# --------------------------------------------------------------------------- helpers of the pages and the homework
def test_sample_with_one_hot_probabilities_is_greedy(model):
    ids = torch.randint(0, 40, (3, 4), generator=torch.Generator().manual_seed(0))
    one_hot = lambda logits: torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    assert torch.equal(decoding.sample_with(model, ids, 5, one_hot), decoding.greedy_decode(model, ids, 5))


def test_sample_with_draws_from_the_given_distribution_reproducibly(model):
    ids = torch.zeros(2000, 1, dtype=torch.long)
    only_7_or_9 = lambda logits: torch.zeros_like(logits).index_fill_(-1, torch.tensor([7, 9]), 0.5)
    out = decoding.sample_with(model, ids, 1, only_7_or_9, generator=torch.Generator().manual_seed(0))
    assert set(out[:, 1].tolist()) == {7, 9} and abs((out[:, 1] == 7).float().mean().item() - 0.5) < 0.05
    again = decoding.sample_with(model, ids, 1, only_7_or_9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_cut_at_eos_keeps_the_first_eos_and_copies():
    lists = [[1, 2, 9, 3, 9], [4, 5], []]
    assert decoding.cut_at_eos(lists, 9) == [[1, 2, 9], [4, 5], []]
    copied = decoding.cut_at_eos(lists, None)
    assert copied == lists and copied[0] is not lists[0]


def test_distinct_n_and_repetition_rate_by_hand():
    assert decoding.distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)  # (1,2) (2,1) (1,2): 2 unique of 3
    assert decoding.distinct_n([[1, 2], [1, 2]], 2) == 0.5  # the same bigram in two generations
    assert decoding.distinct_n([[1]], 2) == 0.0 and decoding.distinct_n([], 1) == 0.0
    assert decoding.repetition_rate([[1, 2, 1, 2]], 2) == pytest.approx(1 / 3)  # one bigram repeats within the text
    assert decoding.repetition_rate([[1, 2], [1, 2]], 2) == 0.0  # repeats across generations do not count
    assert decoding.repetition_rate([[3, 3, 3, 3]], 1) == pytest.approx(3 / 4)


def test_mean_token_log_likelihood_counts_up_to_the_first_eos(model):
    ids = torch.tensor([[5, 6, 1, 9, 2, 9], [5, 6, 3, 4, 8, 2]])  # prompt of 2 tokens; eos = 9 in row 0 only
    token_lp = logprobs.token_log_probs(model, ids)[:, 1:]  # log P of the 4 new tokens of each row
    got = logprobs.mean_token_log_likelihood(model, ids, prompt_len=2, eos_token_id=9)
    torch.testing.assert_close(got[0], token_lp[0, :2].mean())  # tokens 1 and the eos 9; the rest is ignored
    torch.testing.assert_close(got[1], token_lp[1].mean())
    no_eos = logprobs.mean_token_log_likelihood(model, ids, prompt_len=2)
    torch.testing.assert_close(no_eos, logprobs.sequence_log_likelihood(model, ids, 2) / 4)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained in a second on a few tiny reviews (the tiny build's own recipe)."""
    import random

    from rl4lm.assets import tiny

    texts = [tiny.review(random.Random(i))["text"] for i in range(200)] + ["question : answer : yes no comedy"] * 5
    return tiny.build_tokenizer(texts, tmp_path_factory.mktemp("tokenizer"))


def test_qa_batch_masks_the_answer_and_pads_right(tokenizer):
    rows = [{"context": "this comedy was fun .", "question": "did the reviewer like the film ?", "answer": "yes"},
            {"context": "a long " * 40 + "review .", "question": "what kind of film is it ?", "answer": "comedy"}]
    batch = sft.qa_batch(tokenizer, rows, max_length=24)
    ids, attention_mask, loss_mask = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    assert ids.shape == attention_mask.shape == loss_mask.shape and ids.shape[1] <= 24
    for row, answer in zip(range(2), [" yes", " comedy"]):
        length = int(attention_mask[row].sum())
        assert attention_mask[row, :length].all() and not attention_mask[row, length:].any()  # right padding
        answer_ids = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
        assert ids[row, length - len(answer_ids):length].tolist() == answer_ids  # answer and eos close the sequence
        assert loss_mask[row].tolist() == [0] * (length - len(answer_ids)) + [1] * len(answer_ids) + [0] * (ids.shape[1] - length)
    assert int(attention_mask[1].sum()) == 24  # the long review was cut from the left to fit


class _AnswersYes(torch.nn.Module):
    """A stand-in LM whose greedy answer is always ' yes' (and whose prompts must arrive left-padded)."""

    def __init__(self, tokenizer):
        super().__init__()
        self.answer = tokenizer(" yes")["input_ids"] + [tokenizer.eos_token_id]
        self.pad = tokenizer.pad_token_id
        self.device = torch.device("cpu")

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        """Prompt followed by ' yes' and end-of-text, cut to max_new_tokens."""
        assert (attention_mask[:, -1] == 1).all(), "prompts must be left-padded"
        new = torch.tensor(self.answer[:max_new_tokens]).expand(len(input_ids), -1)
        return torch.cat([input_ids, new], dim=1)


def test_answer_accuracy_compares_normalised_answers(tokenizer):
    rows = [{"context": "fun .", "question": "did the reviewer like the film ?", "answer": "Yes"},
            {"context": "dull .", "question": "did the reviewer like the film ?", "answer": "no"},
            {"context": "it is set in paris .", "question": "where ?", "answers": {"text": ["no idea", "yes!"], "answer_start": [0, 0]}}]
    accuracy, predictions = sft.answer_accuracy(_AnswersYes(tokenizer), tokenizer, rows, batch_size=2)
    assert predictions == [" yes"] * 3
    assert accuracy == pytest.approx(2 / 3)  # 'Yes' and 'yes!' match after normalisation; 'no' does not
