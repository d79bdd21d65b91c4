"""The layout's rules, checked on the source: who may import whom, and what a worker loads.

- `scaler/` is the KEDA external scaler: it imports `protos` and nothing of `api/`, `worker/` or
  the command line.
- The services (`api/`, `worker/`, `scaler/`) never import the command line (`cli/`).
- A worker runs without Flask: what it shares with the API (`api/store/`) imports no web
  framework.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN_IMPORTS = {
    "scaler": {"api", "worker", "cli"},
    "api": {"cli"},
    "worker": {"cli"},
}
# What the worker command loads to run a worker: its settings, the Celery app and its tasks.
WORKER_ENTRY = [
    "cli.commands.worker",
    "worker.tasks",
    "worker.runtime",
    "worker.presence",
    "worker.steps",
    "worker.records",
    "worker.pod_deletion_cost",
]
WEB_FRAMEWORK = ["flask", "flask_openapi3", "werkzeug", "alembic", "waitress"]


def imported_packages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in the file, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_a_service_imports_only_what_it_may(package: str) -> None:
    forbidden = FORBIDDEN_IMPORTS[package]
    found = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / package).rglob("*.py"))
        for line, name in imported_packages(path)
        if name in forbidden
    ]
    assert found == [], "\n".join(found)


def test_the_checker_sees_nested_imports(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text("import os\n\ndef f():\n    from cli.base import UsageError\n")
    assert (4, "cli") in set(imported_packages(source))


def test_a_worker_loads_no_web_framework() -> None:
    probe = (
        f"import sys, importlib; [importlib.import_module(m) for m in {WORKER_ENTRY!r}]; "
        f"print(sorted(m for m in {WEB_FRAMEWORK!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    assert loaded == "[]", f"a worker loads {loaded}"
