"""Scaling up: the course's DPO and GRPO experiments through TRL's trainers, on one CPU or on many GPUs.

This folder is for the reader who has outgrown a notebook (the page ``scaling.md`` says when that happens).
The scripts run the same experiments as Session 8 and Homework 3 (DPO on the ``preferences`` role, GRPO with a
verifiable reward) through TRL's ``DPOTrainer`` and ``GRPOTrainer`` (TRL 1.16), which hand device placement,
mixed precision, gradient accumulation and sharding to Hugging Face ``accelerate``. One script runs unchanged on a
laptop CPU (tiny profile), one GPU, or several GPUs with DDP, DeepSpeed ZeRO or FSDP: only the launcher changes.

Files
-----
``dpo_trl.py``           DPO (Rafailov et al., 2023) with ``trl.DPOTrainer``
``grpo_trl.py``          GRPO (Shao et al., 2024) with ``trl.GRPOTrainer``; ``--use-vllm`` generates with vLLM
``scale_common.py``      what both scripts share (this module)
``configs/*.yaml``       ``accelerate`` configurations: ``ddp`` (one process per GPU), ``zero2``, ``zero3``
                         (DeepSpeed, Rajbhandari et al., 2020) and ``fsdp`` (PyTorch FSDP2)

Commands
--------
CPU, tiny profile (the default without a GPU; a few seconds)::

    python code/scale/dpo_trl.py --max-steps 3
    python code/scale/grpo_trl.py --max-steps 3

One GPU, full profile (GPT-2 small and UltraFeedback pairs; ``--model`` names another role or a hub model)::

    RL4LM_PROFILE=full python code/scale/dpo_trl.py --max-steps 200
    RL4LM_PROFILE=full python code/scale/dpo_trl.py --model Qwen/Qwen2.5-0.5B-Instruct --lora-r 16

N GPUs on one machine (set ``num_processes`` in the yaml, or override it on the command line)::

    accelerate launch --config_file code/scale/configs/ddp.yaml --num_processes 4 code/scale/dpo_trl.py
    accelerate launch --config_file code/scale/configs/zero3.yaml code/scale/grpo_trl.py --model instruct_lm

``zero2``/``zero3`` need ``pip install deepspeed``, ``--lora-r`` needs ``pip install peft``, ``--use-vllm``
needs ``pip install vllm``; none of them is needed on the CPU. Every script ends with one JSON line (printed by
the main process only) that tests and benchmarks read: ``steps``, ``seconds`` (of ``trainer.train()``), the final
loss or reward, the profile, the model and the number of processes.
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile

from rl4lm import labs, profiles
from rl4lm.assets import roles

PRECISIONS = ("auto", "no", "bf16", "fp16")
DTYPES = ("float32", "bfloat16", "auto")


def default_output_dir(name: str) -> str:
    """A scratch folder for a run's output (nothing is written there unless ``--save`` is given)."""
    return os.path.join(tempfile.gettempdir(), "rl4lm-scale", name)


def settings_for_profile(args, defaults: dict[str, dict]) -> dict:
    """Each option the user left unset (None) takes the active profile's default from ``defaults[profile]``."""
    chosen = defaults[profiles.current_profile()]
    return {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in chosen.items()}


def require_at_least(minimum: float, **values) -> None:
    """Refuse, in one line naming the option, any value below ``minimum`` (names are option names without dashes)."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least {minimum}, not {value}")


def require_package(module: str, flag: str, install: str) -> None:
    """Refuse, in one line, an option whose package is missing (found without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"{flag} needs the '{module}' package, which is not installed; run `pip install {install}`")


def check_shared_options(args) -> None:
    """Refuse, in one line and before the slow imports, a --precision, --dtype or --model that cannot work."""
    if args.precision not in PRECISIONS:
        raise SystemExit(f"--precision must be one of {', '.join(PRECISIONS)}, not '{args.precision}'")
    if args.dtype not in DTYPES:
        raise SystemExit(f"--dtype must be one of {', '.join(DTYPES)}, not '{args.dtype}'")
    if args.model in roles.ROLES and not roles.ROLES[args.model].is_model:
        raise SystemExit(f"--model '{args.model}' is a data set role; name a model role ({', '.join(roles.MODEL_ROLES)}) or a hub model")


def precision_flags(precision: str) -> dict[str, bool]:
    """``bf16``/``fp16`` of TRL's config: mixed precision on a GPU (bf16 where supported, else fp16, e.g. a T4), none on a CPU.

    ``auto`` leaves both off when ``accelerate launch`` set a precision (its yaml's ``mixed_precision``), so that the
    config file decides, and on a CPU, where the tiny model trains in float32.
    """
    import torch

    if precision == "auto":
        if not torch.cuda.is_available() or os.environ.get("ACCELERATE_MIXED_PRECISION"):
            return {"bf16": False, "fp16": False}
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def trainer_arguments(args, settings: dict) -> dict:
    """The keyword arguments that DPOConfig and GRPOConfig share (transformers' TrainingArguments, TRL 1.16 names)."""
    import torch

    return dict(output_dir=args.output_dir, max_steps=settings["max_steps"], seed=args.seed, data_seed=args.seed,
                per_device_train_batch_size=settings["batch_size"],
                gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=settings["learning_rate"],
                lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
                activation_checkpointing=settings["activation_checkpointing"],
                logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), **precision_flags(args.precision))


