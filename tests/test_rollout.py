"""The KV-cached rollout sampler, sequence log-probabilities and REINFORCE on a language model agree with transformers."""
from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from helpers import one_sentence, small_gpt2
from rl4lm import profiles
from rl4lm.lm.logprobs import per_token_logprobs, sequence_logprob, token_log_probs
from rl4lm.lm.rollout import Rollout, greedy_rollout, sample_rollout, sampling_logits
from rl4lm.rlhf.lm_policy_gradient import kl_to_reference, reinforce_step, response_logprobs, review_prompts, train_reinforce

PROMPTS = ["this romance was", "i saw this", "what a", "the new comedy is really", "the"]  # mixed lengths: left padding


@pytest.fixture(scope="module")
def tokenizer():
    profiles.use_tiny_threads()  # one torch thread, as the tiny models use (two threads on a busy 2-core machine crawl)
    return profiles.load_tokenizer("lm")


@pytest.fixture(scope="module")
def tiny_lm():
    return profiles.load_model("lm")


@pytest.fixture(scope="module")
def random_lm(tokenizer):
    return small_gpt2(vocab=len(tokenizer), seed=1)


def generate(model, tokenizer, rollout: Rollout, new: int, **sampling):
    """model.generate on the rollout's own left-padded prompts, stopping at the tokenizer's EOS."""
    prompt = slice(0, rollout.prompt_len)
    return model.generate(input_ids=rollout.input_ids[:, prompt], attention_mask=rollout.attention_mask[:, prompt],
                          max_new_tokens=new, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **sampling)


def check_structure(rollout: Rollout, tokenizer) -> None:
    """Masks and log-probabilities follow the Rollout contract: responses end at the first EOS, padding after it."""
    p, new = rollout.prompt_len, rollout.logprobs.shape[1]
    assert rollout.input_ids.shape == rollout.attention_mask.shape == rollout.response_mask.shape == (len(rollout.input_ids), p + new)
    assert not rollout.response_mask[:, :p].any()
    assert torch.equal(rollout.response_mask[:, p:], rollout.attention_mask[:, p:])
    response = rollout.response_mask[:, p:].bool()
    assert response[:, 0].all()
    assert (response[:, :-1] | ~response[:, 1:]).all(), "a response continues after a gap"
    is_eos = rollout.response_ids == tokenizer.eos_token_id
    eos_before = (is_eos & response).long().cumsum(-1) - (is_eos & response).long()
    assert not (response & (eos_before > 0)).any(), "a response continues after its EOS"
    assert (rollout.response_ids[~response] == tokenizer.pad_token_id).all()
    assert (rollout.logprobs[~response] == 0).all() and (rollout.logprobs[response] <= 0).all()


@pytest.mark.parametrize("which", ["random_lm", "tiny_lm"])
def test_greedy_rollout_matches_generate(request, tokenizer, which):
    model = request.getfixturevalue(which)
    for prompts in (PROMPTS, ["this drama was", "the plot is"]):  # padded, and all of one length (no attention mask)
        rollout = greedy_rollout(model, tokenizer, prompts, max_new_tokens=30)
        check_structure(rollout, tokenizer)
        assert torch.equal(rollout.input_ids, generate(model, tokenizer, rollout, 30, do_sample=False))
    if which == "tiny_lm":  # the trained LM ends its reviews: early stopping and padding after EOS are exercised
        rollout = greedy_rollout(model, tokenizer, PROMPTS, max_new_tokens=40)
        assert (rollout.response_lengths() < 40).any()
        assert torch.equal(rollout.input_ids, generate(model, tokenizer, rollout, 40, do_sample=False))
        assert all(text and "<|" not in text for text in rollout.texts(tokenizer))
        assert [text.startswith(prompt) for text, prompt in zip(rollout.full_texts(tokenizer), PROMPTS)] == [True] * len(PROMPTS)


@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0.7, top_k=20), dict(temperature=1.3, top_p=0.8),
                                      dict(temperature=0.9, top_k=50, top_p=0.9)])
