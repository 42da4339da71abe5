"""GRPO on the course's verifiable task with TRL's GRPOTrainer: one CPU, one GPU or many GPUs through accelerate.

The experiment of Session 8 and Homework 3 (Shao et al., 2024): for each prompt the policy samples a group of
completions, a program scores each one 0 or 1 (rl4lm.rlhf.verifiable.default_task: continue a review's first sentence
in exactly k more sentences), and each reward minus its group's mean, over the group's standard deviation, is the
advantage of every token of that completion, as in rl4lm.rlhf.grpo.grpo_advantages. The loss is the course's
rl4lm.rlhf.grpo.grpo_loss, TRL's ``loss_type="grpo"`` (per-response token mean, k3 KL to the reference weighted by beta).
The tiny defaults are the course's rl4lm.rlhf.grpo.GRPOConfig (e.g. 8 prompts x 8 completions per step, 48 new tokens).
TRL scores left-padded prompts without position ids, which shifts GPT-2's learned positions; the script adds them
(scale_common.count_positions_over_real_tokens), as the course's own sampler does.

Generation dominates the time of online RL; on GPUs ``--use-vllm`` hands it to vLLM (Kwon et al., 2023): ``colocate``
runs vLLM inside each training process, ``server`` talks to a separate ``trl vllm-serve`` process on its own GPU(s).

    python code/scale/grpo_trl.py --max-steps 3
    RL4LM_PROFILE=full python code/scale/grpo_trl.py --max-steps 300 --use-vllm
    accelerate launch --config_file code/scale/configs/ddp.yaml code/scale/grpo_trl.py --use-vllm --vllm-mode colocate

Ends with one JSON line: steps, seconds (of trainer.train()), reward_first and reward_last (training batches' mean
reward, the share of completions that follow the rule; last: mean of the last 5 steps), kl_last, loss_last,
eval_reward_start and eval_reward_end (held-out prompts, sampled), completion_length_last, task, profile, model,
processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import scale_common as common

from rl4lm import labs
from rl4lm.rlhf.grpo import GRPOConfig as CourseGRPOConfig

COURSE = CourseGRPOConfig()  # the course's tiny-profile settings (rl4lm.rlhf.grpo), so that both runs are one experiment
DEFAULTS = {  # per profile; full: GPT-2 small on one 16 GB GPU
    "tiny": dict(max_steps=COURSE.steps, batch_size=COURSE.prompts_per_step * COURSE.group_size, num_generations=COURSE.group_size,
                 max_completion_length=COURSE.max_new_tokens, learning_rate=COURSE.learning_rate, beta=COURSE.beta,
                 epsilon=COURSE.clip_eps, temperature=COURSE.temperature, eval_prompts=128, activation_checkpointing=False),
    "full": dict(max_steps=300, batch_size=64, num_generations=8, max_completion_length=48, learning_rate=1e-6, beta=0.04,
                 epsilon=0.2, temperature=1.0, eval_prompts=128, activation_checkpointing=True),
}
VLLM_MODES = ("colocate", "server")


@dataclass
class Args:
    """GRPO with TRL; unset options take the active profile's defaults."""

    seed: int = labs.arg(0, "seed of torch, the prompt order and sampling")
    max_steps: int | None = labs.arg(None, "optimizer steps (one batch of groups each)")
    output_dir: str = labs.arg(common.default_output_dir("grpo"), "where TRL writes; the model is saved there only with --save")
    model: str = labs.arg("lm", "a model role of the profile (lm, instruct_lm) or a hub model / folder with safetensors")
    batch_size: int | None = labs.arg(None, "completions per device per step (prompts per step = processes x this / --num-generations)")
    num_generations: int | None = labs.arg(None, "completions per prompt, the group size G")
    gradient_accumulation_steps: int = labs.arg(1, "micro-batches summed before each optimizer step")
    max_completion_length: int | None = labs.arg(None, "new tokens per completion at most")
    learning_rate: float | None = labs.arg(None, "AdamW learning rate (constant, no weight decay: the course's Adam)")
    beta: float | None = labs.arg(None, "weight of the k3 KL to the reference in the loss (0: no reference model is loaded)")
    epsilon: float | None = labs.arg(None, "clipping range of the probability ratio")
    temperature: float | None = labs.arg(None, "sampling temperature")
    sentences: int | None = labs.arg(None, "the rule: continue the review in exactly this many more sentences")
    eval_prompts: int | None = labs.arg(None, "held-out prompts scored before and after training (0: none)")
    lora_r: int = labs.arg(0, "LoRA rank (0: full fine-tuning); needs peft")
    use_vllm: bool = labs.arg(False, "generate with vLLM instead of model.generate (GPU only; needs vllm)")
    vllm_mode: str = labs.arg("colocate", "colocate (vLLM in each training process) or server (a separate `trl vllm-serve`)")
    vllm_gpu_memory_utilization: float = labs.arg(0.3, "share of each GPU's memory that colocated vLLM may take")
    precision: str = labs.arg("auto", "auto (GPU: bf16, else fp16; CPU: none), no, bf16 or fp16")
    dtype: str = labs.arg("float32", "dtype of the loaded weights: float32 (master weights for mixed precision), bfloat16, auto")
    activation_checkpointing: bool | None = labs.arg(None, "recompute activations in the backward pass to save memory")
    save: bool = labs.arg(False, "save the trained model to --output-dir")
    log_every: int = labs.arg(10, "print the step's reward, KL and loss every this many steps")


