"""What the lecture scripts share: a command line whose every mistake is one line on stderr, never a traceback.

A bad option or value exits with status 2 and one line, ``<script>: error: <what is wrong>; see --help``;
a set-up problem (an unknown profile, a model that cannot be loaded) exits with status 1 and its one sentence.
:func:`context_length` tells the scripts how long a prompt and its continuation may be.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl4lm.errors import ProfileError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written (its usage examples), and each option's default after its help text."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad option or value is one line (argparse prints the usage first) and exit status 2."""

    def __init__(self, description: str):
        super().__init__(description=description, formatter_class=HelpFormatter)

    def error(self, message: str):
        """Print ``<script>: error: <message>; see --help`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def run(main) -> None:
    """Call ``main()``; a set-up problem (rl4lm's ProfileError) becomes one line on stderr and exit status 1."""
    try:
        main()
    except ProfileError as error:
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")


def context_length(model) -> int | None:
    """How many positions the model can attend to (GPT-2: n_positions), or None if its config does not say."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
