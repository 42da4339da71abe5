"""PPO with a KL penalty on a language model (rl4lm.rlhf.ppo_lm): per-token rewards by hand, masked GAE against the
CartPole GAE and its explicit sum, gradients and padding in the losses, a short run that raises a reward, bad input
in one sentence, and the sentiment lab's JSON line."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from helpers import one_sentence, run_script, small_gpt2
from rl4lm import profiles
from rl4lm.lm.rollout import sample_rollout
from rl4lm.rl.policy_gradient import gae
from rl4lm.rlhf import ppo_lm
from rl4lm.rlhf.lm_policy_gradient import response_logprobs, review_prompts
from rl4lm.rlhf.ppo_lm import PPOLMConfig, ValueHead, kl_penalized_rewards, masked_gae, ppo_lm_losses, train_ppo_lm
from rl4lm.rlhf.reward_model import reward_model_scorer

PROMPTS = ["this romance was", "i saw this", "what a", "the new comedy is really", "the"]  # mixed lengths: left padding
# Two rows of T = 5 positions: row 0 has a prompt token on the left, 3 response tokens, 1 padding on the right;
# row 1 has 2 response tokens then padding.
MASK = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
LOGP = torch.tensor([[-9.0, -1.0, -2.0, -0.5, -7.0], [-1.5, -0.25, -3.0, -3.0, -3.0]])
REF_LOGP = torch.tensor([[-4.0, -1.5, -1.0, -0.5, -1.0], [-1.0, -0.75, -2.0, -2.0, -2.0]])


@pytest.fixture(scope="module")
def tokenizer():
    profiles.use_tiny_threads()  # one torch thread, as the tiny models use
    return profiles.load_tokenizer("lm")


def test_kl_penalized_rewards_by_hand():
    got = kl_penalized_rewards(torch.tensor([2.0, -1.0]), LOGP, REF_LOGP, MASK, beta=0.5)
    # -0.5 (logp - ref) on the response, score added on each row's last response token, 0 on prompt and padding
    want = torch.tensor([[0.0, -0.25, 0.5, 0.0 + 2.0, 0.0], [0.25, -0.25 - 1.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(got, want)
    assert torch.allclose(kl_penalized_rewards(torch.tensor([2.0, -1.0]), LOGP, REF_LOGP, MASK, beta=0.0),
                          torch.tensor([[0.0, 0, 0, 2, 0], [0, -1, 0, 0, 0]]))


@pytest.mark.parametrize("change, fragment", [(dict(mask=torch.tensor([[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])), "selects no token in row 1"),
                                              (dict(beta=-0.1), "beta must be non-negative"),
                                              (dict(score=torch.zeros(3)), "score should have shape (batch,)")])
def test_kl_penalized_rewards_bad_input_is_one_sentence(change, fragment):
    args = dict(score=torch.zeros(2), logp=LOGP, ref_logp=REF_LOGP, mask=MASK, beta=0.1) | change
    with pytest.raises(ValueError) as error:
        kl_penalized_rewards(**args)
    assert fragment in one_sentence(error.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kl_penalized_rewards_take_a_score_from_another_device():
    """Regression: the score was cast to the rewards' dtype but not moved to their device (a reward model on the CPU)."""
    score = torch.tensor([2.0, -1.0])
    got = kl_penalized_rewards(score, LOGP.cuda(), REF_LOGP.cuda(), MASK.cuda(), beta=0.5)
    assert got.device.type == "cuda" and torch.allclose(got.cpu(), kl_penalized_rewards(score, LOGP, REF_LOGP, MASK, beta=0.5))


