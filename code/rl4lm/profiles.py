"""Choose a profile (``tiny`` or ``full``) and load every model and data set through one path.

``full`` resolves a role (:mod:`rl4lm.assets.roles`) to its pinned hub repository; ``tiny`` resolves
it to a folder that :mod:`rl4lm.assets.tiny` builds once, deterministically, in the cache folder.
Both are then loaded with the same ``from_pretrained`` / ``load_dataset`` calls, so a notebook's
code is identical in both profiles.

Environment variables
---------------------
``RL4LM_PROFILE``  ``tiny`` or ``full``. Unset: ``full`` when a CUDA GPU is visible
                   (e.g. a Colab GPU runtime), otherwise ``tiny``.
``RL4LM_CACHE``    where tiny assets are built; default ``$XDG_CACHE_HOME/rl4lm``
                   or ``~/.cache/rl4lm``. Only building needs write access.
``RL4LM_THREADS``  torch threads in the ``tiny`` profile; default 1 (see :func:`use_tiny_threads`).
"""
from __future__ import annotations

import contextlib
import os

from .assets import hub, roles
from .assets.cache import CACHE_VARIABLE, cache_dir, writable_cache_dir
from .errors import ProfileError

__all__ = ["PROFILES", "PROFILE_VARIABLE", "CACHE_VARIABLE", "ProfileError", "current_profile", "set_profile",
           "cache_dir", "writable_cache_dir", "profile_summary", "describe_profile", "model_source", "use_tiny_threads",
           "load_tokenizer", "load_model", "load_dataset"]

