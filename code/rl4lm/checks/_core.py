"""The machinery every checker shares: the ``exercise`` decorator and registry, one-sentence failures, helpers.

What a checker promises a student is described in :mod:`rl4lm.checks`. Every checker follows the same rules:

- it computes its expected values first, then calls the student's function on copies of the inputs
  (:func:`_call`), so a function that writes into its inputs cannot change what it is compared with;
- every bad output (not a tensor, wrong shape, dtype or device, NaN) becomes one sentence (:func:`_expect_tensor`);
- each known mistake has its own diagnosis; what is tested is stated in the exercise's text;
- the course's own reference (or a function that calls it) is refused: the check is for the student's code.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import io
import sys
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


class CheckFailed(AssertionError):
    """A failed check, explained in one sentence (no traceback in notebooks)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a long traceback
        return [f"\u274c CheckFailed: {self}"]


class _NotImplemented(Exception):
    """Internal: the student's function (or one it calls) raised NotImplementedError."""


_STATUS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> "passed" | "failed" | "missing"


@dataclass(frozen=True)
class Exercise:
    """One checked exercise: its name (the function a student writes), its checker, the course's reference, a probe.

    ``probe()`` returns the checker's smallest arguments: :func:`implemented` calls a function that was never
    checked on them to see whether it still raises NotImplementedError.
    """

    name: str
    topic: str  # the checks module that holds it: "lm" or "rl"
    check: Callable
    reference: Callable
    probe: Callable[[], tuple] | None = None


EXERCISES: dict[str, Exercise] = {}  # exercise name -> Exercise, in the order of the homework


class _Current:
    """The reference of the exercise being checked, and whether the first call of the student's function was watched yet."""

    reference: Callable | None = None
    watched: bool = False


_CURRENT = _Current()


def _name(fn) -> str:
    """The function's name as the student wrote it."""
    return getattr(fn, "__name__", "your function")


def _qualified(fn) -> str:
    """module.name of a package function, e.g. rl4lm.lm.attention.causal_self_attention."""
    return f"{fn.__module__}.{fn.__qualname__}"


def _code(fn):
    """The code object behind a function, through decorators such as torch.no_grad (None for builtins)."""
    return getattr(inspect.unwrap(fn), "__code__", None)


