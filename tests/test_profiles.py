"""Profiles: choosing tiny/full, the cache folder, and one-sentence errors for bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import one_sentence
from rl4lm import profiles
from rl4lm.assets import hub, roles


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
    import huggingface_hub.constants as constants

    monkeypatch.setenv("RL4LM_PROFILE", "full")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)  # no connection is attempted
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    seen = []

    def hub_refuses(*args, **kwargs):
        seen.append((datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE))
        raise ConnectionError("Couldn't reach the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", hub_refuses)
    with pytest.raises(profiles.ProfileError) as info:
        profiles.load_dataset("reviews", split="test")
    assert "RL4LM_PROFILE=tiny" in one_sentence(info.value)
    assert seen == [(True, True)], "the call must run in offline mode (no minutes of retries)"
    assert (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE) == (False, False), "offline mode is restored after"


@pytest.mark.parametrize("role", ["reviews", "qa"])
def test_data_set_role_asked_as_model_is_explained(role):
    for load in (profiles.load_model, profiles.load_tokenizer):
        with pytest.raises(profiles.ProfileError) as info:
            load(role)
        text = one_sentence(info.value)
        assert "is a data set" in text and f"load_dataset('{role}')" in text


@pytest.fixture
def listening_port():
    """A TCP port on loopback with a listening socket (closed after the test)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hub_probe_uses_hf_endpoint(monkeypatch, listening_port):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening_port}")
    assert hub.endpoint_address() == ("127.0.0.1", listening_port)
    assert hub.hub_reachable(timeout=1.0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_reachable(), "offline mode means no connection, whatever the endpoint"


def test_failed_hub_probe_is_tried_again(monkeypatch):
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    port = free_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert not hub.hub_reachable(timeout=1.0)
    with socket.socket() as server:  # the connection comes back
        server.bind(("127.0.0.1", port))
        server.listen()
        assert hub.hub_reachable(timeout=1.0), "a failed probe must not be remembered"


def test_tiny_profile_computes_on_one_thread_unless_told(monkeypatch):
    import torch

    saved = torch.get_num_threads()
    try:
        monkeypatch.setenv("RL4LM_PROFILE", "tiny")
        monkeypatch.delenv("RL4LM_THREADS", raising=False)
        assert profiles.use_tiny_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("RL4LM_THREADS", "2")
        assert profiles.use_tiny_threads() == 2
        monkeypatch.setenv("RL4LM_THREADS", "two")
        with pytest.raises(profiles.ProfileError) as info:
            profiles.use_tiny_threads()
        assert "RL4LM_THREADS" in one_sentence(info.value)
        torch.set_num_threads(3)
        monkeypatch.setenv("RL4LM_PROFILE", "full")
        assert profiles.use_tiny_threads() == 3, "the full profile keeps torch's default"
    finally:
        torch.set_num_threads(saved)


def test_inference_dtype_is_float32_on_the_cpu_and_never_float16():
    import torch

    from rl4lm.profiles import inference_dtype

    assert inference_dtype("cpu") is torch.float32
    assert inference_dtype(torch.device("cpu")) is torch.float32
    if torch.cuda.is_available():  # bfloat16 where the GPU has the units, else float32: float16 overflows bfloat16-trained models
        assert inference_dtype("cuda") in {torch.bfloat16, torch.float32}
