"""DPO on the course's preference pairs with TRL's DPOTrainer: one CPU, one GPU or many GPUs through accelerate.

The experiment of Session 8 and Homework 3 (Rafailov et al., 2023): the policy starts as the profile's language model,
the reference is a frozen copy of it (or, with ``--lora-r``, the same model with its LoRA adapter switched off), and the
loss is the course's rl4lm.rlhf.dpo.dpo_loss, which TRL computes as its ``sigmoid`` loss. Tiny profile: the 0.3M-parameter
GPT-2 on the synthetic pairs (seconds on a CPU). Full profile: GPT-2 small, or the model named by ``--model``, on
UltraFeedback pairs (a GPU).

    python code/scale/dpo_trl.py --max-steps 3
    RL4LM_PROFILE=full python code/scale/dpo_trl.py --max-steps 500 --model instruct_lm
    accelerate launch --config_file code/scale/configs/zero2.yaml code/scale/dpo_trl.py --max-steps 500

Ends with one JSON line: steps, seconds (of trainer.train()), loss_first, loss_last (mean of the last 5 logged steps),
reward_margin_last, reward_accuracy_last (training batches), eval_loss, eval_reward_accuracy and eval_reward_margin
(held-out pairs; accuracy: the share whose implicit reward beta log pi/pi_ref ranks chosen above rejected), profile,
model, processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import scale_common as common

from rl4lm import labs, profiles
from rl4lm.rlhf.dpo import PIPELINE_DPO

COURSE = PIPELINE_DPO  # the settings of the course's tiny "after DPO" model (rl4lm.rlhf.dpo), so that both runs are one experiment
DEFAULTS = {  # per profile; full: fits GPT-2 small on one 16 GB GPU
    "tiny": dict(max_steps=COURSE.steps, batch_size=COURSE.batch_size, learning_rate=COURSE.learning_rate, beta=COURSE.beta,
                 max_length=COURSE.max_length, eval_rows=128, activation_checkpointing=False),
    "full": dict(max_steps=500, batch_size=8, learning_rate=5e-6, beta=0.1, max_length=512, eval_rows=500, activation_checkpointing=True),
}


@dataclass
class Args:
    """DPO with TRL; unset options take the active profile's defaults."""

    seed: int = labs.arg(0, "seed of torch, the data order and dropout")
    max_steps: int | None = labs.arg(None, "optimizer steps")
    output_dir: str = labs.arg(common.default_output_dir("dpo"), "where TRL writes; the model is saved there only with --save")
    model: str = labs.arg("lm", "a model role of the profile (lm, instruct_lm) or a hub model / folder with safetensors")
    batch_size: int | None = labs.arg(None, "preference pairs per device per step")
    gradient_accumulation_steps: int = labs.arg(1, "micro-batches summed before each optimizer step")
    learning_rate: float | None = labs.arg(None, "AdamW learning rate (constant)")
    beta: float | None = labs.arg(None, "DPO's beta: strength of the KL regularisation towards the reference")
    max_length: int | None = labs.arg(None, "tokens of prompt + response; longer pairs are cut")
    train_rows: int = labs.arg(0, "use only this many training pairs (0: all)")
    eval_rows: int | None = labs.arg(None, "held-out pairs scored at the end (0: none)")
    lora_r: int = labs.arg(0, "LoRA rank (0: full fine-tuning); needs peft")
    precompute_ref_log_probs: bool = labs.arg(False, "score the training pairs under the reference once, before training, "
                                                     "and keep no reference model in memory (as the course's train_dpo)")
    precision: str = labs.arg("auto", "auto (GPU: bf16, else fp16; CPU: none), no, bf16 or fp16")
    dtype: str = labs.arg("float32", "dtype of the loaded weights: float32 (master weights for mixed precision), bfloat16, auto")
    activation_checkpointing: bool | None = labs.arg(None, "recompute activations in the backward pass to save memory")
    save: bool = labs.arg(False, "save the trained model to --output-dir")
    log_every: int = labs.arg(10, "print the step's loss and reward margin every this many steps")


