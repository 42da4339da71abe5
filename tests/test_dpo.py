"""The course's DPO agrees with TRL 1.16's DPOTrainer loss (on given log-probabilities and end to end on a model),
its implicit rewards are beta log pi / pi_ref and detached, its batching scores each response as
``sequence_logprob`` does alone, bad preference data is one sentence naming the row, and a short run learns the
tiny preferences."""
from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

import rl4lm.profiles
from helpers import one_sentence, run_script
from rl4lm.lm.logprobs import sequence_logprob
from rl4lm.rlhf import dpo
from rl4lm.rlhf.reward_model import preference_pairs

TRL_LOSS_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


def trl_trainer(model, beta: float, ref_model=None):
    """A stand-in DPOTrainer with TRL 1.16's defaults for the standard loss: sigmoid, reverse KL, one process."""
    gather = lambda x: x  # noqa: E731 -- one process: gathering is the identity
    return SimpleNamespace(model=model, ref_model=ref_model, beta=beta, loss_types=["sigmoid"], loss_weights=[1.0],
                           f_divergence_type="reverse_kl", ld_alpha=None, use_weighting=False, aux_loss_enabled=False,
                           precompute_ref_logps=ref_model is None, label_smoothing=0.0,
                           args=SimpleNamespace(gradient_checkpointing_kwargs=None),
                           accelerator=SimpleNamespace(gather_for_metrics=gather, gather=gather, device=torch.device("cpu")),
                           _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)