def test_sample_rollout_logprobs_are_those_that_sampled(tiny_lm, tokenizer, sampling):
    rollout = sample_rollout(tiny_lm, tokenizer, PROMPTS, 24, generator=torch.Generator().manual_seed(0), **sampling)
    check_structure(rollout, tokenizer)
    p, response = rollout.prompt_len, rollout.response_mask[:, rollout.prompt_len:].bool()
    with torch.no_grad():  # one uncached forward pass over prompt and response, filtered the same way
        logits = tiny_lm(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                         position_ids=(rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)).logits[:, p - 1:-1].float()
        scores = sampling_logits(logits.flatten(0, 1), **sampling).view_as(logits)  # (batch, new, vocab)
        recomputed = scores.log_softmax(-1).gather(-1, rollout.response_ids[..., None]).squeeze(-1)
    torch.testing.assert_close(rollout.logprobs[response], recomputed[response], atol=1e-4, rtol=0)
    if not sampling:  # temperature 1 and no filter: the policy's own log-probabilities
        with torch.no_grad():
            torch.testing.assert_close(rollout.logprobs, response_logprobs(tiny_lm, rollout), atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampling", [dict(temperature=0.8, top_k=20, top_p=0.9), dict(temperature=1.0), dict(top_p=0.5)])
def test_sampling_matches_transformers(tiny_lm, tokenizer, sampling):
    """The same filtered distribution as transformers' warpers; the same tokens as generate under the same seed."""
    with torch.no_grad():
        logits = tiny_lm(**tokenizer(["this romance was"], return_tensors="pt")).logits[:, -1].float()  # (1, vocab)
    warpers = LogitsProcessorList([TemperatureLogitsWarper(sampling.get("temperature", 1.0))]
                                  + ([TopKLogitsWarper(sampling["top_k"])] if "top_k" in sampling else [])
                                  + ([TopPLogitsWarper(sampling["top_p"])] if "top_p" in sampling else []))
    expected = warpers(None, logits.clone()).softmax(-1)[0]  # (vocab,)
    torch.testing.assert_close(sampling_logits(logits, **sampling).softmax(-1)[0], expected, atol=1e-6, rtol=0)
    # 10000 one-token rollouts from a seeded generator: empirical frequencies within sampling error, never off the support
    rollout = sample_rollout(tiny_lm, tokenizer, ["this romance was"] * 10000, 1, generator=torch.Generator().manual_seed(1), **sampling)
    counts = torch.bincount(rollout.response_ids[:, 0], minlength=len(expected)).float()
    assert counts[expected == 0].sum() == 0
    assert 0.5 * (counts / counts.sum() - expected).abs().sum() < 0.04
    torch.testing.assert_close(rollout.logprobs[:, 0], expected[rollout.response_ids[:, 0]].log(), atol=1e-5, rtol=0)
    # generate(do_sample=True) draws from torch's global generator with the same multinomial: identical tokens.
    # (generate filters to the top 50 tokens when top_k is unset; top_k=0 turns that default off.)
    torch.manual_seed(7)
    ours = sample_rollout(tiny_lm, tokenizer, PROMPTS, 20, **sampling)
    torch.manual_seed(7)
    assert torch.equal(ours.input_ids, generate(tiny_lm, tokenizer, ours, 20, do_sample=True, **({"top_k": 0} | sampling)))


def test_sample_rollout_is_seeded_and_checks_its_arguments(random_lm, tokenizer):
    first, again = (sample_rollout(random_lm, tokenizer, PROMPTS, 8, generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(first.input_ids, again.input_ids) and torch.equal(first.logprobs, again.logprobs)
    bad = [(dict(prompts=[]), "prompts is empty"), (dict(prompts="a prompt"), "prompts should be a list"),
           (dict(prompts=["ok", ""]), "prompts[1] is empty"), (dict(max_new_tokens=0), "max_new_tokens"),
           (dict(temperature=0.0), "temperature must be positive"), (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p"),
           (dict(max_new_tokens=100), "exceeds the model's 64 positions")]
    for change, fragment in bad:
        kwargs = dict(prompts=PROMPTS, max_new_tokens=4) | change
        with pytest.raises(ValueError) as error:
            sample_rollout(random_lm, tokenizer, **kwargs)
        assert fragment in one_sentence(error.value)


def padded(rows: list[list[int]], side: str, pad: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids padded on one side, with their attention mask."""
    width = max(map(len, rows))
    fill = [[pad] * (width - len(r)) for r in rows]
    ids = [f + r if side == "left" else r + f for r, f in zip(rows, fill)]
    mask = [[0] * len(f) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * len(f) for r, f in zip(rows, fill)]
    return torch.tensor(ids), torch.tensor(mask)


def response_mask_of(mask: torch.Tensor, prompt_lens: list[int], side: str) -> torch.Tensor:
    """1 on the real tokens after each row's prompt."""
    first = (mask.shape[1] - mask.sum(-1)) if side == "left" else torch.zeros(len(mask), dtype=torch.long)
    cols = torch.arange(mask.shape[1])
    return ((cols >= (first + torch.tensor(prompt_lens))[:, None]) & mask.bool()).long()


def test_sequence_logprob_matches_transformers_under_any_padding(random_lm):
    torch.manual_seed(0)
    rows = [torch.randint(2, random_lm.config.vocab_size, (n,)).tolist() for n in (9, 5, 12)]
    prompt_lens = [3, 1, 6]
    with torch.no_grad():  # unpadded, one row at a time: transformers' own per-token log-probabilities
        expected = torch.stack([torch.log_softmax(random_lm(input_ids=torch.tensor([r])).logits[0, :-1], -1)
                                .gather(-1, torch.tensor(r[1:])[:, None])[k - 1:].sum() for r, k in zip(rows, prompt_lens)])
        assert torch.allclose(expected, torch.stack([token_log_probs(random_lm, torch.tensor([r]))[0, k - 1:].sum()
                                                     for r, k in zip(rows, prompt_lens)]), atol=1e-5)
    for side in ("right", "left"):
        ids, mask = padded(rows, side)
        got = sequence_logprob(random_lm, ids, mask, response_mask_of(mask, prompt_lens, side))
        torch.testing.assert_close(got.detach(), expected, atol=1e-4, rtol=0)
        assert per_token_logprobs(random_lm, ids, mask).shape == (3, ids.shape[1] - 1)
    random_lm.zero_grad()
    got.sum().backward()  # through the left-padded batch: finite gradients, none leaking from padding
    grads = [p.grad for p in random_lm.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and grads[0].abs().sum() > 0
    random_lm.zero_grad()


def test_sequence_logprob_rejects_bad_input_in_one_sentence(random_lm):
    ids, mask = padded([[5, 6, 7, 8], [9, 10]], "left")
    good = response_mask_of(mask, [2, 1], "left")
    bad = [
        (ids.float(), mask, good, "input_ids should be a (batch, seq) tensor"),
        (ids[0], mask, good, "input_ids should be a (batch, seq) tensor"),
        (ids, mask[:, 1:], good, "attention_mask should have the shape of input_ids"),
        (ids, mask * 2, good, "attention_mask should hold only 0"),
        (ids, mask, good[:, 1:], "response_mask should have the shape of input_ids"),
        (ids, mask, good * 3, "response_mask should hold only 0"),
        (ids, mask, torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]]), "response_mask selects no token in row 1"),
        (ids, mask, torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]]), "position 1 of row 1, where attention_mask is 0 (padding)"),
        (ids, mask, torch.tensor([[1, 0, 1, 1], [0, 0, 0, 1]]), "position 0 of row 0, which has no earlier token"),
        (ids, mask, torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]]), "position 2, the first real token of row 1, which has no earlier token"),
    ]
    for input_ids, attention_mask, response_mask, fragment in bad:
        with pytest.raises(ValueError) as error:
            sequence_logprob(random_lm, input_ids, attention_mask, response_mask)
        assert fragment in one_sentence(error.value)


