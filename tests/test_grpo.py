"""GRPO (rl4lm.rlhf.grpo) against TRL 1.16's GRPOTrainer on identical tensors, its edge cases, the verifiable task and a short run.

TRL is called, not copied: the advantages come out of ``GRPOTrainer._generate_and_score_completions`` with a reward
function that returns planted rewards, the loss out of ``GRPOTrainer._compute_loss`` with the trainer's log-probability
pass replaced by the test's tensor. TRL 1.16 multiplies the per-token KL by the importance ratio by default
(``use_bias_correction_kl=True``, after DeepSeek-V3.2), which changes the KL term's gradient even where the ratio is 1;
the course's loss is the original GRPO's (Shao et al., 2024, eq. 3), TRL's with ``use_bias_correction_kl=False``.
Tolerance: 1e-6 absolute and relative (float32); both sides do the same operations, and the values and gradients
came out bit-identical (difference 0) with torch 2.13 on the CPU.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

from helpers import one_sentence
from rl4lm import profiles
from rl4lm.rlhf.grpo import GRPOConfig, grpo_advantages, grpo_loss, k3_token_kl, train_grpo
from rl4lm.rlhf.verifiable import default_task, first_sentence, sentence_count_task, sentence_ends

TOLERANCE = dict(atol=1e-6, rtol=1e-6)
PROMPT = "this comedy was"


@pytest.fixture(scope="module")
def lm():
    """The profile's tokenizer and LM (tiny in tests)."""
    return profiles.load_tokenizer("lm"), profiles.load_model("lm")


def trl_trainer(lm, group_size: int, prompts: int, num_iterations: int = 1, beta: float = 0.04, reward_func=None, bias_correction: bool = False):
    """A TRL GRPOTrainer on the tiny LM (CPU, offline, no logging), loss_type 'grpo', completions of at most 4 tokens."""
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    tokenizer, model = lm
    args = TRLConfig(output_dir="_build/test-trl-grpo", report_to="none", use_cpu=True, per_device_train_batch_size=prompts * group_size,
                     num_generations=group_size, max_completion_length=4, beta=beta, epsilon=0.2, loss_type="grpo",
                     num_iterations=num_iterations, use_bias_correction_kl=bias_correction, save_strategy="no", logging_steps=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GRPOTrainer(model=copy.deepcopy(model), reward_funcs=reward_func or (lambda prompts, completions, **kw: [0.0] * len(prompts)),
                           args=args, train_dataset=Dataset.from_list([{"prompt": PROMPT}] * prompts), processing_class=tokenizer)


def test_advantages_equal_trls_grpo_trainer(lm):
    """Three groups of four: mixed, all equal (advantage 0), two values; rewards planted through TRL's reward function."""
    planted = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.3, -1.2, 0.7, 0.7])
    trainer = trl_trainer(lm, group_size=4, prompts=3, reward_func=lambda prompts, completions, **kw: planted.tolist())
    trainer.model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = trainer._generate_and_score_completions([{"prompt": PROMPT}] * 12)["advantages"]
    ours = grpo_advantages(planted, 4)
    torch.testing.assert_close(ours, theirs, **TOLERANCE)
    assert torch.equal(ours[4:8], torch.zeros(4)), "a group with equal rewards has advantage 0"


def loss_inputs(seed: int, rows: int = 6, width: int = 5, spread: float = 0.3) -> dict:
    """Random per-token log-probabilities (logp with gradient), old and reference ones, advantages and a right-padded mask."""
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(rows, width, generator=g) * 3).requires_grad_()
    old = logp.detach() + spread * torch.randn(rows, width, generator=g)  # ratios far enough from 1 that some are clipped
    ref = logp.detach() + 0.5 * torch.randn(rows, width, generator=g)
    lengths = torch.randint(1, width + 1, (rows,), generator=g)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()  # (rows, width)
    return dict(logp=logp, old=old, ref=ref, advantages=torch.randn(rows, generator=g), mask=mask)


def trl_loss(trainer, x: dict, with_old: bool) -> torch.Tensor:
    """TRL's _compute_loss on the tensors of ``x``: its log-probability pass returns x['logp'] (eval mode: no accumulation scaling)."""
    rows, width = x["mask"].shape
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (x["logp"], torch.zeros_like(x["logp"]), None)
    trainer.model.eval()
    inputs = {"prompt_ids": torch.ones(rows, 2, dtype=torch.long), "prompt_mask": torch.ones(rows, 2, dtype=torch.long),
              "completion_ids": torch.ones(rows, width, dtype=torch.long), "completion_mask": x["mask"],
              "advantages": x["advantages"], "ref_per_token_logps": x["ref"]}
    if with_old:
        inputs["old_per_token_logps"] = x["old"]
    return trainer._compute_loss(trainer.model, inputs)


