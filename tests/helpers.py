"""Helpers shared by the tests (imported as a module, never from conftest)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from rl4lm import checks
from rl4lm_book.book import ROOT, toc_documents

__all__ = ["ROOT", "toc_documents", "one_sentence", "rejects", "small_gpt2", "run_script", "student_copy", "MYST_HEADER",
           "HOMEWORK_SOURCE"]

MYST_HEADER = """\
---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {name: python3, display_name: Python 3, language: python}
---
"""
HOMEWORK_SOURCE = MYST_HEADER + """\
# Homework

```{code-cell} ipython3
:tags: [colab-setup]
print("set up")
```

```{code-cell} ipython3
def square(x):
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION
```
"""  # the smallest well-formed homework source: the set-up cell and one exercise


def one_sentence(error: Exception) -> str:
    """The error's text, checked to be a single line."""
    text = str(error)
    assert "\n" not in text, f"error is not one sentence: {text!r}"
    return text


def rejects(checker, fn, *fragments: str) -> str:
    """Run a checker that must fail; return its message after checking it names the problem."""
    with pytest.raises(checks.CheckFailed) as failure:
        checker(fn)
    message = str(failure.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message and "Traceback" not in message
    assert failure.value._render_traceback_() == [f"\u274c CheckFailed: {message}"]
    return message


def small_gpt2(vocab: int = 40, seed: int = 0, n_embd: int = 32, n_layer: int = 2):
    """A small random GPT-2 in eval mode, built in memory (no download)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=2,
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return GPT2LMHeadModel(config).eval()


def run_script(path, *args: str, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run a Python script of the repository in the tiny profile; fail with its stderr if ``check`` and it fails."""
    env = dict(os.environ, RL4LM_PROFILE="tiny")
    out = subprocess.run([sys.executable, str(ROOT / path), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr[-2000:]
    return out


def lecture_module(script: str):
    """The lecture script ``code/lectures/<script>`` imported as a module under its own name (its ``main`` is not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), ROOT / "code" / "lectures" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lecture_printed(script: str, *args: str) -> str:
    """What ``main(args)`` of the lecture script ``code/lectures/<script>`` prints, run in this process."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        lecture_module(script).main(list(args))
    return out.getvalue()


def lecture_output(script: str, *args: str) -> str:
    """What the lecture script ``code/lectures/<script>`` prints when run from the command line in the tiny profile."""
    return run_script(f"code/lectures/{script}", *args).stdout


def lecture_refusal(script: str, *args: str, env: dict | None = None) -> str:
    """Run a lecture script (code/lectures) that must refuse its arguments; return its one-line error on stderr.

    Fails unless the exit status is non-zero and stderr is exactly one line with no traceback.
    """
    out = run_script(f"code/lectures/{script}", *args, check=False) if env is None else subprocess.run(
        [sys.executable, str(ROOT / "code" / "lectures" / script), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stdout[-500:]
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    return out.stderr


def student_copy(reference):
    """The course's reference as a student would hand it in: its source run again as a notebook cell (module __main__).

    The copy computes exactly what the reference does, but it is not the package's function, so the checkers accept it.
    """
    import inspect
    import textwrap

    module = sys.modules[inspect.unwrap(reference).__module__]
    namespace = dict(vars(module), __name__="__main__")
    source = textwrap.dedent(inspect.getsource(reference))
    exec(compile(source, f"<cell: {reference.__name__}>", "exec"), namespace)  # noqa: S102 - the course's own code
    return namespace[reference.__name__]