def preference_rows(split: str, rows: int, tokenizer, seed: int):
    """The ``preferences`` role as TRL's standard columns prompt/chosen/rejected (texts), via the course's own rendering.

    rl4lm.rlhf.dpo.preference_triples writes both profiles' rows as (prompt, chosen, rejected) texts (the full profile's
    conversations with the tokenizer's chat template, or 'User:'/'Assistant:' blocks for GPT-2), so that TRL and the
    course's train_dpo see the same texts.
    """
    import datasets

    from rl4lm.rlhf.dpo import preference_triples

    data = profiles.load_dataset("preferences", split=split)
    if rows:
        data = data.shuffle(seed=seed).select(range(min(rows, data.num_rows)))
    prompt, chosen, rejected = zip(*preference_triples(data, tokenizer))
    return datasets.Dataset.from_dict({"prompt": list(prompt), "chosen": list(chosen), "rejected": list(rejected)})


def main(argv: list[str] | None = None) -> dict:
    """Train with DPOTrainer and print the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    settings = common.settings_for_profile(args, DEFAULTS)
    common.check_shared_options(args)
    common.require_at_least(1, max_steps=settings["max_steps"], batch_size=settings["batch_size"],
                            gradient_accumulation_steps=args.gradient_accumulation_steps, max_length=settings["max_length"],
                            log_every=args.log_every)
    common.require_at_least(0, train_rows=args.train_rows, eval_rows=settings["eval_rows"], lora_r=args.lora_r, seed=args.seed)
    if not settings["beta"] > 0:
        raise SystemExit(f"--beta must be positive (it scales the implicit reward beta log pi/pi_ref), not {settings['beta']}")
    if not settings["learning_rate"] > 0:
        raise SystemExit(f"--learning-rate must be positive, not {settings['learning_rate']}")
    peft_config = common.lora_settings(args.lora_r)

    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(**common.trainer_arguments(args, settings), beta=settings["beta"], loss_type="sigmoid",
                       max_length=settings["max_length"], per_device_eval_batch_size=settings["batch_size"],
                       precompute_ref_log_probs=args.precompute_ref_log_probs)
    model, tokenizer, _ = common.load_policy(args.model, args.dtype)  # after the config: ZeRO-3 partitions at load time
    # the reference: a second copy, unless the adapter switched off (LoRA) or log-probs computed once are the reference
    reference = None if peft_config or args.precompute_ref_log_probs else common.load_policy(args.model, args.dtype)[0]
    train = preference_rows("train", args.train_rows, tokenizer, args.seed)
    held_out = preference_rows("test", settings["eval_rows"], tokenizer, args.seed) if settings["eval_rows"] else None
    trainer = DPOTrainer(model=model, ref_model=reference, args=config, train_dataset=train, eval_dataset=held_out,
                         processing_class=tokenizer, peft_config=peft_config)
    common.use_step_logger(trainer, {"loss": "loss", "margin": "rewards/margins", "accuracy": "rewards/accuracies"}, args.log_every)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    losses = common.logged_values(history, "loss")
    scores = trainer.evaluate() if held_out is not None else {}
    if args.save:
        trainer.save_model(args.output_dir)
    return common.print_results(
        trainer, model=args.model, steps=trainer.state.global_step, seconds=round(seconds, 2),
        loss_first=losses[0], loss_last=common.mean_of_last(losses),
        reward_margin_last=common.mean_of_last(common.logged_values(history, "rewards/margins")),
        reward_accuracy_last=common.mean_of_last(common.logged_values(history, "rewards/accuracies")),
        eval_loss=scores.get("eval_loss"), eval_reward_accuracy=scores.get("eval_rewards/accuracies"),
        eval_reward_margin=scores.get("eval_rewards/margins"))


if __name__ == "__main__":
    labs.run_main(main)
