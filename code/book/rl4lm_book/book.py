"""Facts about the book read from its own files: where it is, its repository URL, its release, its table of contents."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository (this package is installed editable from code/book)
VERSION_FILE = Path("code/rl4lm/__init__.py")  # the course package's ``__version__``: the release students install


class BookError(ValueError):
    """A problem with the book's own files, explained in one sentence (no traceback in IPython or on the command line)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a long traceback
        return [f"{type(self).__name__}: {self}"]


def _yaml(path: Path):
    """Parse a YAML file."""
    import yaml

    return yaml.safe_load(path.read_text())


def repository_url(root: Path = ROOT) -> str:
    """The repository URL, from ``_config.yml`` (its only home)."""
    return _yaml(root / "_config.yml")["repository"]["url"]


def package_version(root: Path = ROOT) -> str:
    """``__version__`` of the course package, read from ``code/rl4lm/__init__.py`` without importing it.

    ``pyproject.toml`` must say the same (both are bumped together at a release); if not, one sentence says so.
    """
    path = root / VERSION_FILE
    version = None
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            version = ast.literal_eval(node.value)
    if not isinstance(version, str):
        raise BookError(f"{VERSION_FILE} defines no __version__ = \"X.Y.Z\": the Colab cell installs the release tag vX.Y.Z")
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        if match and match.group(1) != version:
            raise BookError(f"pyproject.toml says version {match.group(1)} but {VERSION_FILE} says {version}: "
                            "bump both to the same version, then run `make homework`")
    return version


def release_tag(root: Path = ROOT) -> str:
    """The git tag of the current release, ``v<__version__>``: what the notebooks' Colab cell installs.

    A book folder without the course package (a throw-away test book) gets this repository's release.
    """
    return f"v{package_version(root if (Path(root) / VERSION_FILE).exists() else ROOT)}"


def toc_documents(root: Path = ROOT) -> list[str]:
    """Every document named in ``_toc.yml``, root first, without file extension."""

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                yield entry["file"]
            for key in ("parts", "chapters", "sections"):
                yield from walk(entry.get(key, []))

    toc = _yaml(root / "_toc.yml")
    return [toc["root"], *walk(toc.get("parts", []) + toc.get("chapters", []))]