@pytest.mark.parametrize("num_iterations", [1, 3])
def test_loss_and_its_gradient_equal_trls_grpo_loss(lm, num_iterations):
    """beta = 0.04; with one iteration the old log-probabilities are logp.detach() (TRL leaves them out), with more they differ."""
    trainer = trl_trainer(lm, group_size=2, prompts=3, num_iterations=num_iterations)
    for seed in range(3):
        x = loss_inputs(seed)
        theirs = trl_loss(trainer, x, with_old=num_iterations > 1)
        (grad_theirs,) = torch.autograd.grad(theirs, x["logp"])
        old = x["old"] if num_iterations > 1 else x["logp"].detach()
        ours = grpo_loss(x["logp"], old, x["ref"], x["advantages"], x["mask"], clip_eps=0.2, beta=0.04)
        (grad_ours,) = torch.autograd.grad(ours, x["logp"])
        torch.testing.assert_close(ours, theirs, **TOLERANCE)
        torch.testing.assert_close(grad_ours, grad_theirs, **TOLERANCE)


def test_trls_default_kl_correction_keeps_the_on_policy_loss_but_not_its_gradient(lm):
    """use_bias_correction_kl=True (TRL 1.16's default): the same value at ratio 1, another KL gradient (why the test above turns it off)."""
    x = loss_inputs(0)
    theirs = trl_loss(trl_trainer(lm, group_size=2, prompts=3, bias_correction=True), x, with_old=False)
    ours = grpo_loss(x["logp"], x["logp"].detach(), x["ref"], x["advantages"], x["mask"], clip_eps=0.2, beta=0.04)
    torch.testing.assert_close(ours, theirs, **TOLERANCE)
    assert not torch.allclose(torch.autograd.grad(ours, x["logp"])[0], torch.autograd.grad(theirs, x["logp"])[0], atol=1e-4)