def test_masked_gae_equals_gae_on_an_unpadded_row_and_the_explicit_sum():
    torch.manual_seed(0)
    rewards, values, gamma, lam = torch.randn(1, 6), torch.randn(1, 6), 0.9, 0.8
    advantages, returns = masked_gae(rewards, values, torch.ones(1, 6), gamma, lam)
    dones = torch.zeros(6, 1)
    dones[-1] = 1.0  # the response ends after its last token: no bootstrap
    want_adv, want_ret = gae(rewards.T, values.T, dones, torch.zeros(1), gamma, lam)
    assert torch.allclose(advantages, want_adv.T, atol=1e-6) and torch.allclose(returns, want_ret.T, atol=1e-6)
    next_values = torch.cat([values[0, 1:], torch.zeros(1)])
    delta = rewards[0] + gamma * next_values - values[0]
    explicit = torch.stack([sum((gamma * lam) ** k * delta[t + k] for k in range(6 - t)) for t in range(6)])
    assert torch.allclose(advantages[0], explicit, atol=1e-6)
    # the same row inside left and right padding: the same advantages on it, 0 elsewhere
    padded_r, padded_v = torch.zeros(1, 9), torch.randn(1, 9)
    padded_r[0, 2:8], padded_v[0, 2:8] = rewards[0], values[0]
    mask = torch.zeros(1, 9)
    mask[0, 2:8] = 1
    padded_adv, padded_ret = masked_gae(padded_r, padded_v, mask, gamma, lam)
    assert torch.allclose(padded_adv[0, 2:8], advantages[0], atol=1e-6) and torch.allclose(padded_ret[0, 2:8], returns[0], atol=1e-6)
    assert (padded_adv[mask == 0] == 0).all() and (padded_ret[mask == 0] == 0).all()


def loss_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of ppo_lm_losses on MASK's shape, each a leaf tensor that records its gradient."""
    g = torch.Generator().manual_seed(seed)
    old_logp = -torch.rand(2, 5, generator=g) * 3
    tensors = dict(new_logp=old_logp + 0.3 * torch.randn(2, 5, generator=g), new_values=torch.randn(2, 5, generator=g),
                   old_logp=old_logp, ref_logp=-torch.rand(2, 5, generator=g) * 3, old_values=torch.randn(2, 5, generator=g),
                   score=torch.randn(2, generator=g))
    return {name: t.clone().requires_grad_(True) for name, t in tensors.items()}


def test_ppo_lm_losses_gradient_flows_only_through_new_logp_and_new_values():
    inputs = loss_inputs()
    out = ppo_lm_losses(**inputs, mask=MASK, beta=0.1)
    out["loss"].backward()
    for name in ("new_logp", "new_values"):
        grad = inputs[name].grad
        assert grad is not None and (grad[MASK == 1] != 0).any() and (grad[MASK == 0] == 0).all(), name
    for name in ("old_logp", "ref_logp", "old_values", "score"):
        assert inputs[name].grad is None or (inputs[name].grad == 0).all(), f"a gradient reached {name}"
    assert torch.allclose(out["loss"], out["policy_loss"] + 0.1 * out["value_loss"])
    given = kl_penalized_rewards(inputs["score"], inputs["old_logp"], inputs["ref_logp"], MASK, 0.1)
    assert torch.allclose(ppo_lm_losses(**inputs, mask=MASK, beta=0.1, rewards=given)["loss"], out["loss"])
    with pytest.raises(ValueError, match="rewards has shape"):
        ppo_lm_losses(**inputs, mask=MASK, beta=0.1, rewards=given[:, :3])


def test_ppo_lm_losses_ignore_what_padding_positions_hold():
    inputs, junk = loss_inputs(0), loss_inputs(1)
    padding = MASK == 0
    changed = {name: torch.where(padding, junk[name], t) if t.dim() == 2 else t for name, t in inputs.items()}
    a, b = ppo_lm_losses(**inputs, mask=MASK, beta=0.1), ppo_lm_losses(**changed, mask=MASK, beta=0.1)
    for key in ("loss", "policy_loss", "value_loss", "approx_kl", "clipfrac"):
        assert torch.allclose(a[key], b[key]), key


