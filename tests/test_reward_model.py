"""The reward-model reference code agrees with TRL's RewardTrainer loss, has the Bradley-Terry / Plackett-Luce
properties (log 2 at a tie, finite at huge margins, k = 2 is Bradley-Terry), reads both profiles' preference schemas
and learns the tiny preference pairs."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

import rl4lm.profiles
from helpers import one_sentence
from rl4lm.rlhf import reward_model as rm


def trl_reward_loss(model, input_ids, attention_mask) -> torch.Tensor:
    """TRL 1.16's own RewardTrainer.compute_loss, called on a stand-in trainer (its collator puts chosen rows first)."""
    from trl.trainer.reward_trainer import RewardTrainer

    gather = lambda x: x  # noqa: E731 -- one process: gathering is the identity
    trainer = SimpleNamespace(model=model, args=SimpleNamespace(center_rewards_coefficient=None),
                              accelerator=SimpleNamespace(gather_for_metrics=gather, gather=gather),
                              _metrics={"train": {k: [] for k in ("num_tokens", "min_reward", "mean_reward", "max_reward",
                                                                  "accuracy", "margin")}},
                              _total_train_tokens=0, _tp_size=1)
    loss = RewardTrainer.compute_loss(trainer, model, {"input_ids": input_ids, "attention_mask": attention_mask})
    return loss, trainer._metrics["train"]


@pytest.fixture(scope="module")
def scorer():
    """A small random GPT-2 with a scalar head (pad token 0), in train mode as TRL computes its loss, without dropout."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=64, n_embd=32, n_layer=2, n_head=2, num_labels=1, pad_token_id=0,
                        bos_token_id=None, eos_token_id=None, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2ForSequenceClassification(config).train()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bradley_terry_matches_trl_reward_trainer(scorer, seed):
    g = torch.Generator().manual_seed(seed)
    batch = 4
    lengths = torch.randint(2, 12, (2 * batch,), generator=g)
    input_ids = torch.zeros(2 * batch, 12, dtype=torch.long)  # right padding with the pad token 0, as TRL's collator
    for row, n in enumerate(lengths):
        input_ids[row, :n] = torch.randint(1, 40, (int(n),), generator=g)
    attention_mask = (input_ids != 0).long()
    trl_loss, trl_metrics = trl_reward_loss(scorer, input_ids, attention_mask)

    rewards = scorer(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]  # (2 batch,)
    loss, metrics = rm.bradley_terry_loss(rewards[:batch], rewards[batch:])
    torch.testing.assert_close(loss, trl_loss)
    assert metrics["accuracy"] == pytest.approx(trl_metrics["accuracy"][0])
    assert metrics["margin"] == pytest.approx(trl_metrics["margin"][0], abs=1e-6)


def test_reward_scores_read_the_last_real_token_like_trl(scorer):
    """rm.reward_scores tokenises, right-pads and reads the head exactly where TRL's model call does."""
    class Tok:  # a whitespace tokenizer over the numbers 1..39, with TRL's right padding
        truncation_side = "right"

        def __call__(self, texts, return_tensors, padding, padding_side, truncation, max_length):
            rows = [[int(w) for w in t.split()][-max_length:] if self.truncation_side == "left" else
                    [int(w) for w in t.split()][:max_length] for t in texts]
            width = max(map(len, rows))
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
            return _Enc(input_ids=ids, attention_mask=(ids != 0).long())

    texts = ["5 6 7", "1 2 3 4 5 6", "9"]
    ids = torch.tensor([[5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6], [9, 0, 0, 0, 0, 0]])
    expected = scorer(input_ids=ids, attention_mask=(ids != 0).long()).logits[:, 0]
    torch.testing.assert_close(rm.reward_scores(scorer, Tok(), texts), expected)
    alone = torch.stack([scorer(input_ids=torch.tensor([[int(w) for w in t.split()]])).logits[0, 0] for t in texts])
    torch.testing.assert_close(expected, alone, rtol=1e-4, atol=1e-5)  # padding does not change a reward
    # left truncation keeps the end of the text, where the reward is read
    torch.testing.assert_close(rm.reward_scores(scorer, Tok(), ["1 2 3 4 5 6"], max_length=3),
                               scorer(input_ids=torch.tensor([[4, 5, 6]])).logits[:, 0])


class _Enc(dict):
    """A BatchEncoding stand-in: attribute access and .to(device)."""

    __getattr__ = dict.__getitem__

    def to(self, device):
        return self


def test_bradley_terry_edge_cases():
    loss, metrics = rm.bradley_terry_loss(torch.zeros(5), torch.zeros(5))
    assert loss.item() == pytest.approx(math.log(2))
    assert metrics == {"accuracy": 0.0, "margin": 0.0}  # ties count as errors, as in TRL
    huge = torch.tensor([1e4, -1e4, 0.0], requires_grad=True)
    loss, metrics = rm.bradley_terry_loss(huge, torch.zeros(3))
    assert torch.isfinite(loss) and loss.item() == pytest.approx((1e4 + math.log(2)) / 3, rel=1e-6)
    loss.backward()
    assert torch.isfinite(huge.grad).all()
    torch.testing.assert_close(huge.grad, torch.tensor([-0.0, -1.0, -0.5]) / 3)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    for dtype in (torch.float16, torch.bfloat16):
        loss, _ = rm.bradley_terry_loss(torch.tensor([300.0, -300.0], dtype=dtype), torch.zeros(2, dtype=dtype))
        assert torch.isfinite(loss)