def test_integer_and_boolean_rewards_give_the_float_rewards_advantages():
    """Regression: 0/1 rewards of a verifier as a long or bool tensor failed deep inside torch.mean."""
    floats = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    for rewards in (floats.long(), floats.bool()):
        torch.testing.assert_close(grpo_advantages(rewards, 3), grpo_advantages(floats, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loss_takes_advantages_from_the_cpu_for_logprobs_on_a_gpu():
    """Regression: advantages were cast to logp's dtype but not moved to its device."""
    x = loss_inputs(0)
    on_cpu = grpo_loss(x["logp"], x["old"], x["ref"], x["advantages"], x["mask"])
    on_gpu = grpo_loss(x["logp"].detach().cuda(), x["old"].cuda(), x["ref"].cuda(), x["advantages"], x["mask"].cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.item() == pytest.approx(on_cpu.item(), abs=1e-6)


def test_k3_is_zero_at_the_reference_and_positive_elsewhere():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(k3_token_kl(logp, logp), torch.zeros(3))
    assert bool((k3_token_kl(logp, logp + torch.tensor([0.3, -0.3, 1.0])) > 0).all())


@pytest.mark.parametrize("group_size, n, fragment", [(3, 8, "does not divide"), (1, 8, "at least 2"), (0, 8, "at least 2")])
def test_a_group_size_that_cannot_group_the_rewards_is_one_sentence(group_size, n, fragment):
    with pytest.raises(ValueError) as error:
        grpo_advantages(torch.zeros(n), group_size)
    assert fragment in one_sentence(error.value) and "group_size" in str(error.value)


@pytest.mark.parametrize("field, value", [("group_size", 1), ("steps", 0), ("num_iterations", 0), ("learning_rate", 0.0),
                                          ("beta", -0.1), ("temperature", 0.0)])
def test_the_trainer_names_the_config_field_it_cannot_use(lm, field, value):
    tokenizer, model = lm
    task = sentence_count_task(["a b . c ."], ["d e . f ."])
    with pytest.raises(ValueError) as error:
        train_grpo(model, tokenizer, task, GRPOConfig(**{field: value}))
    assert f"config.{field}" in one_sentence(error.value)


def test_sentence_rule_counts_sentence_ends():
    assert [sentence_ends(t) for t in ["", "a b", "a . b .", "wow ! really ? yes ...", "3.5 stars . ok"]] == [0, 0, 2, 3, 1]
    assert first_sentence("this drama was dull . it is a mess .", 16) == "this drama was dull ."
    task = sentence_count_task(["x y . z ."], ["x y . z ."], sentences=2)
    assert task.rewards(["p", "p", "p"], [" a . b .", " a .", " a . b . c ."]).tolist() == [1.0, 0.0, 0.0]


def test_tiny_task_has_spread_before_training(lm):
    """Tiny profile: about a third of sampled completions follow the rule, no greedy one does (TINY_BASE_RATES)."""
    from rl4lm.lm.rollout import sample_rollout

    tokenizer, model = lm
    task = default_task(eval_prompts=32)
    prompts = task.train_prompts[:128]
    rate = task.accuracy(prompts, sample_rollout(model, tokenizer, prompts, 48, generator=torch.Generator().manual_seed(0)).texts(tokenizer))
    assert 0.15 < rate < 0.5, rate


def test_a_short_run_raises_held_out_accuracy_and_repeats_with_its_seed(lm):
    tokenizer, model = lm
    task = default_task(eval_prompts=32)
    config = GRPOConfig(steps=8, prompts_per_step=6, group_size=6, learning_rate=5e-4, eval_every=4, seed=1)
    result = train_grpo(copy.deepcopy(model), tokenizer, task, config)
    history = result["history"]
    assert history["eval_step"] == [0, 4, 8] and len(history["kl"]) == 8
    assert result["accuracy_start"] <= 0.1 and result["accuracy_end"] >= 0.8, history["eval_accuracy"]
    assert history["kl"][0] == pytest.approx(0.0, abs=1e-6) and max(history["kl"]) > 0
    assert all(0 <= f <= 1 for f in history["frac_zero_std"])
    again = train_grpo(copy.deepcopy(model), tokenizer, task, GRPOConfig(**{**config.__dict__, "steps": 2, "eval_every": 2}))
    assert again["history"]["reward_mean"] == history["reward_mean"][:2] and again["history"]["loss"] == history["loss"][:2]


def test_more_iterations_and_a_temperature_run(lm):
    tokenizer, model = lm
    task = default_task(eval_prompts=8)
    result = train_grpo(copy.deepcopy(model), tokenizer, task, GRPOConfig(steps=2, prompts_per_step=2, group_size=3, num_iterations=2,
                                                                          temperature=0.7, eval_every=2))
    assert len(result["history"]["loss"]) == 2 and len(result["samples_after"]) == 8


def test_the_trainer_uses_the_advantage_and_loss_functions_it_is_given(lm):
    tokenizer, model = lm
    task = default_task(eval_prompts=8)
    calls = []

    def spy_advantages(rewards, group_size):
        calls.append(("advantages", tuple(rewards.shape), group_size))
        return grpo_advantages(rewards, group_size)

    def spy_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps, beta):
        calls.append(("loss", tuple(logp.shape) == tuple(mask.shape), clip_eps, beta))
        return grpo_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps, beta)

    train_grpo(copy.deepcopy(model), tokenizer, task, GRPOConfig(steps=1, prompts_per_step=2, group_size=4, clip_eps=0.1, beta=0.02),
               advantages_fn=spy_advantages, loss_fn=spy_loss)
    assert calls == [("advantages", (8,), 4), ("loss", True, 0.1, 0.02)]
    with pytest.raises(ValueError, match="advantages_fn returned"):
        train_grpo(copy.deepcopy(model), tokenizer, task, GRPOConfig(steps=1, prompts_per_step=2, group_size=4),
                   advantages_fn=lambda rewards, group_size: rewards[:2])


def load_lab():
    """code/labs/grpo.py as a module (run in this process: no second start of torch)."""
    import importlib.util
    import sys

    from helpers import ROOT

    spec = importlib.util.spec_from_file_location("grpo_lab", ROOT / "code" / "labs" / "grpo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_lab_ends_with_one_json_line_and_refuses_a_bad_group_size_in_one_line(capsys):
    import json

    lab = load_lab()
    lab.main(["--steps", "4", "--eval-every", "2", "--eval-prompts", "16", "--learning-rate", "5e-4", "--seed", "1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"accuracy_start", "accuracy_end", "kl", "seconds", "steps", "seed"} <= set(result) and result["steps"] == 4
    assert result["accuracy_end"] > result["accuracy_start"]
    with pytest.raises(SystemExit) as error:
        lab.main(["--group-size", "1", "--steps", "1", "--eval-prompts", "4"])
    assert "config.group_size" in one_sentence(error.value)