def check_arguments(args, settings: dict) -> None:
    """One line naming the first option that GRPO cannot use."""
    common.require_at_least(1, max_steps=settings["max_steps"], batch_size=settings["batch_size"],
                            gradient_accumulation_steps=args.gradient_accumulation_steps,
                            max_completion_length=settings["max_completion_length"], sentences=args.sentences,
                            log_every=args.log_every)
    common.require_at_least(2, num_generations=settings["num_generations"])
    common.require_at_least(0, eval_prompts=settings["eval_prompts"], lora_r=args.lora_r, seed=args.seed, beta=settings["beta"],
                            epsilon=settings["epsilon"])
    if settings["batch_size"] % settings["num_generations"]:
        raise SystemExit(f"--num-generations {settings['num_generations']} does not divide --batch-size {settings['batch_size']}: "
                         "each prompt needs a whole group of completions on the device")
    for name in ("learning_rate", "temperature"):
        if not settings[name] > 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, not {settings[name]}")
    if not 0 < args.vllm_gpu_memory_utilization <= 1:
        raise SystemExit(f"--vllm-gpu-memory-utilization must be in (0, 1], not {args.vllm_gpu_memory_utilization}")
    if args.vllm_mode not in VLLM_MODES:
        raise SystemExit(f"--vllm-mode must be colocate or server, not '{args.vllm_mode}'")
    if args.use_vllm:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--use-vllm needs a CUDA GPU; on a CPU, TRL generates with model.generate (leave --use-vllm off)")
        common.require_package("vllm", "--use-vllm", "vllm")


def verifiable_reward(task):
    """TRL's reward function for a rl4lm VerifiableTask: r(x, y) in {0, 1} for each (prompt, completion) of the batch."""
    def verified_rewards(prompts: list[str], completions: list[str], **_) -> list[float]:
        return task.rewards(prompts, completions).tolist()

    verified_rewards.__name__ = task.name  # TRL logs the reward's mean under rewards/<name>/mean
    return verified_rewards


def main(argv: list[str] | None = None) -> dict:
    """Train with GRPOTrainer and print the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    settings = common.settings_for_profile(args, DEFAULTS)
    common.check_shared_options(args)
    check_arguments(args, settings)
    peft_config = common.lora_settings(args.lora_r)

    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from rl4lm.rlhf.verifiable import default_task

    eval_prompts = settings["eval_prompts"]
    config = GRPOConfig(**common.trainer_arguments(args, settings), num_generations=settings["num_generations"],
                        max_completion_length=settings["max_completion_length"], temperature=settings["temperature"],
                        beta=settings["beta"], epsilon=settings["epsilon"], num_iterations=1, weight_decay=0.0,
                        loss_type="grpo", scale_rewards="group",  # the course's grpo_loss and grpo_advantages
                        disable_dropout=True,  # the course trains its policy in eval mode
                        use_vllm=args.use_vllm, vllm_mode=args.vllm_mode, vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                        num_generations_eval=2, per_device_eval_batch_size=2 * settings["num_generations"])
    model, tokenizer, init_kwargs = common.load_policy(args.model, args.dtype)  # after the config: ZeRO-3 partitions at load time
    # TRL loads the reference model (beta > 0) with these kwargs from the same weights; its warning that they are
    # "ignored" concerns the policy, which is passed already loaded
    config.model_init_kwargs = init_kwargs
    common.count_positions_over_real_tokens(model)  # TRL scores left-padded prompts without position ids
    task = default_task(eval_prompts=max(eval_prompts, 1), sentences=args.sentences)
    train = datasets.Dataset.from_dict({"prompt": task.train_prompts})
    held_out = datasets.Dataset.from_dict({"prompt": task.eval_prompts[:eval_prompts]}) if eval_prompts else None
    trainer = GRPOTrainer(model=model, reward_funcs=verifiable_reward(task), args=config, train_dataset=train,
                          eval_dataset=held_out, processing_class=tokenizer, peft_config=peft_config)
    if trainer.ref_model is not None:
        common.count_positions_over_real_tokens(trainer.accelerator.unwrap_model(trainer.ref_model))
    common.use_step_logger(trainer, {"reward": "reward", "kl": "kl", "loss": "loss", "length": "completions/mean_length"},
                           args.log_every)
    before = trainer.evaluate() if held_out is not None else {}
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = trainer.evaluate() if held_out is not None else {}
    if args.save:
        trainer.save_model(args.output_dir)
    history = [entry for entry in trainer.state.log_history if "reward" in entry and "eval_reward" not in entry]
    rewards = common.logged_values(history, "reward")
    return common.print_results(
        trainer, model=args.model, task=task.name, steps=trainer.state.global_step, seconds=round(seconds, 2),
        reward_first=rewards[0], reward_last=common.mean_of_last(rewards),
        kl_last=common.mean_of_last(common.logged_values(history, "kl")),
        loss_last=common.mean_of_last(common.logged_values(history, "loss")),
        completion_length_last=common.mean_of_last(common.logged_values(history, "completions/mean_length")),
        eval_reward_start=before.get("eval_reward"), eval_reward_end=after.get("eval_reward"))


if __name__ == "__main__":
    labs.run_main(main)
