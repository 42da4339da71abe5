"""The package's shape: what a student installs, no import cycles, one version, one role table."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import rl4lm
from helpers import ROOT
from rl4lm.assets import roles

PACKAGE = Path(rl4lm.__file__).parent


def module_name(path: Path) -> str:
    """Dotted name of a module file of rl4lm."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """rl4lm modules that a file imports anywhere (top level or inside functions), resolved to module names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("rl4lm")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("rl4lm"):
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def test_no_import_cycles_inside_the_package():
    graph = {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}
    # a module's package __init__ is not an edge back (importing rl4lm.lm.sft runs rl4lm.lm, which imports nothing)
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_student_wheel_holds_the_course_package_only(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("rl4lm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert "rl4lm/profiles.py" in modules and "rl4lm/checks/lm.py" in modules and "rl4lm/assets/tiny.py" in modules
    assert not [n for n in modules if not n.startswith("rl4lm/")], "only rl4lm ships to students"
    for module in modules:  # no module a student installs imports the book's tooling or its dependencies
        text = zipfile.ZipFile(wheel).read(module).decode()
        assert not re.search(r"^\s*(import|from)\s+(rl4lm_book|sphinx|nbgrader|jupyter_book|nbclient)\b", text, re.M), module


def test_one_version_everywhere():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{rl4lm.__version__}"' in pyproject
    assert f'version = "{rl4lm.__version__}"' in (ROOT / "code" / "book" / "pyproject.toml").read_text()


def test_role_table_is_the_only_place_that_names_hub_assets():
    hub_names = {role.hub_repo for role in roles.ROLES.values()}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "roles.py":
            continue
        text = path.read_text()
        assert not [name for name in hub_names if name in text], f"{path.name} names a hub asset; use a role"
    for role in roles.ROLES.values():
        assert role.kind in {"model", "dataset"} and role.purpose and role.tiny_folder
        assert (role.head in {roles.CAUSAL_LM, roles.SEQUENCE_CLASSIFIER}) == role.is_model, role.name


def test_notation_page_names_only_code_that_exists():
    import importlib

    text = (ROOT / "notation.md").read_text()
    names = set(re.findall(r"`(rl4lm(?:\.\w+)+)`", text))
    assert len(names) >= 5, names
    for name in sorted(names):
        module, _, attribute = name.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), f"notation.md names {name}, which does not exist"


def package_function_names() -> set[str]:
    """Names of the functions that rl4lm defines (public ones, in every module)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                names.add(node.name)
    return names


def test_pages_and_scripts_import_helpers_instead_of_copying_them():
    """A page or script that defines a function rl4lm already has carries a copy (homework may restate for teaching)."""
    from rl4lm_book.bench import executable_pages

    package = package_function_names()
    copies = []
    sources = [p for p in executable_pages() if "solutions" not in p.parts]
    sources += sorted((ROOT / "code" / "lectures").glob("*.py")) + sorted((ROOT / "code" / "labs").glob("*.py"))
    sources += sorted((ROOT / "code" / "scale").glob("*.py"))
    for path in sources:
        for name in re.findall(r"^\s*def (\w+)\(", path.read_text(), flags=re.M):
            if name in package and name != "main":
                copies.append(f"{path.relative_to(ROOT)} defines {name}")
    assert not copies, "import these from rl4lm instead:\n" + "\n".join(copies)