def test_bradley_terry_is_the_negative_log_likelihood():
    g = torch.Generator().manual_seed(3)
    r_w, r_l = torch.randn(7, generator=g), torch.randn(7, generator=g)
    loss, metrics = rm.bradley_terry_loss(r_w, r_l)
    torch.testing.assert_close(loss, -torch.log(torch.sigmoid(r_w - r_l)).mean())
    assert metrics["accuracy"] == pytest.approx((r_w > r_l).float().mean().item())
    shifted, _ = rm.bradley_terry_loss(r_w + 5.0, r_l + 5.0)  # only differences count
    torch.testing.assert_close(shifted, loss)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_plackett_luce_is_the_ranking_likelihood(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randn(5, k, generator=g)
    # brute force: P(ranking) = prod_j exp(s_j) / sum_{m >= j} exp(s_m); the probabilities of all k! rankings sum to 1
    def log_prob(row, order):
        s = row[list(order)]
        return sum(s[j] - torch.logsumexp(s[j:], 0) for j in range(k))

    expected = -torch.stack([log_prob(row, range(k)) for row in scores]).mean()
    torch.testing.assert_close(rm.plackett_luce_loss(scores), expected)
    total = sum(log_prob(scores[0], order).exp() for order in itertools.permutations(range(k)))
    assert total.item() == pytest.approx(1.0, rel=1e-5)


def test_plackett_luce_with_two_responses_is_bradley_terry():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(16, 2, generator=g) * 5
    bt, _ = rm.bradley_terry_loss(scores[:, 0], scores[:, 1])
    torch.testing.assert_close(rm.plackett_luce_loss(scores), bt)
    assert torch.isfinite(rm.plackett_luce_loss(torch.tensor([[1e4, -1e4, 0.0]])))


def test_bad_input_gets_one_sentence():
    with pytest.raises(ValueError) as error:
        rm.bradley_terry_loss(torch.zeros(3), torch.zeros(4))
    assert "r_rejected" in one_sentence(error.value)
    with pytest.raises(ValueError) as error:
        rm.bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    assert "empty" in one_sentence(error.value)
    with pytest.raises(ValueError) as error:
        rm.bradley_terry_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3))
    assert "r_chosen" in one_sentence(error.value)
    with pytest.raises(ValueError) as error:
        rm.plackett_luce_loss(torch.zeros(4, 1))
    assert "k >= 2" in one_sentence(error.value)
    with pytest.raises(ValueError) as error:
        rm.preference_pairs([{"prompt": "a", "chosen": "b"}])
    assert "rejected" in one_sentence(error.value)
    with pytest.raises(ValueError) as error:
        rm.train_reward_model(None, None, [])
    assert "pairs" in one_sentence(error.value)


def test_preference_pairs_read_both_schemas():
    tiny = {"prompt": "this drama was", "chosen": " moving .", "rejected": " dull .", "score_chosen": 8, "score_rejected": 2}
    assert rm.preference_pairs([tiny]) == [("this drama was moving .", "this drama was dull .")]
    # the full profile's trl-lib/ultrafeedback_binarized rows: whole conversations, the user's turn included
    user = {"role": "user", "content": "Name a colour."}
    full = {"chosen": [user, {"role": "assistant", "content": "Blue."}],
            "rejected": [user, {"role": "assistant", "content": "No."}], "score_chosen": 8.0, "score_rejected": 3.0}
    assert rm.preference_pairs([full]) == [("User: Name a colour.\n\nAssistant: Blue.", "User: Name a colour.\n\nAssistant: No.")]
    # an explicit prompt of messages with the responses as assistant turns gives the same texts
    explicit = {"prompt": [user], "chosen": [full["chosen"][1]], "rejected": [full["rejected"][1]]}
    assert rm.preference_pairs([explicit]) == rm.preference_pairs([full])


def test_reward_model_learns_the_tiny_preferences():
    """The profile's LM with a scalar head goes from chance to (nearly) all held-out pairs right in a few steps."""
    tokenizer = rl4lm.profiles.load_tokenizer("lm")
    data = rl4lm.profiles.load_dataset("preferences")
    train, test = rm.preference_pairs(data["train"].select(range(320))), rm.preference_pairs(data["test"].select(range(100)))
    model = rm.load_reward_model("lm", seed=0)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    history = rm.train_reward_model(model, tokenizer, train, batch_size=32, lr=1e-3, seed=0, eval_pairs=test, eval_every=5)
    assert len(history["loss"]) == 10 and history["eval_step"] == [5, 10]
    assert history["loss"][-1] < history["loss"][0] < 1.0
    assert history["eval_accuracy"][-1] >= 0.95
    assert rm.preference_accuracy(model, tokenizer, test) == history["eval_accuracy"][-1]
    again = rm.train_reward_model(rm.load_reward_model("lm", seed=0), tokenizer, train, batch_size=32, lr=1e-3, seed=0)
    assert again["loss"] == history["loss"]  # same seed, same numbers


def test_reward_scores_of_a_text_longer_than_the_model_reads_are_finite():
    """A text longer than the model's positions (256 in tiny) is cut from the left, not an IndexError."""
    tokenizer = rl4lm.profiles.load_tokenizer("lm")
    model = rm.load_reward_model("lm", seed=0).eval()
    text = " ".join(["the acting was wonderful ."] * 80)  # several hundred tokens, more than the tiny LM's positions
    assert len(tokenizer(text)["input_ids"]) > model.config.n_positions
    scores = rm.reward_scores(model, tokenizer, [text, "a short review ."])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