def is_role(name: str) -> bool:
    """True when ``--model`` names a course role (loaded through rl4lm.profiles), False for a hub id or a folder."""
    return name in roles.ROLES and roles.ROLES[name].is_model


def load_policy(name: str, dtype: str):
    """(model, tokenizer, from_pretrained kwargs) of ``--model``: a role of the active profile, else a hub id or a folder.

    Call it after the trainer's config exists: under DeepSpeed ZeRO-3 that config makes ``from_pretrained`` build the
    weights already partitioned over the GPUs. Safetensors only, never remote code; the kwargs let TRL load the same
    weights again (GRPO's reference model).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if is_role(name):
        source_kwargs = profiles.model_source(name)[1]
        model, tokenizer = profiles.load_model(name, **kwargs), profiles.load_tokenizer(name)  # safetensors only
        return model, tokenizer, {**source_kwargs, "dtype": dtype, "use_safetensors": True}
    try:
        model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=False, use_safetensors=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--model '{name}' is neither a model role ({', '.join(roles.MODEL_ROLES)}) nor a model that "
                         f"from_pretrained can load with safetensors ({type(error).__name__})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}


def lora_settings(rank: int):
    """A LoRA adapter of rank ``rank`` on every linear layer (Hu et al., 2022), or None for full fine-tuning (rank 0).

    With an adapter, TRL needs no copy of the model as the reference: it switches the adapter off to get pi_ref.
    """
    if rank == 0:
        return None
    require_package("peft", "--lora-r", "peft")
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def use_step_logger(trainer, metrics: dict[str, str], every: int) -> None:
    """Replace the trainer's printing of whole log dicts by one line of named metrics every ``every`` steps (rl4lm.labs.log).

    ``metrics`` maps a short name to TRL's log key, e.g. ``{"loss": "loss", "margin": "rewards/margins"}``; only the
    main process prints.
    """
    from transformers import PrinterCallback, TrainerCallback

    class StepLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            step, logs = state.global_step, logs or {}
            if state.is_world_process_zero and "loss" in logs and (step % every == 0 or step == state.max_steps):
                labs.log(step, **{name: float(logs[key]) for name, key in metrics.items() if key in logs})

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StepLogger())


def count_positions_over_real_tokens(model) -> None:
    """Give every forward pass without ``position_ids`` the positions cumsum(mask) - 1 of rl4lm.lm.logprobs.positions_from_mask.

    TRL's GRPOTrainer left-pads prompts and scores completions with ``input_ids`` and ``attention_mask`` only, so a model
    that falls back to positions 0, 1, ... (GPT-2, whose positions are learned absolute embeddings) sees every padded
    row shifted by its number of pads, while ``generate`` counted positions over real tokens: the policy is trained on
    log-probabilities of a distribution it did not sample from, and the KL to the reference spikes. The course's own
    code passes the positions (rl4lm.lm.rollout); this hook does the same for TRL, on the model's base transformer
    (reached also through a DDP, DeepSpeed or PEFT wrapper). For rotary positions (Llama, Qwen) it changes nothing.
    """
    from rl4lm.lm.logprobs import positions_from_mask

    def add_positions(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if kwargs.get("position_ids") is not None or mask is None or mask.dim() != 2:
            return args, kwargs
        tokens = args[0] if args and args[0] is not None else kwargs.get("input_ids")
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        if tokens is None:
            return args, kwargs
        kwargs["position_ids"] = positions_from_mask(mask)[:, mask.shape[1] - tokens.shape[1]:]  # (batch, new tokens)
        return args, kwargs

    model.base_model.register_forward_pre_hook(add_positions, with_kwargs=True)


def logged_values(history: list[dict], key: str) -> list[float]:
    """Every value of ``key`` in a trainer's ``state.log_history``, in step order."""
    return [float(entry[key]) for entry in history if key in entry]


def mean_of_last(values: list[float], n: int = 5) -> float | None:
    """The mean of the last ``n`` values (a less noisy 'final' than the last one), or None if there are none."""
    return sum(values[-n:]) / len(values[-n:]) if values else None


def print_results(trainer, **results) -> dict:
    """Print the results as one JSON line on the main process (the last line of the run); return them on every process."""
    results = {"profile": profiles.current_profile(), **results, "processes": trainer.accelerator.num_processes}
    if trainer.is_world_process_zero():
        print(json.dumps(results), flush=True)
    return results
