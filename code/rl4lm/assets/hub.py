"""The Hugging Face hub as the ``full`` profile sees it: is it reachable, offline mode for one call, errors.

The endpoint is ``$HF_ENDPOINT`` when set (a mirror), else ``https://huggingface.co``. A failed probe
is not remembered: a notebook that lost its connection for a moment loads normally once it is back.
"""
from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlparse

from ..errors import ProfileError
from .roles import Role

DEFAULT_ENDPOINT = "https://huggingface.co"
_REACHABLE: set[tuple[str, int]] = set()  # endpoints that answered once in this process


def offline_mode() -> bool:
    """True when ``$HF_HUB_OFFLINE`` asks the hub libraries never to connect."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def endpoint_address() -> tuple[str, int]:
    """(host, port) of ``$HF_ENDPOINT`` or of the public hub."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    port = url.port or (80 if url.scheme == "http" else 443)
    return url.hostname or "huggingface.co", port


def hub_reachable(timeout: float = 3.0) -> bool:
    """True unless offline mode is set or the hub endpoint refuses a TCP connection within ``timeout`` s.

    Success is remembered for the process (one probe per notebook); failure is not, so it is tried again.
    """
    if offline_mode():
        return False
    address = endpoint_address()
    if address in _REACHABLE:
        return True
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    _REACHABLE.add(address)
    return True


def hub_error(role: Role, error: Exception) -> ProfileError:
    """Turn a hub failure into one sentence that names the tiny profile."""
    return ProfileError(
        f"Could not load '{role.hub_repo}' from the Hugging Face hub ({type(error).__name__}); "
        "check your internet connection, or run offline with RL4LM_PROFILE=tiny."
    )


@contextlib.contextmanager
def offline_for_this_call():
    """Switch the hub libraries to offline mode for one call, so that an unreachable hub fails at once."""
    import datasets
    import huggingface_hub.constants as constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved
