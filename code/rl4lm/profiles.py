"""Choose a profile (``tiny`` or ``full``) and load every model and data set through one path.

``full`` resolves a role to a pinned hub repository (:mod:`rl4lm.registry`);
``tiny`` resolves it to a folder that :mod:`rl4lm.tiny` builds once, deterministically,
in the cache folder. Both are then loaded with the same ``from_pretrained`` /
``load_dataset`` calls, so a notebook's code is identical in both profiles.

Environment variables
---------------------
``RL4LM_PROFILE``  ``tiny`` or ``full``. Unset: ``full`` when a CUDA GPU is visible
                   (e.g. a Colab GPU runtime), otherwise ``tiny``.
``RL4LM_CACHE``    where tiny assets are built; default ``$XDG_CACHE_HOME/rl4lm``
                   or ``~/.cache/rl4lm``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
from pathlib import Path

from . import registry

PROFILES = ("tiny", "full")
PROFILE_VARIABLE = "RL4LM_PROFILE"
CACHE_VARIABLE = "RL4LM_CACHE"


class ProfileError(RuntimeError):
    """A set-up problem (profile, cache, hub) explained in one sentence."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a long traceback
        return [f"ProfileError: {self}"]


def _cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU to speak of
        return False


def current_profile() -> str:
    """Return the active profile: ``$RL4LM_PROFILE``, else ``full`` with a GPU and ``tiny`` without."""
    name = os.environ.get(PROFILE_VARIABLE, "").strip().lower()
    if not name:
        return "full" if _cuda_available() else "tiny"
    if name not in PROFILES:
        raise ProfileError(
            f"Unknown profile '{name}' in ${PROFILE_VARIABLE}; set it to 'tiny' (offline, CPU) or 'full' (hub models)."
        )
    return name


def set_profile(name: str) -> str:
    """Select a profile for the rest of this Python session (same as setting ``$RL4LM_PROFILE``)."""
    os.environ[PROFILE_VARIABLE] = name
    return current_profile()


def cache_dir() -> Path:
    """Return the writable folder where tiny assets live, creating it if needed."""
    base = os.environ.get(CACHE_VARIABLE)
    if base:
        path = Path(base).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "rl4lm"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ProfileError(
            f"Cannot write to the cache folder {path} ({error.strerror}); "
            f"set ${CACHE_VARIABLE} to a folder you can write to."
        ) from None
    return path


def profile_summary() -> str:
    """Which profile runs and how to switch, as text (lines short enough for a notebook cell)."""
    if current_profile() == "tiny":
        return (
            "Profile: tiny - small models built by rl4lm on this machine (CPU, offline).\n"
            f"Switch: set {PROFILE_VARIABLE}=full for real hub models (gpt2, IMDB; internet),\n"
            "or call rl4lm.profiles.set_profile('full') before loading the first model."
        )
    return (
        "Profile: full - real hub models and data sets (gpt2, IMDB, ...); a GPU helps.\n"
        f"Switch: set {PROFILE_VARIABLE}=tiny for small offline models (CPU, minutes),\n"
        "or call rl4lm.profiles.set_profile('tiny') before loading the first model."
    )


def describe_profile() -> None:
    """Print which profile runs and how to switch; every notebook's first code cell calls it."""
    print(profile_summary())


def _hub_error(asset: registry.HubAsset, error: Exception) -> ProfileError:
    """Turn a hub failure into one sentence that names the tiny profile."""
    return ProfileError(
        f"Could not load '{asset.repo_id}' from the Hugging Face hub ({type(error).__name__}); "
        f"check your internet connection, or run offline with {PROFILE_VARIABLE}=tiny."
    )


def _quiet_libraries() -> None:
    """Hide the libraries' progress bars and info messages so that pages show only what matters."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True unless offline mode is set or the hub cannot be reached within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def model_source(role: str) -> tuple[str, dict]:
    """Return ``(path_or_repo, from_pretrained kwargs)`` for a model role in the active profile (no network)."""
    asset = registry.hub_asset(role)
    if current_profile() == "full":
        return asset.repo_id, {"revision": asset.revision}
    from . import tiny

    return str(tiny.asset_path(role)), {}


def _loading_source(role: str) -> tuple[str, dict]:
    """``model_source``, plus ``local_files_only`` in ``full`` when the hub is unreachable (fail at once, not after retries)."""
    source, kwargs = model_source(role)
    if current_profile() == "full" and not hub_reachable():
        kwargs = {**kwargs, "local_files_only": True}
    return source, kwargs


def load_tokenizer(role: str = "lm"):
    """Load the tokenizer of a model role with ``AutoTokenizer.from_pretrained`` (GPT-2 gets eos as its pad token)."""
    from transformers import AutoTokenizer

    source, kwargs = _loading_source(role)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as error:
        raise _hub_error(registry.hub_asset(role), error) from None
    if tokenizer.pad_token is None:  # GPT-2 has no pad token; reuse end-of-text as usual
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(role: str = "lm", **kwargs):
    """Load a model role with ``from_pretrained`` (safetensors only), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if role == "sentiment_classifier" else AutoModelForCausalLM
    source, extra = _loading_source(role)
    _quiet_libraries()
    try:
        model = auto.from_pretrained(source, use_safetensors=True, **extra, **kwargs)
    except OSError as error:
        raise _hub_error(registry.hub_asset(role), error) from None
    return model.eval()


@contextlib.contextmanager
def _hub_offline():
    """Switch the hub libraries to offline mode for one call, so that an unreachable hub fails at once."""
    import datasets
    import huggingface_hub.constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def load_dataset(role: str, split: str | None = None):
    """Load a data-set role with ``datasets.load_dataset`` (hub name or the tiny folder)."""
    import datasets

    asset = registry.hub_asset(role)
    if asset.kind != "dataset":
        raise ProfileError(f"'{role}' is a model, not a data set; use rl4lm.profiles.load_model('{role}').")
    offline = False
    if current_profile() == "full":
        source, kwargs = asset.repo_id, {"revision": asset.revision, "name": asset.config}
        offline = not hub_reachable()
    else:
        from . import tiny

        source, kwargs = str(tiny.asset_path(role)), {}
    _quiet_libraries()
    try:
        with _hub_offline() if offline else contextlib.nullcontext():
            return datasets.load_dataset(source, split=split, **kwargs)
    except (OSError, ConnectionError) as error:
        raise _hub_error(asset, error) from None
