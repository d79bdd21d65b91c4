"""The pure cores import no service framework, so they stay testable and reusable anywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORES = [
    "scaler.strategies",
    "scaler.configuration",
    "worker.chunking",
    "worker.configuration",
    "cli.planning",
    "scaler.samples",
    "scaler.freshness",
    "cli.keda.timing",
    "scaler.budget",
    "scaler.state",
    "cli.simulate.engine",
    "cli.simulate.ours",
    "cli.simulate.upstream",
    "api.exporter.snapshot",
]
FORBIDDEN = ["flask", "celery", "grpc", "redis", "sqlalchemy", "kombu", "prometheus_client"]


@pytest.mark.parametrize("module", CORES)
def test_core_imports_no_service_framework(module: str) -> None:
    probe = f"import sys, {module}; print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"{module} pulls in {loaded}"


def test_the_exporter_imports_no_flask() -> None:
    """The exporter publishes for a platform that has its own API: no web framework of ours."""
    probe = (
        "import sys, cli.commands.exporter, api.exporter.service; "
        "print(sorted(m for m in ('flask', 'sqlalchemy', 'celery') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"the exporter pulls in {loaded}"
