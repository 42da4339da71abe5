"""Facts about the book read from its own files: where it is, its repository URL, its table of contents."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository (this package is installed editable from code/book)


def _yaml(path: Path):
    """Parse a YAML file."""
    import yaml

    return yaml.safe_load(path.read_text())


def repository_url(root: Path = ROOT) -> str:
    """The repository URL, from ``_config.yml`` (its only home)."""
    return _yaml(root / "_config.yml")["repository"]["url"]


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
