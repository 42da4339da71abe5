"""The course's one-sentence errors: a set-up problem is explained, never dumped as a traceback."""
from __future__ import annotations


class ProfileError(RuntimeError):
    """A set-up problem (profile, cache, role, hub) explained in one sentence."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a long traceback
        return [f"ProfileError: {self}"]