def test_kl_to_reference_and_reinforce_step(random_lm, tokenizer):
    logprobs, ref = torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-1.5, -1.0, -9.0]])
    assert torch.allclose(kl_to_reference(logprobs, ref, torch.tensor([[1, 1, 0]])), torch.tensor([-0.5]))
    with pytest.raises(ValueError, match="response_mask has shape"):
        kl_to_reference(logprobs, ref, torch.ones(1, 2))
    model = small_gpt2(vocab=len(tokenizer), seed=2)
    rollout = sample_rollout(model, tokenizer, PROMPTS[:4], 6, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    metrics = reinforce_step(model, torch.optim.SGD(model.parameters(), lr=0.1), rollout, torch.tensor([1.0, 0, 0, 0]), 0.25)
    assert set(metrics) >= {"loss", "logprob_mean", "grad_norm"} and metrics["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="returns has shape"):
        reinforce_step(model, torch.optim.SGD(model.parameters(), lr=0.1), rollout, torch.zeros(3), 0.0)


def test_train_reinforce_raises_a_toy_reward(tiny_lm, tokenizer):
    """Reward = how often 'wonderful' appears: a few REINFORCE steps make the tiny LM say it more, deterministically."""
    import copy

    prompts = review_prompts(profiles.load_dataset("reviews", split="test")["text"][:64], words=2)
    reward_fn = lambda texts: torch.tensor([float(t.count("wonderful")) for t in texts])  # noqa: E731
    runs = [train_reinforce(copy.deepcopy(tiny_lm), tiny_lm, tokenizer, reward_fn, prompts, steps=12, batch_size=16, max_new_tokens=16,
                            lr=2e-3, kl_coef=0.01, seed=0) for _ in range(2)]
    history = runs[0]["history"]
    assert history == {**runs[1]["history"], "seconds": history["seconds"]}, "the same seed gave different training curves"
    assert sum(history["reward_mean"][-4:]) / 4 > sum(history["reward_mean"][:4]) / 4 + 0.5, history["reward_mean"]
    assert sum(runs[0]["rewards_after"]) > sum(runs[0]["rewards_before"])
    assert history["kl_to_ref"][-1] > 0 and len(runs[0]["samples_after"]) == 16
    assert all(len(history[key]) == 12 for key in ("reward_mean", "kl_to_ref", "loss", "seconds"))


def test_train_reinforce_checks_its_arguments(random_lm, tokenizer):
    reward_fn = lambda texts: torch.zeros(len(texts))  # noqa: E731
    args = dict(policy=random_lm, reference=None, tokenizer=tokenizer, reward_fn=reward_fn, prompts=PROMPTS, steps=1, batch_size=2,
                max_new_tokens=2, lr=1e-3, kl_coef=0.0, seed=0)
    bad = [(dict(prompts=[]), "prompts should be a non-empty list"), (dict(steps=0), "steps should be"),
           (dict(batch_size=1), "batch_size should be"), (dict(kl_coef=-1.0), "kl_coef must be non-negative"),
           (dict(baseline="mean"), "baseline should be 'batch' or 'running'"), (dict(reference=random_lm), "reference is the policy itself"),
           (dict(reward_fn=lambda texts: torch.zeros(1)), "reward_fn returned shape (1,)")]
    for change, fragment in bad:
        with pytest.raises(ValueError) as error:
            train_reinforce(**(args | change))
        assert fragment in one_sentence(error.value)
    out = train_reinforce(**(args | dict(policy=small_gpt2(vocab=len(tokenizer), seed=3), steps=2, baseline="running", kl_coef=0.1)))
    assert len(out["history"]["reward_mean"]) == 2 and out["history"]["kl_to_ref"][0] == pytest.approx(0.0, abs=1e-4)
