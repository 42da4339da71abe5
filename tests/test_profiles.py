"""Profiles: choosing tiny/full, the cache folder, and one-sentence errors for bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rl4lm import profiles
from rl4lm.assets import hub, roles


def one_sentence(error: Exception) -> str:
    """The error's text, checked to be a single line."""
    text = str(error)
    assert "\n" not in text, f"error is not one sentence: {text!r}"
    return text


def test_unknown_profile_is_named_with_the_fix(monkeypatch):
    monkeypatch.setenv("RL4LM_PROFILE", "huge")
    with pytest.raises(profiles.ProfileError) as info:
        profiles.current_profile()
    text = one_sentence(info.value)
    assert "huge" in text and "tiny" in text and "full" in text


def test_default_profile_is_tiny_without_gpu(monkeypatch):
    monkeypatch.delenv("RL4LM_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    assert profiles.current_profile() == "tiny"
    monkeypatch.setattr(profiles, "_cuda_available", lambda: True)
    assert profiles.current_profile() == "full"


def test_unwritable_cache_names_the_variable(monkeypatch, tmp_path):
    if os.geteuid() == 0:  # root can write anywhere: use a path below a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("x")
        monkeypatch.setenv("RL4LM_CACHE", str(blocker / "cache"))
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        monkeypatch.setenv("RL4LM_CACHE", str(locked / "cache"))
    with pytest.raises(profiles.ProfileError) as info:
        profiles.writable_cache_dir()
    assert "RL4LM_CACHE" in one_sentence(info.value)


def test_unknown_role_lists_known_roles():
    with pytest.raises(profiles.ProfileError) as info:
        profiles.load_model("gpt5")
    text = one_sentence(info.value)
    assert "gpt5" in text and "lm" in text


UNREACHABLE = """
from rl4lm import profiles
for load in (lambda: profiles.load_tokenizer("lm"), lambda: profiles.load_model("lm"),
             lambda: profiles.load_dataset("reviews", split="test")):
    try:
        load()
    except profiles.ProfileError as error:
        print(error)
"""


def test_unreachable_hub_names_the_tiny_profile(tmp_path):
    # a fresh interpreter: the hub libraries read HF_HUB_OFFLINE when they are imported
    env = dict(os.environ, RL4LM_PROFILE="full", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-c", UNREACHABLE], env=env, capture_output=True, text=True, timeout=300)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3, out.stdout + out.stderr[-2000:]
    for line in lines:
        assert "RL4LM_PROFILE=tiny" in line and "hub" in line, line


def test_error_renders_as_one_line_in_ipython():
    error = profiles.ProfileError("Could not do it; set X.")
    assert error._render_traceback_() == ["ProfileError: Could not do it; set X."]


def test_model_role_asked_as_dataset_is_explained():
    with pytest.raises(profiles.ProfileError) as info:
        profiles.load_dataset("lm")
    assert "load_model" in one_sentence(info.value)


def test_every_model_role_resolves_in_both_profiles(monkeypatch):
    for name in profiles.PROFILES:
        monkeypatch.setenv("RL4LM_PROFILE", name)
        for role in roles.MODEL_ROLES:
            source, kwargs = profiles.model_source(role)
            assert source and isinstance(kwargs, dict)


def test_unreachable_hub_switches_data_sets_to_offline_mode_for_the_call(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub.constants as hub

    monkeypatch.setenv("RL4LM_PROFILE", "full")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)  # no connection is attempted
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    seen = []

    def hub_refuses(*args, **kwargs):
        seen.append((datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE))
        raise ConnectionError("Couldn't reach the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", hub_refuses)
    with pytest.raises(profiles.ProfileError) as info:
        profiles.load_dataset("reviews", split="test")
    assert "RL4LM_PROFILE=tiny" in one_sentence(info.value)
    assert seen == [(True, True)], "the call must run in offline mode (no minutes of retries)"
    assert (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE) == (False, False), "offline mode is restored after"
