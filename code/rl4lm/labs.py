"""What the runnable scripts share (labs in ``code/labs``, lecture scripts in ``code/lectures``).

A command line whose every mistake is one line on stderr, never a traceback (:class:`Parser`, :func:`run_main`).
A lab (CleanRL style) declares its arguments as a dataclass, parses them with :func:`parse_args`,
prints named metrics with :func:`log` while it trains and ends with :func:`finish`, whose JSON line
is what tests, benchmarks and instructors read.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from .errors import ProfileError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The script's docstring as written (its usage examples), and each option's default after its help text."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad option or value is one line (argparse prints the usage first) and exit status 2."""

    def __init__(self, description: str | None = None, show_defaults: bool = True):
        formatter = HelpFormatter if show_defaults else argparse.RawDescriptionHelpFormatter
        super().__init__(description=description, formatter_class=formatter)

    def error(self, message: str):
        """Print ``<script>: error: <message>; see --help`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def run_main(main) -> None:
    """Call ``main()``; a set-up problem (rl4lm's ProfileError) becomes one line on stderr and exit status 1."""
    try:
        main()
    except ProfileError as error:
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")


def start_lecture(seed: int) -> str:
    """Begin a lecture script's run: print the profile, seed torch with ``seed``, return the device ("cuda" if there is a GPU)."""
    import torch

    from . import profiles

    profiles.describe_profile()
    torch.manual_seed(seed)
    return "cuda" if torch.cuda.is_available() else "cpu"


def release_memory(device: str) -> None:
    """Hand back the memory of the models just dropped (``del model``) before the next one loads: one model at a time on a GPU.

    A full garbage collection frees a model caught in a reference cycle; on ``cuda`` the freed blocks also go back
    from torch's cache to the device, so that a T4 holds one OLMo 2 1B stage after another.
    """
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def context_length(model) -> int | None:
    """How many positions the model can attend to (GPT-2: n_positions), or None if its config does not say."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def parse_args(cls, argv: list[str] | None = None, description: str | None = None):
    """An instance of the dataclass ``cls`` from the command line: one ``--flag`` per field, its comment as help."""
    parser = Parser(description=description or cls.__doc__, show_defaults=False)  # the help texts say the defaults
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)  # int | None -> int
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            shown = "the profile's" if field.default is None else field.default
            parser.add_argument(flag, type=base, default=field.default, help=f"{help_text} (default: {shown})")
    return cls(**vars(parser.parse_args(argv)))


def arg(default, help: str):  # noqa: A002 - the argparse word
    """A dataclass field with a default and a help text for :func:`parse_args`."""
    return dataclasses.field(default=default, metadata={"help": help})


def log(step: int, **metrics: float) -> None:
    """One line of named metrics, e.g. ``step 50  loss 1.234  exact_match 0.410``."""
    print(f"step {step:>5d}  " + "  ".join(f"{name} {value:.4g}" for name, value in metrics.items()), flush=True)


def finish(**results) -> dict:
    """Print the lab's results as its last line, one JSON object, and return them."""
    print(json.dumps(results), flush=True)
    return results