def test_logprobs_and_values_match_the_sampler_at_its_temperature(tokenizer):
    model = small_gpt2(vocab=len(tokenizer), seed=1)
    head = ValueHead(model.config.n_embd)
    for temperature in (1.0, 0.7):
        rollout = sample_rollout(model, tokenizer, PROMPTS, 6, temperature=temperature, generator=torch.Generator().manual_seed(0))
        logp, values = ppo_lm.response_logprobs_and_values(model, head, rollout, temperature)
        assert torch.allclose(logp, rollout.logprobs, atol=1e-5), "the importance ratios would not start at 1"
        assert values.shape == logp.shape and (values[rollout.response_mask[:, rollout.prompt_len:] == 0] == 0).all()
    assert torch.allclose(ppo_lm.response_logprobs_and_values(model, None, rollout)[0], response_logprobs(model, rollout), atol=1e-6)


def test_train_ppo_lm_raises_a_toy_reward_and_keeps_a_plain_causal_lm(tokenizer, tmp_path):
    """Reward = how often 'wonderful' appears: a few PPO steps on the tiny LM make it say it more."""
    lm = profiles.load_model("lm")
    prompts = review_prompts(profiles.load_dataset("reviews", split="test")["text"][:64], words=2)
    reward_fn = lambda texts: torch.tensor([float(t.count("wonderful")) for t in texts])  # noqa: E731
    config = PPOLMConfig(steps=10, batch_size=16, max_new_tokens=12, learning_rate=1e-3, beta=0.01, seed=0)
    policy = copy.deepcopy(lm)
    out = train_ppo_lm(policy, tokenizer, reward_fn, prompts, config, reference=lm)
    history = out["history"]
    assert sum(history["reward_mean"][-3:]) / 3 > sum(history["reward_mean"][:3]) / 3 + 0.5, history["reward_mean"]  # 0.23 -> 1.38
    assert sum(out["rewards_after"]) > sum(out["rewards_before"])
    assert out["kl_before"] == pytest.approx(0.0, abs=1e-4) and out["kl_after"] > 0
    assert all(len(history[key]) == 10 for key in ("step", "reward_mean", "kl_to_ref", "return_mean", "policy_loss", "value_loss",
                                                  "approx_kl", "clipfrac", "response_length", "seconds"))
    assert isinstance(out["value_head"], ValueHead) and type(policy) is type(lm)
    policy.save_pretrained(tmp_path)  # still a plain transformers causal LM
    assert all(torch.equal(a, b) for a, b in zip(lm.parameters(), profiles.load_model("lm").parameters())), "the reference changed"


def test_train_ppo_lm_is_deterministic_and_runs_the_given_functions(tokenizer):
    calls = {"rewards": 0, "losses": 0}

    def my_rewards(*args):
        calls["rewards"] += 1
        return 2 * kl_penalized_rewards(*args)  # not the package's: the update must use these

    def my_losses(*args, **kwargs):
        calls["losses"] += 1
        out = ppo_lm_losses(*args, **kwargs)
        new_logp, new_values, old_logp, ref_logp, old_values, score, mask, beta = args[:8]
        assert torch.allclose(out["rewards"], 2 * kl_penalized_rewards(score, old_logp, ref_logp, mask, beta))
        return out

    reward_fn = lambda texts: torch.tensor([len(t) / 40 for t in texts])  # noqa: E731
    config = PPOLMConfig(steps=2, batch_size=4, max_new_tokens=5, ppo_epochs=2, num_minibatches=2, seed=3)
    runs = [train_ppo_lm(small_gpt2(vocab=len(tokenizer), seed=2), tokenizer, reward_fn, PROMPTS, config,
                         kl_rewards_fn=my_rewards, losses_fn=my_losses) for _ in range(2)]
    assert runs[0]["history"] == {**runs[1]["history"], "seconds": runs[0]["history"]["seconds"]}
    assert calls == {"rewards": 4, "losses": 16}