PROFILES = ("tiny", "full")
PROFILE_VARIABLE = "RL4LM_PROFILE"
THREADS_VARIABLE = "RL4LM_THREADS"
TINY_THREADS = 1


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


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads and restore the caller's number after it (tiny MLPs: one is fastest)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def use_tiny_threads() -> int:
    """In the ``tiny`` profile, compute with ``$RL4LM_THREADS`` torch threads (default 1); return the number in use.

    The tiny models are so small that a second thread saves little, while two threads on a laptop whose
    other core is busy wait for each other at every operation (Homework 1 ran several times slower).
    The ``full`` profile keeps torch's default.
    """
    import torch

    if current_profile() == "tiny":
        wanted = os.environ.get(THREADS_VARIABLE, "").strip()
        try:
            threads = int(wanted) if wanted else TINY_THREADS
        except ValueError:
            raise ProfileError(f"${THREADS_VARIABLE} should be a whole number of threads, not '{wanted}'.") from None
        if threads < 1:
            raise ProfileError(f"${THREADS_VARIABLE} should be at least 1, not {threads}.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _quiet_libraries() -> None:
    """Hide the libraries' progress bars and info messages so that pages show only what matters."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _tiny_path(role: roles.Role) -> str:
    """The tiny folder of a role (built on first use, checked against its manifest)."""
    from .assets import tiny

    return str(tiny.asset_path(role.name))


def model_source(name: str) -> tuple[str, dict]:
    """``(path_or_repo, from_pretrained kwargs)`` of a model role in the active profile (no network)."""
    role = roles.model_role(name)
    if current_profile() == "full":
        return role.hub_repo, {"revision": role.revision}
    return _tiny_path(role), {}


def _load_error(role: roles.Role, source: str, error: Exception) -> ProfileError:
    """One sentence for a failed load: the hub in ``full``, a damaged tiny folder (and how to rebuild it) in ``tiny``."""
    if current_profile() == "full":
        return hub.hub_error(role, error)
    what = "" if role.is_model else "data set "
    return ProfileError(f"Could not load the tiny {what}'{role.name}' from {source} ({type(error).__name__}); rebuild the "
                        "tiny assets with `python -m rl4lm.assets.tiny --force`.")


def _load_pretrained(name: str, load):
    """Call ``load(source, **kwargs)`` for a model role; in ``full`` fail at once, in one sentence, without the hub."""
    source, kwargs = model_source(name)
    if current_profile() == "full" and not hub.hub_reachable():
        kwargs = {**kwargs, "local_files_only": True}
    try:
        return load(source, **kwargs)
    except OSError as error:
        raise _load_error(roles.role(name), source, error) from None


def load_tokenizer(name: str = "lm"):
    """Load the tokenizer of a model role with ``AutoTokenizer.from_pretrained`` (GPT-2 gets eos as its pad token)."""
    from transformers import AutoTokenizer

    tokenizer = _load_pretrained(name, AutoTokenizer.from_pretrained)
    if tokenizer.pad_token is None:  # GPT-2 has no pad token; reuse end-of-text as usual
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str = "lm", head: str | None = None, **kwargs):
    """Load a model role with the ``from_pretrained`` of its head (safetensors only), in eval mode.

    ``head`` overrides the role's head, e.g. ``roles.SEQUENCE_CLASSIFIER`` with ``num_labels=1`` turns the LM into
    a reward model with a new scalar head. In the ``tiny`` profile this also sets torch's thread count
    (:func:`use_tiny_threads`).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = {roles.CAUSAL_LM: AutoModelForCausalLM,
            roles.SEQUENCE_CLASSIFIER: AutoModelForSequenceClassification}[head or roles.model_role(name).head]
    _quiet_libraries()
    use_tiny_threads()
    model = _load_pretrained(name, lambda source, **extra: auto.from_pretrained(
        source, use_safetensors=True, **extra, **kwargs))
    return model.eval()


def inference_dtype(device):
    """The dtype to load a model in for inference on ``device``: bfloat16 (Kalamkar et al., 2019) where the GPU computes in it.

    A GPU without bfloat16 units (Colab's T4) gets float32, not float16: models trained in bfloat16, such as OLMo 2, can
    overflow float16's range in their activations; a 1B model in float32 (about 6 GB) still fits a T4 when the pages load
    one model at a time. The CPU gets float32.
    """
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32


def _course_splits(data, role: roles.Role):
    """Rename hub splits to the course's names (e.g. SQuAD's 'validation' is the course's 'test')."""
    import datasets

    if not role.splits or not isinstance(data, datasets.DatasetDict):
        return data
    renamed = {hub_name: course for course, hub_name in role.splits.items()}
    return datasets.DatasetDict({renamed.get(split, split): part for split, part in data.items()})


def _load_tasks(role: roles.Role, split: str | None):
    """Load every task of a role (a configuration of its hub repository) and concatenate its rows in the role's schema."""
    import datasets

    parts = {}
    for course in [split] if split else list(role.splits):
        rows = []
        for task, to_item in role.tasks.items():
            data = datasets.load_dataset(role.hub_repo, task, revision=role.revision, split=role.splits.get(course, course))
            rows += [to_item(row) for row in data]
        parts[course] = datasets.Dataset.from_list(rows)
    return parts[split] if split else datasets.DatasetDict(parts)


def load_dataset(name: str, split: str | None = None):
    """Load a data-set role with ``datasets.load_dataset`` (hub name or the tiny folder).

    Split names are the course's in both profiles: ``train`` and ``test``. A role made of several hub tasks
    (``Role.tasks``) is loaded task by task in ``full`` and converted to the schema of its tiny folder.
    """
    import datasets

    role = roles.dataset_role(name)
    offline = False
    if current_profile() == "full":
        hub_split = role.splits.get(split, split) if split else None
        source, kwargs = role.hub_repo, {"revision": role.revision, "name": role.config, "split": hub_split}
        offline = not hub.hub_reachable()
    else:
        source, kwargs = _tiny_path(role), {"split": split}
    _quiet_libraries()
    try:
        with hub.offline_for_this_call() if offline else contextlib.nullcontext():
            if current_profile() == "full" and role.tasks:
                return _load_tasks(role, split)
            return _course_splits(datasets.load_dataset(source, **kwargs), role)
    except (OSError, ConnectionError) as error:
        raise _load_error(role, source, error) from None
