"""The import contract: imports point down, never up.

    rtml (the command: cli, run, stack, local dev infra)     composition root; nothing imports it
      gateway   workers   drift   importers                  processes and offline tooling
        runtime                                              shared runtime (settings, Kafka layer, ...)
          schemas                                            every message; imports nothing of ours

A module may import its own package and the packages listed for it below; lazy imports inside
functions count too (a cycle through a function is still a cycle). ``rtml_client`` is the separate
client distribution, which the server depends on (its statistics module and its CLI commands).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

FIRST_PARTY = {"rtml", "runtime", "importers", "gateway", "workers", "drift", "schemas", "rtml_client"}

ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "runtime": {"schemas"},
    "gateway": {"runtime", "schemas"},
    "workers": {"runtime", "schemas"},
    "drift": {"runtime", "schemas", "rtml_client"},
    "importers": {"runtime", "schemas", "rtml_client"},
    "rtml": FIRST_PARTY,
    "rtml_client": set(),
}

PACKAGE_DIRS = {name: REPO_ROOT / name for name in ALLOWED} | {
    "rtml_client": REPO_ROOT / "client" / "rtml_client"
}

# The gateway answers cache hits and publishes requests: it must not load numpy, onnxruntime or the
# drift statistics at start-up (measured: 95 -> 59 MB of RSS when it stopped doing so).
GATEWAY_FORBIDDEN = {"numpy", "onnxruntime", "onnx", "sklearn", "faust", "rtml_client"}


def _python_files(package: str) -> Iterator[Path]:
    yield from sorted(PACKAGE_DIRS[package].rglob("*.py"))


def _imports(path: Path, module_level_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _display(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name


def _violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    found = []
    for path in _python_files(package):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in FIRST_PARTY and top not in allowed:
                found.append(f"{_display(path)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    assert _violations(package) == []


def test_nothing_imports_the_command() -> None:
    offenders = [
        violation
        for package in ALLOWED
        if package != "rtml"
        for violation in _violations(package)
        if violation.split(" imports ")[1].split(".")[0] == "rtml"
    ]
    assert offenders == []


def test_contract_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a runtime module importing a process is reported."""
    (tmp_path / "bad.py").write_text("def f():\n    from gateway.app import create_app\n")
    monkeypatch.setitem(PACKAGE_DIRS, "runtime", tmp_path)
    assert _violations("runtime") == ["bad.py:2 imports gateway.app"]


def _module_path(module: str) -> Path | None:
    parts = module.split(".")
    base = PACKAGE_DIRS.get(parts[0])
    if base is None:
        return None
    candidate = base.joinpath(*parts[1:])
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if path.is_file():
            return path
    return None


def _start_up_imports(entry: str) -> set[str]:
    """Every module imported at module level, transitively, when ``entry`` is imported."""
    seen: set[str] = set()
    stack = [entry]
    while stack:
        module = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        parents = module.split(".")
        stack.extend(".".join(parents[:i]) for i in range(1, len(parents)))
        path = _module_path(module)
        if path is None:
            continue
        stack.extend(name for _line, name in _imports(path, module_level_only=True))
    return seen


def test_gateway_start_up_loads_no_numpy_or_statistics() -> None:
    loaded = {name.split(".")[0] for name in _start_up_imports("gateway.main")}
    assert loaded & GATEWAY_FORBIDDEN == set()