def test_train_ppo_lm_runs_a_losses_fn_that_returns_only_the_losses(tokenizer):
    """Homework 3's find-the-bugs function returns six keys (no approx_kl / clipfrac): the trainer computes those itself."""
    keys = ("loss", "policy_loss", "value_loss", "rewards", "advantages", "returns")

    def six_keys(*args):
        out = ppo_lm_losses(*args)
        return {key: out[key] for key in keys}

    config = PPOLMConfig(steps=2, batch_size=4, max_new_tokens=5, ppo_epochs=1, num_minibatches=2, seed=3)
    reward_fn = lambda texts: torch.tensor([len(t) / 40 for t in texts])  # noqa: E731
    ours, theirs = (train_ppo_lm(small_gpt2(vocab=len(tokenizer), seed=2), tokenizer, reward_fn, PROMPTS, config, losses_fn=fn)["history"]
                    for fn in (ppo_lm_losses, six_keys))
    for key in ("approx_kl", "clipfrac", "policy_loss", "reward_mean"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


def test_train_ppo_lm_bad_input_is_one_sentence(tokenizer):
    policy = small_gpt2(vocab=len(tokenizer), seed=1)
    config = PPOLMConfig(steps=1, batch_size=2, max_new_tokens=2)
    args = dict(policy=policy, tokenizer=tokenizer, reward_fn=lambda texts: torch.zeros(len(texts)), prompts=PROMPTS, config=config)
    bad = [(dict(prompts=[]), "prompts should be a non-empty list"), (dict(reference=policy), "reference is the policy itself"),
           (dict(reward_fn=lambda texts: torch.zeros(1)), "reward_fn returned shape (1,)"),
           (dict(reward_fn=lambda texts: torch.full((len(texts),), float("nan"))), "every score must be a finite number")]
    for change, fragment in bad:
        with pytest.raises(ValueError) as error:
            train_ppo_lm(**(args | change))
        assert fragment in one_sentence(error.value)
    for change, fragment in [(dict(beta=-1.0), "config.beta must be non-negative"), (dict(steps=0), "config.steps should be a whole number"),
                             (dict(num_minibatches=3), "num_minibatches = 3 exceeds config.batch_size = 2")]:
        with pytest.raises(ValueError) as error:
            dataclasses.replace(config, **change)
        assert fragment in one_sentence(error.value)
    config.beta = -1.0  # changed after it was made: train_ppo_lm checks again
    with pytest.raises(ValueError, match="config.beta must be non-negative"):
        train_ppo_lm(**args)


def test_reward_model_scorer_scores_texts_and_names_a_wrong_tokenizer(tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    def reward_model(vocab: int):
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=16, n_layer=1, n_head=2, num_labels=1, pad_token_id=0)
        return GPT2ForSequenceClassification(config).eval()

    scores = reward_model_scorer(reward_model(len(tokenizer)), tokenizer)(["a fine film", "the"])
    assert scores.shape == (2,) and scores.dtype == torch.float32 and not scores.requires_grad
    for policy_tokenizer, fragment in ((tokenizer, "it is the policy's tokenizer"), (None, "pass the tokenizer the reward model")):
        with pytest.raises(ValueError) as error:
            reward_model_scorer(reward_model(40), tokenizer, policy_tokenizer)
        assert fragment in one_sentence(error.value) and "reward model embeds only 40" in str(error.value)


def test_pipeline_setting_is_a_short_ppo_config():
    assert isinstance(ppo_lm.PIPELINE_PPO, PPOLMConfig) and ppo_lm.PIPELINE_PPO.steps < PPOLMConfig().steps


def test_sentiment_lab_prints_its_json_line():
    out = run_script("code/labs/ppo_lm_sentiment.py", "--steps", "3", "--batch-size", "8", "--prompts", "40", "--eval-prompts", "8",
                     "--log-every", "1")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"reward_start", "reward_end", "kl_to_ref", "seconds", "steps", "seed"} <= set(result) and result["steps"] == 3
    assert 0 <= result["reward_start"] <= 1 and 0 <= result["reward_end"] <= 1
    assert result["kl_to_ref"] == pytest.approx(result["kl_to_ref"])  # a number (k1 on 8 samples may be negative)
    bad = run_script("code/labs/ppo_lm_sentiment.py", "--beta", "-1", check=False)
    assert bad.returncode != 0 and "beta must be non-negative" in bad.stderr and "Traceback" not in bad.stderr
