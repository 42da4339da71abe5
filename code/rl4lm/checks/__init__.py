"""Exercise checkers: ``rl4lm.checks.<exercise>(your_function)`` for every homework exercise.

Each checker compares the student's function with the field's reference (torch, transformers,
gymnasium) or with a property, on several seeds and edge cases (length 1, batch 1, padding, ties, bin edges).
On success it prints one line and returns True. On failure it raises :class:`CheckFailed` whose
message is one sentence saying what is wrong and what to try; IPython shows only that sentence.
An exercise that still raises ``NotImplementedError`` prints "<name>: not implemented yet" and
returns False, so that a notebook runs top to bottom before it is filled in; :func:`implemented` guards an
experiment by the last check's outcome or, for a function never checked, by calling it on the checker's
smallest input. A checker refuses the course's own reference (and a function that calls it): the checks
are there for the student's code.

Checkers live by topic (:mod:`.lm`, :mod:`.rl`, :mod:`.pg`, :mod:`.rlhf`, and :mod:`.analysis` for the labs of sessions 6-7);
``EXERCISES`` is the one registry of them (name, topic, checker, the course's reference), from which the tests take the list
of checkers.
"""
from __future__ import annotations

from . import analysis, lm, pg, rl, rlhf  # noqa: F401  (importing registers every checker)
from ._core import EXERCISES, CheckFailed, Exercise, implemented

globals().update({name: ex.check for name, ex in EXERCISES.items()})

__all__ = ["CheckFailed", "EXERCISES", "Exercise", "implemented", *EXERCISES]