def trl_dpo_loss_on_logps(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """TRL 1.16's own ``DPOTrainer._compute_loss`` on given sequence log-probabilities (precomputed reference ones).

    The model is a stand-in whose fused LM head returns each sequence's log-probability as its only response token,
    so TRL's sum over tokens gives back exactly the numbers passed in; its batch holds the chosen rows first.
    """
    from trl.trainer.dpo_trainer import DPOTrainer

    logps = torch.cat([policy_chosen, policy_rejected])  # (2 batch,)
    zeros = torch.zeros(len(logps), 1)

    def model(**kwargs):
        return SimpleNamespace(log_probs=logps[:, None], entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    trainer = trl_trainer(SimpleNamespace(training=True), beta)
    inputs = {"input_ids": torch.ones(len(logps), 2, dtype=torch.long), "attention_mask": torch.ones(len(logps), 2, dtype=torch.long),
              "completion_mask": torch.tensor([[0, 1]] * len(logps)), "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, {key: trainer._metrics["train"][key][0] for key in TRL_LOSS_KEYS}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_equals_trl_dpo_trainer_on_the_same_logps(seed, beta):
    """Loss, its gradient and the logged rewards agree with TRL's within torch.testing's float32 defaults (rtol 1.3e-6,
    atol 1e-5; measured: bit-identical losses)."""
    g = torch.Generator().manual_seed(seed)
    batch = 6
    policy = (-30 * torch.rand(2, batch, generator=g)).requires_grad_()  # (2, batch): chosen, rejected sequence log-probs
    ref = -30 * torch.rand(2, batch, generator=g)
    ref[:, 0] = policy.detach()[:, 0]  # one pair at the reference: margin 0
    trl_policy = policy.detach().clone().requires_grad_()
    trl_loss, trl_metrics = trl_dpo_loss_on_logps(trl_policy[0], trl_policy[1], ref[0], ref[1], beta)
    loss, chosen_rewards, rejected_rewards = dpo.dpo_loss(policy[0], policy[1], ref[0], ref[1], beta)
    torch.testing.assert_close(loss, trl_loss)
    loss.backward()
    trl_loss.backward()
    torch.testing.assert_close(policy.grad, trl_policy.grad)
    ours = {"rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            "logps/chosen": policy[0].mean().item(), "logps/rejected": policy[1].mean().item()}
    assert ours == pytest.approx(trl_metrics, rel=1e-6, abs=1e-6)


@pytest.fixture(scope="module")
def tiny():
    """The tiny profile's tokenizer, LM (eval mode: no dropout, as TRL's disable_dropout) and preference triples."""
    tokenizer = rl4lm.profiles.load_tokenizer("lm")
    data = rl4lm.profiles.load_dataset("preferences")
    return SimpleNamespace(tokenizer=tokenizer, model=rl4lm.profiles.load_model("lm").eval(),
                           train=dpo.preference_triples(data["train"].select(range(400))),
                           test=dpo.preference_triples(data["test"].select(range(100))))


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # TRL 1.16 reads the old name
def test_dpo_on_a_model_equals_trl_dpo_trainer_end_to_end(tiny):
    """Our batch, one forward pass and dpo_loss against TRL's fused-head forward and loss on the same batch, with a
    separate reference model: the loss to 1e-6, every parameter's gradient to rtol 1e-5, atol 1e-7 (measured: the loss
    bit-identical, gradients within 1.5e-8; TRL sums log-probs from its chunked fused LM head, we from full logits)."""
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    policy = copy.deepcopy(tiny.model)
    reference = copy.deepcopy(tiny.model)
    with torch.no_grad():  # a policy that differs from its reference
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    batch = dpo.preference_batch(tiny.tokenizer, tiny.train[:8])
    with torch.no_grad():
        ref_chosen, ref_rejected = dpo.preference_logps(reference, batch)
    chosen, rejected = dpo.preference_logps(policy, batch)
    loss, chosen_rewards, rejected_rewards = dpo.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    loss.backward()

    trl_policy, trl_reference = copy.deepcopy(policy), copy.deepcopy(reference)
    trl_policy.zero_grad()
    add_fused_lm_head(trl_policy, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    add_fused_lm_head(trl_reference)
    trainer = trl_trainer(trl_policy, beta=0.1, ref_model=trl_reference)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "completion_mask": batch["response_mask"]}
    trl_loss = DPOTrainer._compute_loss(trainer, trl_policy, inputs, return_outputs=False)
    trl_loss.backward()
    metrics = trainer._metrics["eval"]  # the policy is in eval mode (no dropout), so TRL logs under "eval"
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"][0], abs=1e-6)
    assert rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"][0], abs=1e-6)
    assert chosen.mean().item() == pytest.approx(metrics["logps/chosen"][0], abs=1e-5)
    for (name, p), q in zip(policy.named_parameters(), trl_policy.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")


def test_implicit_rewards_are_detached_and_the_reference_gets_no_gradient():
    beta = 0.3
    policy = torch.tensor([[-5.0, -7.0, -2.0], [-6.0, -3.0, -2.0]], requires_grad=True)  # (2, batch): chosen, rejected
    ref = torch.tensor([[-6.0, -6.0, -2.0], [-6.0, -4.0, -2.0]], requires_grad=True)
    loss, chosen_rewards, rejected_rewards = dpo.dpo_loss(policy[0], policy[1], ref[0], ref[1], beta)
    torch.testing.assert_close(chosen_rewards, beta * (policy[0] - ref[0]).detach())
    torch.testing.assert_close(rejected_rewards, beta * (policy[1] - ref[1]).detach())
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad
    margins = (chosen_rewards - rejected_rewards)  # (batch,)
    torch.testing.assert_close(loss, -torch.nn.functional.logsigmoid(margins).mean())
    loss.backward()
    assert ref.grad is None or not ref.grad.any()
    weight = beta * torch.sigmoid(-margins) / 3  # d loss / d log pi(y_w) = -beta sigma(-margin) / batch
    torch.testing.assert_close(policy.grad, torch.stack([-weight, weight]))
    same = torch.tensor([-4.0, -9.0])
    assert dpo.dpo_loss(same, same, same, same, 0.1)[0].item() == pytest.approx(math.log(2))  # at the reference: log 2
    huge = dpo.dpo_loss(torch.tensor([0.0]), torch.tensor([-1e4]), torch.tensor([-1e4]), torch.tensor([0.0]), 1.0)[0]
    assert torch.isfinite(huge)


def test_bad_beta_and_bad_preference_data_are_one_sentence(tiny):
    x = torch.zeros(3)
    for beta in (0.0, -0.1):
        with pytest.raises(ValueError) as error:
            dpo.dpo_loss(x, x, x, x, beta)
        assert "beta" in one_sentence(error.value)
        with pytest.raises(ValueError) as error:
            dpo.train_dpo(tiny.model, tiny.tokenizer, tiny.train[:4], dpo.DPOConfig(steps=1, beta=beta))
        assert "config.beta" in one_sentence(error.value)
    rows = [{"prompt": "this drama was", "chosen": " moving .", "rejected": " dull ."},
            {"prompt": "this drama was", "chosen": " moving .", "rejected": " moving ."}]
    with pytest.raises(ValueError) as error:
        dpo.preference_triples(rows)
    assert "rows[1]" in one_sentence(error.value) and "identical" in str(error.value)
    user = {"role": "user", "content": "Name a colour."}
    same = [user, {"role": "assistant", "content": "Blue."}]
    with pytest.raises(ValueError) as error:
        dpo.preference_triples([{"chosen": same, "rejected": list(same)}])
    assert "rows[0]" in one_sentence(error.value) and "identical" in str(error.value)
    for row, part in (({"prompt": "this drama was", "chosen": "", "rejected": " dull ."}, "chosen"),
                      ({"chosen": same, "rejected": [user, {"role": "assistant", "content": " "}]}, "rejected")):
        with pytest.raises(ValueError) as error:
            dpo.preference_triples([rows[0], row])
        assert "rows[1]" in one_sentence(error.value) and f"empty {part} response" in str(error.value)
    with pytest.raises(ValueError) as error:
        dpo.tokenize_triples(tiny.tokenizer, [("this drama was", " fun .", " fun .")])
    assert "triples[0]" in one_sentence(error.value)
    with pytest.raises(ValueError) as error:
        dpo.train_dpo(tiny.model, tiny.tokenizer, tiny.train[:4], dpo.DPOConfig(steps=0))
    assert "config.steps" in one_sentence(error.value)


class CaseFoldingTokenizer:
    """A lossy stand-in tokenizer: one id per character, upper case folded to lower case; id 0 is the end-of-text token."""

    eos_token_id = 0

    def __call__(self, texts: list[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [[ord(c.lower()) for c in text] for text in texts]}


@pytest.mark.parametrize("add_eos", [True, False])
def test_tokenize_triples_refuses_empty_and_token_identical_responses(tiny, add_eos):
    """Regression: with add_eos (the default, and train_dpo's) an empty response passed as a lone end-of-text token;
    a pair that differs as text but not as tokens was a silent zero-gradient pair."""
    good = ("this drama was", " fun .", " dull .")
    for triple, fragment in ((("this drama was", "", " dull ."), "empty chosen response"),
                             (("this drama was", " fine .", " "), "empty rejected response")):
        with pytest.raises(ValueError) as error:
            dpo.tokenize_triples(tiny.tokenizer, [good, triple], add_eos=add_eos)
        assert "triples[1]" in one_sentence(error.value) and fragment in str(error.value)
    with pytest.raises(ValueError) as error:
        dpo.tokenize_triples(CaseFoldingTokenizer(), [("Hi", " Fine.", " fine.")], add_eos=add_eos)
    assert "triples[0]" in one_sentence(error.value) and "tokenise identically" in str(error.value)
    eos = [0] if add_eos else []
    assert dpo.tokenize_triples(CaseFoldingTokenizer(), [("Hi", " ok", " no")], add_eos=add_eos) == [
        {"prompt_ids": [104, 105], "chosen_ids": [32, 111, 107] + eos, "rejected_ids": [32, 110, 111] + eos}]
    with pytest.raises(ValueError) as error:
        dpo.train_dpo(copy.deepcopy(tiny.model), tiny.tokenizer, [good, ("this drama was", "", " dull .")], dpo.DPOConfig(steps=1))
    assert "triples[1]" in one_sentence(error.value) and "empty chosen response" in str(error.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_dpo_on_a_gpu_with_the_reference_on_the_cpu():
    """Regression: the reference's log-probabilities stayed on its device, and indexing them with the policy's failed."""
    tokenizer = rl4lm.profiles.load_tokenizer("lm")
    reference = rl4lm.profiles.load_model("lm").eval()
    policy = copy.deepcopy(reference).cuda()
    triples = [("this drama was", " moving and fun .", " dull ."), ("i saw this", " a great film .", " a mess ."),
               ("what a", " delight .", " bore .")]
    config = dpo.DPOConfig(steps=2, batch_size=2, learning_rate=1e-3, seed=0)
    result = dpo.train_dpo(policy, tokenizer, triples, config, reference=reference, eval_triples=triples[:2])
    assert result["history"]["loss"][0] == pytest.approx(math.log(2), abs=1e-4) and len(result["eval"]["eval_step"]) == 2


def test_preference_triples_read_both_schemas_like_the_reward_model():
    tiny_row = {"prompt": "this drama was", "chosen": " moving .", "rejected": " dull .", "score_chosen": 8, "score_rejected": 2}
    user = {"role": "user", "content": "Name a colour."}
    full_row = {"chosen": [user, {"role": "assistant", "content": "Blue."}],
                "rejected": [user, {"role": "assistant", "content": "No."}], "score_chosen": 8.0, "score_rejected": 3.0}
    triples = dpo.preference_triples([tiny_row, full_row])
    assert triples == [("this drama was", " moving .", " dull ."), ("User: Name a colour.\n\nAssistant: ", "Blue.", "No.")]
    assert [(x + yw, x + yl) for x, yw, yl in triples] == preference_pairs([tiny_row, full_row])  # the same texts


def test_batched_logps_equal_sequence_logprob_of_each_example_alone(tiny):
    """One right-padded forward pass over chosen and rejected rows gives each response's log-probability alone, to 1e-4 (float32 rounding)."""
    triples = tiny.train[:5] + [("this film was", " great .", " a long , long , long and very dull waste of time .")]
    examples = dpo.tokenize_triples(tiny.tokenizer, triples)
    batch = dpo.collate_preferences(examples, tiny.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2 * len(triples)
    with torch.no_grad():
        chosen, rejected = dpo.preference_logps(tiny.model, batch)
        for i, example in enumerate(examples):
            for part, batched in (("chosen_ids", chosen), ("rejected_ids", rejected)):
                ids = torch.tensor([example["prompt_ids"] + example[part]])  # (1, seq), no padding
                mask = torch.ones_like(ids)
                response = torch.zeros_like(ids)
                response[0, len(example["prompt_ids"]):] = 1
                alone = sequence_logprob(tiny.model, ids, mask, response)
                assert batched[i].item() == pytest.approx(alone.item(), abs=1e-4), (i, part)
    row = batch["response_mask"][0].bool()  # the response tokens are exactly the chosen text and the end-of-text token
    assert tiny.tokenizer.decode(batch["input_ids"][0][row]) == tiny.tokenizer.decode(
        tiny.tokenizer(triples[0][1])["input_ids"] + [tiny.tokenizer.eos_token_id])
    assert not (batch["response_mask"].bool() & ~batch["attention_mask"].bool()).any()


def test_train_dpo_raises_held_out_accuracy(tiny):
    calls = []

    def counted_loss(*args):
        calls.append(1)
        return dpo.dpo_loss(*args)

    config = dpo.DPOConfig(steps=8, batch_size=16, learning_rate=1e-3, beta=0.1, max_length=128, eval_every=4, seed=0)
    result = dpo.train_dpo(copy.deepcopy(tiny.model), tiny.tokenizer, tiny.train, config, eval_triples=tiny.test, loss_fn=counted_loss)
    history, evals = result["history"], result["eval"]
    assert len(calls) == 8 and history["step"] == list(range(1, 9)) and evals["eval_step"] == [0, 4, 8]
    assert set(history) == set(dpo.HISTORY_KEYS) and all(len(v) == 8 for v in history.values())
    assert history["loss"][0] == pytest.approx(math.log(2), abs=1e-4)  # the policy starts as its own reference
    assert evals["eval_accuracy"][0] == 0.0 and evals["eval_margin"][0] == 0.0  # every implicit reward is 0: ties
    assert evals["eval_accuracy"][-1] >= 0.9 and evals["eval_margin"][-1] > 0
    assert evals["eval_logp_accuracy"][-1] > evals["eval_logp_accuracy"][0]
    assert history["loss"][-1] < history["loss"][0]
    again = dpo.train_dpo(copy.deepcopy(tiny.model), tiny.tokenizer, tiny.train, config)  # held-out evaluation changes nothing
    assert again["history"]["loss"] == history["loss"] and again["eval"]["eval_step"] == []  # same seed, same numbers


def test_dpo_lab_ends_with_one_json_line_and_refuses_bad_arguments_in_one_line():
    out = run_script("code/labs/dpo.py", "--steps", "4", "--train-rows", "64", "--eval-rows", "32", "--eval-every", "2",
                     "--log-every", "2").stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert {"accuracy_start", "accuracy_end", "margin_end", "chosen_logp_change", "seconds", "steps", "seed"} <= set(result)
    assert result["steps"] == 4 and result["accuracy_start"] == 0.0 and result["accuracy_end"] > 0.5
    assert "held-out after    2 steps" in out
    bad = run_script("code/labs/dpo.py", "--beta", "0", check=False)
    assert bad.returncode != 0 and "beta" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