# --------------------------------------------------------------------------- calling the student's function
def _copy(value):
    """A copy of a checker's input that the student may change freely (models, optimizers and numbers are passed as they are)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {key: _copy(v) for key, v in value.items()}
    return value


def _same(a, b) -> bool:
    """True if an input equals its copy after the call (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        a, b = a.detach(), b.detach()
        return bool(((a == b) | (a.isnan() & b.isnan())).all()) if a.is_floating_point() else torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True


def _call(fn, *args, names: tuple[str | None, ...] = (), hints: dict[str, str] | None = None):
    """Call the student's function on copies of ``args``; turn any exception into one sentence.

    ``names`` names the arguments the function must leave unchanged (None: not checked); a changed one fails with
    ``hints[name]`` (a sentence, or ``hint(original, changed)`` returning one or None), the diagnosis of that known
    mistake, or else a general sentence.
    """
    copies = tuple(_copy(a) for a in args)
    out = _invoke(fn, copies)
    for name, original, changed in zip(names, args, copies):
        if name and not _same(original, changed):
            hint = (hints or {}).get(name)
            hint = hint(original, changed) if callable(hint) else hint
            raise CheckFailed(hint or f"your function changed the {name} passed to it; compute the result in a new tensor and "
                              f"leave {name} unchanged (e.g. masked_fill rather than masked_fill_, x = x * c rather than x *= c).")
    return out


def _invoke(fn, args: tuple):
    """Run fn(*args); watch the first call of each check for the course's reference; one sentence for any error."""
    reference = _CURRENT.reference
    watch = reference is not None and not _CURRENT.watched and sys.getprofile() is None  # (not under a profiler)
    target = _code(reference) if watch else None
    _CURRENT.watched = True
    seen = []
    try:
        if target is None:
            out = fn(*args)
        else:  # a thin wrapper around the reference runs the reference's code: notice it
            def profile(frame, event, arg):
                if event == "call" and frame.f_code is target:
                    seen.append(True)
            sys.setprofile(profile)
            try:
                out = fn(*args)
            finally:
                sys.setprofile(None)
    except NotImplementedError as error:
        text = str(error)
        raise _NotImplemented(text.split(" - ")[0] if "not implemented yet" in text else
                              f"{_name(fn)}: not implemented yet") from None
    except (CheckFailed, _NotImplemented):
        raise
    except Exception as error:  # the student's code crashed: say where, in one sentence
        if seen:
            raise _refusal(reference, wrapper=True) from None
        message = " ".join(str(error).split())  # one line
        raise CheckFailed(f"calling {_name(fn)} raised {type(error).__name__}: {message}".rstrip(". ")
                          + "; run it on a small example in a new cell to see the full error.") from None
    if seen:
        raise _refusal(reference, wrapper=True)
    return out


def _refusal(reference, wrapper: bool) -> CheckFailed:
    """The one friendly sentence for a student who hands in the course's own reference."""
    how = "your function calls" if wrapper else "this is"
    return CheckFailed(f"{how} the course's own {_qualified(reference)}; the check is there for your code, so write the "
                       "function yourself in the cell above without importing it from rl4lm.")


# --------------------------------------------------------------------------- registry and checker
def exercise(reference: Callable, probe: Callable[[], tuple] | None = None):
    """Register ``func(student_fn) -> summary`` as the checker of the exercise of the same name (unique)."""

    def register(func):
        if func.__name__ in EXERCISES:
            raise ValueError(f"two checkers are registered for the exercise '{func.__name__}'")
        check = _checker(func, reference)
        EXERCISES[func.__name__] = Exercise(func.__name__, func.__module__.rsplit(".", 1)[-1], check, reference, probe)
        return check

    return register


@contextlib.contextmanager
def _quietly():
    """Run a check apart from the notebook: on one torch thread, and leaving the global random streams as they were.

    The checks' tensors are tiny, so one thread is fastest; with more, threads that wait for each other on a busy
    2-core machine (Colab, a laptop running other work) made a check 10-40 times slower. Restoring torch's and
    numpy's random state keeps a notebook's numbers independent of whether, and how often, its checks ran.
    """
    threads, numpy_state = torch.get_num_threads(), np.random.get_state()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            torch.set_num_threads(threads)


def _checker(func, reference: Callable):
    """Turn ``func(student_fn) -> summary`` into a checker that prints, returns True/False or raises CheckFailed."""

    @functools.wraps(func)
    def check(fn) -> bool:
        name = _name(fn)
        _CURRENT.reference, _CURRENT.watched = reference, False
        try:
            if _code(fn) is not None and _code(fn) is _code(reference):
                raise _refusal(reference, wrapper=False)
            with _quietly():
                summary = func(fn)
        except _NotImplemented as missing:
            _remember(fn, "missing")
            print(f"\u23f3 {missing} - fill in the cell above, run it, then run this check again.")
            return False
        except CheckFailed as failure:
            _remember(fn, "failed")
            raise CheckFailed(f"{name}: {failure}") from None
        finally:
            _CURRENT.reference = None
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


def _missing(fn) -> bool:
    """True if ``fn`` still raises NotImplementedError: its last check says so or, never checked, its exercise's probe does."""
    try:
        status = _STATUS.get(fn)
    except TypeError:
        status = None
    if status is not None:
        return status == "missing"
    entry = EXERCISES.get(_name(fn))
    if entry is None or entry.probe is None:
        return False  # nothing to call it with: let the experiment show what happens
    try:
        with _quietly(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*entry.probe())
    except NotImplementedError:
        return True
    except Exception:  # implemented, but wrong: the experiment (and the check) will show it
        return False
    return False


def implemented(*fns) -> bool:
    """True when every function is implemented; otherwise print which are missing (guard for experiment cells)."""
    missing = [_name(fn) for fn in fns if _missing(fn)]
    if missing:
        print(f"\u23f3 Skipping this experiment: implement {', '.join(missing)} first, then run this cell again.")
        return False
    return True


# --------------------------------------------------------------------------- outputs
def _fmt(shape) -> str:
    """A shape as (a, b, c)."""
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _dtype_problem(out: torch.Tensor, dtype: torch.dtype) -> str:
    """One sentence about a tensor of the wrong dtype."""
    if dtype == torch.long:
        return f"has dtype {out.dtype}, but token ids are integers: return torch.int64 ids, like input_ids."
    if out.dtype == torch.bool:
        return f"is a boolean tensor; return {dtype} values, not a mask."
    if out.dtype == torch.float64:
        return f"has dtype torch.float64; return {dtype}, the dtype of the inputs (float64 usually comes from numpy: convert with .float())."
    if not out.is_floating_point():
        return f"has the integer dtype {out.dtype}, which cannot hold these values; return {dtype} (create your tensors as floats)."
    return f"has dtype {out.dtype}; return {dtype}, the dtype of the inputs."


def _expect_tensor(out, what: str, shape=None, dtype: torch.dtype | None = torch.float32, finite: str | None = "all") -> torch.Tensor:
    """Fail with one sentence unless ``out`` is a tensor of the given shape and dtype without NaN.

    ``finite``: "all" (no NaN or inf), "no-nan" (-inf allowed, e.g. removed tokens) or None (not checked).
    """
    if not isinstance(out, torch.Tensor):
        if isinstance(out, np.ndarray):
            raise CheckFailed(f"{what} is a numpy array; return a torch.Tensor (keep the computation in torch).")
        raise CheckFailed(f"{what} should be a torch.Tensor, but it is a {type(out).__name__}.")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise CheckFailed(f"{what} has shape {_fmt(out.shape)} but should have shape {_fmt(shape)}.")
    if dtype is not None and out.dtype != dtype:
        raise CheckFailed(f"{what} {_dtype_problem(out, dtype)}")
    if finite and out.is_floating_point() and out.device.type != "meta":
        values = out.detach()
        bad = values.isnan() | (values == float("inf")) | ((values == float("-inf")) if finite == "all" else False)
        if bad.any():
            index = _first_bad(bad)
            kind = "NaN" if values[index].isnan() else f"{float(values[index])}"
            raise CheckFailed(f"{what} contains {kind} at index {list(index)}; run your function on a small example and "
                              "print the intermediate tensors to see where it first appears.")
    return out


def _first_bad(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True entry of a boolean tensor (the first index if there is none)."""
    found = mask.nonzero()
    return tuple(int(i) for i in found[0]) if len(found) else (0,) * mask.dim()


# --------------------------------------------------------------------------- devices
_DEVICE_ERRORS = ("is not on the expected device", "to be on the same device", "found at least two devices")


def _to_meta(value):
    """The same input on the meta device (shapes and dtypes only): the CPU's stand-in for a GPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("meta").requires_grad_(value.requires_grad)
    if isinstance(value, torch.nn.Module):
        return _meta_model(value)
    return value


@functools.lru_cache(maxsize=4)
def _meta_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a (small) model on the meta device."""
    import copy

    return copy.deepcopy(model).to("meta")


def _check_device(fn, args: tuple, hint: str) -> None:
    """Call fn once with every tensor on the meta device; fail with ``hint`` if it mixes in tensors it made on the CPU.

    A tensor created without ``device=`` lands on the CPU; combined with an input on another device it raises on a GPU
    (Colab) and, just the same, with an input on meta, so this finds the mistake on a CPU-only machine. Meta tensors
    have no values, so code that needs them (.item(), if on a tensor) cannot run there: such errors prove nothing
    and are ignored. Only an error about devices, or an output left on the CPU, fails.
    """
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            out = fn(*(_to_meta(a) for a in args))
    except Exception as error:  # noqa: BLE001 - anything but a device error is inconclusive on meta
        if any(text in str(error) for text in _DEVICE_ERRORS):
            raise CheckFailed(hint) from None
        return
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    if any(isinstance(t, torch.Tensor) and t.device.type != "meta" for t in outputs):
        raise CheckFailed(hint)


# --------------------------------------------------------------------------- models
@functools.lru_cache(maxsize=4)
def _random_lm(seed: int = 0, vocab: int = 50, scale: float = 8.0):
    """A tiny randomly initialised GPT-2 built in memory (no download, no cache), in eval mode.

    ``scale`` multiplies the output weights: large values make next-token distributions peaked (greedy decoding
    has clear winners), values near 1 keep several continuations close (beam search and greedy disagree).
    The global random state is left as it was.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # deterministic in train mode too
                            bos_token_id=None, eos_token_id=None, pad_token_id=None)
        model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def _generate(model, input_ids: torch.Tensor, max_new_tokens: int, num_beams: int = 1) -> torch.Tensor:
    """transformers' ``generate`` with no end-of-sequence token, so that exactly max_new_tokens are produced."""
    from transformers import GenerationConfig

    beam_options = dict(length_penalty=0.0, early_stopping=True) if num_beams > 1 else {}
    config = GenerationConfig(do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens,
                              eos_token_id=None, pad_token_id=0, **beam_options)
    with torch.no_grad():
        return model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
