"""The rl4lm reference implementations agree with the field's libraries (torch, transformers, gymnasium)."""
from __future__ import annotations

import math

import numpy as np
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
from rl4lm.rl import bandits, mdp


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


def test_bandit_reproduces_epsilon_greedy_ordering():
    """Sutton & Barto (2018), Fig. 2.2: after 1000 steps eps=0.1 beats eps=0.01, which beats greedy."""
    results = {eps: bandits.run_testbed(eps, runs=2000, steps=1000, seed=0) for eps in (0.0, 0.01, 0.1)}
    reward = {eps: r[-100:].mean() for eps, (r, _) in results.items()}
    optimal = {eps: o[-100:].mean() for eps, (_, o) in results.items()}
    assert reward[0.1] > reward[0.01] > reward[0.0]
    assert optimal[0.1] > optimal[0.01] > optimal[0.0]
    assert 1.25 < reward[0.1] < 1.5 and 0.75 < optimal[0.1] < 0.9  # the book's curves end near 1.4 and 80 %
    assert 0.9 < reward[0.0] < 1.15 and 0.3 < optimal[0.0] < 0.42  # greedy plateaus near 1.0 and a third
    assert abs(results[0.0][0][0]) < 0.1  # the first pull is a random arm: about nothing on average


def test_argmax_tiebreak_is_uniform():
    counts = np.bincount(bandits.argmax_random_tiebreak(np.zeros((30000, 3)), np.random.default_rng(0)), minlength=3)
    assert np.abs(counts / 30000 - 1 / 3).max() < 0.01


def test_discounted_return_by_hand():
    assert mdp.discounted_return([1, 2, 3], 0.5) == 1 + 0.5 * 2 + 0.25 * 3
    assert mdp.discounted_return([], 0.9) == 0.0
    assert mdp.discounted_return([0, 0, 1], 0.9) == pytest.approx(0.81)
    rewards = np.random.default_rng(0).normal(size=30)
    togo = mdp.returns_to_go(rewards, 0.97)
    assert togo[0] == pytest.approx(mdp.discounted_return(rewards, 0.97))
    assert togo[5] == pytest.approx(mdp.discounted_return(rewards[5:], 0.97))
    np.testing.assert_allclose(togo[:-1], rewards[:-1] + 0.97 * togo[1:])


def test_monte_carlo_agrees_with_policy_evaluation():
    import gymnasium as gym

    env = gym.make("FrozenLake-v1")
    n_states, n_actions = env.observation_space.n, env.action_space.n
    exact = mdp.policy_evaluation(env.unwrapped.P, np.full((n_states, n_actions), 1 / n_actions), 0.95)[0]
    returns = mdp.monte_carlo_returns(env, lambda s: env.action_space.sample(), 0.95, episodes=4000, seed=0)
    assert abs(returns.mean() - exact) < 4 * returns.std() / math.sqrt(len(returns))


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
