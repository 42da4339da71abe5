"""The folder where tiny assets live, and the rule that only building needs write access.

``RL4LM_CACHE`` sets it; default ``$XDG_CACHE_HOME/rl4lm`` or ``~/.cache/rl4lm``. A complete build
in a read-only folder (a shared JupyterHub, a Docker image) is loaded as it is.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ProfileError

CACHE_VARIABLE = "RL4LM_CACHE"


def cache_dir() -> Path:
    """The cache folder named by ``$RL4LM_CACHE`` (or the XDG default); not created, not probed."""
    base = os.environ.get(CACHE_VARIABLE)
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rl4lm"


def writable_cache_dir() -> Path:
    """The cache folder, created and checked to be writable (needed only to build assets)."""
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ProfileError(
            f"Cannot write to the cache folder {path} ({error.strerror}) to build the tiny assets; "
            f"set ${CACHE_VARIABLE} to a folder you can write to."
        ) from None
    return path
