"""The machinery every checker shares: the ``exercise`` decorator and registry, one-sentence failures, helpers.

What a checker promises a student is described in :mod:`rl4lm.checks`.
"""
from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch


class CheckFailed(AssertionError):
    """A failed check, explained in one sentence (no traceback in notebooks)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a long traceback
        return [f"\u274c CheckFailed: {self}"]


class _NotImplemented(Exception):
    """Internal: the student's function (or one it calls) raised NotImplementedError."""


_STATUS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> "passed" | "failed" | "missing"


def _name(fn) -> str:
    """The function's name as the student wrote it."""
    return getattr(fn, "__name__", "your function")


def _call(fn, *args, **kwargs):
    """Call the student's function; turn any exception into a one-sentence failure."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        text = str(error)
        raise _NotImplemented(text.split(" - ")[0] if "not implemented yet" in text else
                              f"{_name(fn)}: not implemented yet") from None
    except CheckFailed:
        raise
    except Exception as error:  # the student's code crashed: say where, in one sentence
        raise CheckFailed(f"calling {_name(fn)} raised {type(error).__name__}: {error}".rstrip(". ")
                          + "; run it on a small example in a new cell to see the full error.") from None


@dataclass(frozen=True)
class Exercise:
    """One checked exercise: its name (the function a student writes), its checker and the course's reference."""

    name: str
    topic: str  # the checks module that holds it: "lm" or "rl"
    check: Callable
    reference: Callable


EXERCISES: dict[str, Exercise] = {}  # exercise name -> Exercise, in the order of the homework


def exercise(reference: Callable):
    """Register ``func(student_fn) -> summary`` as the checker of the exercise of the same name (unique)."""

    def register(func):
        check = _checker(func)
        if func.__name__ in EXERCISES:
            raise ValueError(f"two checkers are registered for the exercise '{func.__name__}'")
        EXERCISES[func.__name__] = Exercise(func.__name__, func.__module__.rsplit(".", 1)[-1], check, reference)
        return check

    return register


def _checker(func):
    """Turn ``func(student_fn) -> summary`` into a checker that prints, returns True/False or raises CheckFailed."""

    @functools.wraps(func)
    def check(fn) -> bool:
        name = _name(fn)
        try:
            summary = func(fn)
        except _NotImplemented as missing:
            _remember(fn, "missing")
            print(f"\u23f3 {missing} - fill in the cell above, run it, then run this check again.")
            return False
        except CheckFailed as failure:
            _remember(fn, "failed")
            raise CheckFailed(f"{name}: {failure}") from None
        _remember(fn, "passed")
        print(f"\u2705 {name}: all checks passed ({summary}).")
        return True

    return check


def _remember(fn, status: str) -> None:
    """Record a check's outcome for :func:`implemented`."""
    try:
        _STATUS[fn] = status
    except TypeError:  # not weak-referenceable (e.g. a functools.partial); nothing to remember
        pass


def _raises_not_implemented(fn) -> bool:
    """True if the last check of ``fn`` found it unimplemented, or (never checked) its code raises NotImplementedError."""
    try:
        status = _STATUS.get(fn)
    except TypeError:
        status = None
    if status is not None:
        return status == "missing"
    try:
        return "raise NotImplementedError" in inspect.getsource(fn)
    except (OSError, TypeError):
        return False


def implemented(*fns) -> bool:
    """True when every function is implemented; otherwise print which are missing (guard for experiment cells)."""
    missing = [_name(fn) for fn in fns if _raises_not_implemented(fn)]
    if missing:
        print(f"\u23f3 Skipping this experiment: implement {', '.join(missing)} first, then run this cell again.")
        return False
    return True


# --------------------------------------------------------------------------- helpers
def _fmt(shape) -> str:
    """A shape as (a, b, c)."""
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _expect_tensor(out, what: str, shape=None) -> torch.Tensor:
    """Fail with a sentence unless ``out`` is a floating tensor of the given shape without NaN."""
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, but it is a {type(out).__name__}.")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise CheckFailed(f"{what} has shape {_fmt(out.shape)} but should have shape {_fmt(shape)}.")
    return out


def _first_bad(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True entry of a boolean tensor."""
    return tuple(int(i) for i in mask.nonzero()[0])


@functools.lru_cache(maxsize=4)
def _random_lm(seed: int = 0, vocab: int = 50):
    """A tiny randomly initialised GPT-2 built in memory (no download, no cache), in eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # deterministic in train mode too
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger output weights make the next-token distributions peaked and beams differ
        model.lm_head.weight.mul_(8.0)
    return model


def _generate(model, input_ids: torch.Tensor, max_new_tokens: int, num_beams: int = 1) -> torch.Tensor:
    """transformers' ``generate`` with no end-of-sequence token, so that exactly max_new_tokens are produced."""
    from transformers import GenerationConfig

    beam_options = dict(length_penalty=0.0, early_stopping=True) if num_beams > 1 else {}
    config = GenerationConfig(do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens,
                              eos_token_id=None, pad_token_id=0, **beam_options)
    with torch.no_grad():
        return model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
