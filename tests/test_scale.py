"""The scale-out scripts (code/scale): TRL's DPO and GRPO trainers run a few steps on the CPU, the accelerate configs parse.

Multi-process launches are not run here (CI has one CPU and no GPU); a two-process CPU run is
``torchrun --nproc_per_node 2 code/scale/dpo_trl.py --max-steps 3`` (see scaling.md).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

import rl4lm
from helpers import ROOT, run_script

SCALE = ROOT / "code" / "scale"
CONFIGS = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}
ACCELERATE_FIELDS = {"compute_environment", "distributed_type", "mixed_precision", "num_machines", "machine_rank",
                     "num_processes", "use_cpu"}  # what `accelerate launch --config_file` reads from every file


def results(script: str, *args: str, tmp_path: Path) -> dict:
    """Run a scale script in the tiny profile and return its last line, which must be one JSON object."""
    out = run_script(f"code/scale/{script}", "--output-dir", str(tmp_path), *args)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dpo_script_trains_a_few_steps_on_the_cpu_and_ends_with_one_json_line(tmp_path):
    found = results("dpo_trl.py", "--max-steps", "2", "--batch-size", "4", "--train-rows", "32", "--eval-rows", "8",
                    "--log-every", "1", tmp_path=tmp_path)
    assert found["steps"] == 2 and found["processes"] == 1 and found["profile"] == "tiny" and found["model"] == "lm"
    assert found["loss_first"] == pytest.approx(math.log(2), abs=1e-4), "at step 1 the policy is its reference: loss log 2"
    assert 0.0 <= found["eval_reward_accuracy"] <= 1.0 and math.isfinite(found["eval_loss"]) and found["seconds"] > 0


def test_grpo_script_trains_a_few_steps_on_the_cpu_with_the_verifiable_reward(tmp_path):
    found = results("grpo_trl.py", "--max-steps", "2", "--batch-size", "8", "--num-generations", "4",
                    "--max-completion-length", "16", "--eval-prompts", "4", "--log-every", "1", tmp_path=tmp_path)
    assert found["steps"] == 2 and found["processes"] == 1 and found["task"] == "2_more_sentences"
    for key in ("reward_first", "reward_last", "eval_reward_start", "eval_reward_end"):
        assert 0.0 <= found[key] <= 1.0, (key, found)
    assert found["kl_last"] >= 0 and 1 <= found["completion_length_last"] <= 16


REFUSALS = {
    "group does not divide the batch": ("grpo_trl", ["--batch-size", "12", "--num-generations", "8"],
                                        "--num-generations 8 does not divide --batch-size 12"),
    "group of one": ("grpo_trl", ["--num-generations", "1"], "--num-generations must be at least 2, not 1"),
    "unknown vLLM mode": ("grpo_trl", ["--vllm-mode", "remote"], "--vllm-mode must be colocate or server"),
    "beta not positive": ("dpo_trl", ["--beta", "0"], "--beta must be positive"),
    "no steps": ("dpo_trl", ["--max-steps", "0"], "--max-steps must be at least 1, not 0"),
    "unknown precision": ("dpo_trl", ["--precision", "fp8"], "--precision must be one of auto, no, bf16, fp16"),
    "a data set as the model": ("dpo_trl", ["--model", "preferences", "--max-steps", "1"], "--model 'preferences' is a data set role"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=str)
def test_a_scale_script_refuses_a_bad_option_in_one_sentence(case, monkeypatch):
    module, args, message = REFUSALS[case]
    monkeypatch.syspath_prepend(str(SCALE))
    with pytest.raises(SystemExit) as refusal:
        importlib.import_module(module).main(args)
    assert message in str(refusal.value) and "\n" not in str(refusal.value), refusal.value


@pytest.mark.skipif(importlib.util.find_spec("peft") is not None, reason="peft is installed, so --lora-r is accepted")
def test_lora_without_peft_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.syspath_prepend(str(SCALE))
    with pytest.raises(SystemExit, match="--lora-r needs the 'peft' package, which is not installed; run `pip install peft`"):
        importlib.import_module("dpo_trl").main(["--lora-r", "8"])


def test_a_refusal_is_one_line_on_stderr_without_a_traceback():
    out = run_script("code/scale/grpo_trl.py", "--use-vllm", check=False)
    assert out.returncode != 0 and "--use-vllm needs a CUDA GPU" in out.stderr, out.stderr[-500:]
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_accelerate_config_parses_and_names_what_accelerate_needs(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = SCALE / "configs" / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    assert ACCELERATE_FIELDS <= set(config), ACCELERATE_FIELDS - set(config)
    assert config["distributed_type"] == CONFIGS[name] and config["num_processes"] >= 2 and config["use_cpu"] is False
    if name.startswith("zero"):
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])
        assert config["deepspeed_config"]["zero3_init_flag"] is (name == "zero3")
    if name == "fsdp":
        assert config["fsdp_config"]["fsdp_version"] == 2 and config["fsdp_config"]["fsdp_auto_wrap_policy"]
    assert load_config_from_file(str(path)).distributed_type.value == CONFIGS[name]  # accelerate's own reader agrees
    launches = re.findall(r"accelerate launch --config_file (\S+) .*?(code/scale/\S+\.py)", path.read_text())
    assert launches and all(ROOT.joinpath(f).exists() and ROOT.joinpath(s).exists() for f, s in launches), launches


def test_the_folder_docstring_names_every_config_and_script():
    import sys

    sys.path.insert(0, str(SCALE))
    try:
        import scale_common
    finally:
        sys.path.remove(str(SCALE))
    doc = scale_common.__doc__
    assert all(f"configs/{name}.yaml" in doc or f"``{name}``" in doc for name in CONFIGS)
    assert all(path.name in doc for path in SCALE.glob("*.py"))


def test_scale_scripts_import_helpers_instead_of_copying_them():
    package = {node.name for path in Path(rl4lm.__file__).parent.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    copies = [f"{path.name} defines {name}" for path in sorted(SCALE.glob("*.py"))
              for name in re.findall(r"^\s*def (\w+)\(", path.read_text(), flags=re.M) if name in package and name != "main"]
    assert not copies, copies


def test_position_hook_scores_a_left_padded_prompt_as_the_unpadded_one(monkeypatch):
    """TRL's GRPO scores left-padded rows without position ids; with the hook GPT-2 sees the positions generate() used."""
    monkeypatch.syspath_prepend(str(SCALE))
    import scale_common

    from rl4lm import profiles

    model, tokenizer = profiles.load_model("lm"), profiles.load_tokenizer("lm")
    ids = tokenizer("this comedy was dull . the acting was", return_tensors="pt").input_ids  # (1, T)
    padded = torch.cat([torch.full((1, 8), tokenizer.pad_token_id), ids], dim=1)  # eight pads on the left
    mask = torch.cat([torch.zeros(1, 8, dtype=torch.long), torch.ones_like(ids)], dim=1)
    with torch.no_grad():
        alone = model(input_ids=ids).logits[0]
        shifted = model(input_ids=padded, attention_mask=mask).logits[0, 8:]
        scale_common.count_positions_over_real_tokens(model)
        fixed = model(input_ids=padded, attention_mask=mask).logits[0, 8:]
    assert (shifted - alone).abs().max() > 1e-2, "without positions, GPT-2 shifts a left-padded row"
    torch.testing.assert_close(fixed, alone, atol=1e-4, rtol=1e-4)
