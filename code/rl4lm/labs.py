"""What every single-file lab in ``code/labs`` shares: arguments from a dataclass, metric lines, one final JSON line.

A lab (CleanRL style) declares its arguments as a dataclass, parses them with :func:`parse_args`,
prints named metrics with :func:`log` while it trains and ends with :func:`finish`, whose JSON line
is what tests, benchmarks and instructors read.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing


def parse_args(cls, argv: list[str] | None = None, description: str | None = None):
    """An instance of the dataclass ``cls`` from the command line: one ``--flag`` per field, its comment as help."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
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
