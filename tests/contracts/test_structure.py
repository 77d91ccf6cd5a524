"""Contracts on the tree's shape: short functions upstairs, steps that declare tasks, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 60
UPSTAIRS = ("flows", "tasks/services", "tasks/steps")
PACKAGES = ("flows", "tasks", "models")


def _modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_LINES
    ]


def _tasks(path: Path) -> list[str]:
    """Names of the functions ``path`` declares as Prefect tasks (``@task`` or ``@task(...)``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name) and target.id == "task":
                    names.append(node.name)
    return names


@pytest.mark.parametrize("folder", UPSTAIRS)
def test_no_function_upstairs_is_longer_than_sixty_lines(folder):
    long = [found for path in _modules(folder) for found in _long_functions(path)]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_the_checks_see_what_they_look_for(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    (tmp_path / "fits.py").write_text(f"def fits():\n{body}\n")
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}\n    return 0\n")
    assert _long_functions(tmp_path / "fits.py") == []
    assert _long_functions(tmp_path / "long.py") == ["long.py:1 too_long (61 lines)"]
    (tmp_path / "steps.py").write_text("@task(name='a')\ndef a(): ...\n@task\ndef b(): ...\n")
    assert _tasks(tmp_path / "steps.py") == ["a", "b"]


def test_every_steps_module_declares_tasks_and_none_is_named_select():
    modules = [p for p in _modules("tasks/steps") if p.name != "__init__.py"]
    assert modules
    empty = [str(p.relative_to(REPO)) for p in modules if not _tasks(p)]
    assert not empty, f"steps modules without a @task: {empty}; move their code to services"
    names = [name for p in modules for name in _tasks(p)]
    assert "select" not in names


def test_services_declare_no_tasks_and_import_no_prefect():
    for path in _modules("tasks/services"):
        text = path.read_text(encoding="utf-8")
        assert not _tasks(path), path
        assert not re.search(r"^\s*(from|import) prefect\b", text, re.M), path


def test_no_import_cycle_between_the_projects_modules():
    graph = grimp.build_graph(*PACKAGES)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported == importer or imported.split(".")[0] not in PACKAGES:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join([importer, *back]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))
