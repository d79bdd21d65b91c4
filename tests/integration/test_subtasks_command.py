"""`oasis-autoscaler subtasks` as a real process against a real API, on SQLite and PostgreSQL.

Sub-tasks are created only by workers, so the test writes them into the API's database itself,
with the API's own table (api/orm.py `SubTask`), and reads them back through the command.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from api.store.orm import SubTask
from tests.integration.conftest import PASSWORD
from tests.support.servers import api_server, free_port
from worker.stages import input_generation, losses

pytestmark = pytest.mark.integration

COMMAND = str(Path(sys.executable).with_name("oasis-autoscaler"))
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
QUEUE = "OasisLMF-PiWind-1"
W1, W2 = f"{QUEUE}@worker-a:101", f"{QUEUE}@worker-b:202"


@dataclass(frozen=True)
class Platform:
    url: str
    engine: Engine


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Platform]:
    """The API as a real process on a database this module owns, and an engine on it."""
    root = tmp_path_factory.mktemp(f"subtasks-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{root / 'api.sqlite3'}"
    else:
        database_url = _fresh_database(request.getfixturevalue("postgres_url"), "subtasks")
    with api_server(
        root / "data", database_url=database_url, redis_url=redis_url, password=PASSWORD
    ) as url:
        engine = create_engine(database_url)
        try:
            yield Platform(url, engine)
        finally:
            engine.dispose()


def _fresh_database(server_url: str, name: str) -> str:
    # Not the session's database: other modules' APIs use that one.
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def new_analysis(url: str) -> int:
    """A model, a portfolio and an analysis of them, made through the API."""
    token = requests.post(
        f"{url}/access_token/", json={"username": "admin", "password": PASSWORD}, timeout=10
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def create(path: str, body: dict[str, object]) -> int:
        response = session.post(url + path, json=body, timeout=10)
        assert response.status_code == 201, response.text
        created: int = response.json()["id"]
        return created

    model = create(
        "/v2/models/",
        {"supplier_id": f"S{uuid.uuid4().hex[:8]}", "model_id": "PiWind", "version_id": "1"},
    )
    portfolio = create("/v2/portfolios/", {"name": "portfolio"})
    return create("/v2/analyses/", {"name": "analysis", "portfolio": portfolio, "model": model})


# The names the workers give (worker/stages.py): they tell the two stages' `cleanup` apart.
NAMES = {
    stage: {spec.slug: spec.name for spec in plan.sub_tasks}
    for stage, plan in (("inputs", input_generation(2)), ("losses", losses(4)))
}
DONE, CANCELLED = "COMPLETED", "CANCELLED"
# (stage, slug, status, worker, queued, started, ended, retries): times in seconds after T0.
SUB_TASKS = [
    ("inputs", "prepare-input-generation-params", DONE, W1, 0, 0.5, 1.5, 0),
    ("inputs", "prepare-keys-file-1", DONE, W1, 0, 2, 6, 0),
    ("inputs", "prepare-keys-file-2", DONE, W2, 0, 2, 5, 0),
    ("inputs", "collect-keys", DONE, W2, 0, 6.5, 7.5, 0),
    ("inputs", "write-input-files", DONE, W2, 0, 8, 10, 0),
    ("inputs", "record-input-files", DONE, W2, 0, 10.5, 11, 0),
    ("inputs", "cleanup", DONE, W2, 0, 11.5, 12, 0),
    ("losses", "prepare-losses-generation-params", DONE, W1, 20, 20.5, 21.5, 0),
    ("losses", "prepare-losses-generation-directory", DONE, W1, 20, 22, 23, 0),
    ("losses", "generate-losses-chunk-1", DONE, W1, 20, 23.5, 33.5, 0),
    ("losses", "generate-losses-chunk-2", DONE, W2, 20, 23.5, 31.5, 0),
    ("losses", "generate-losses-chunk-3", "ERROR", W2, 20, 32, 35, 2),
    ("losses", "generate-losses-chunk-4", CANCELLED, W1, 20, 34, None, 0),
    ("losses", "generate-losses-output", CANCELLED, None, 20, None, None, 0),
    ("losses", "record-losses-files", CANCELLED, None, 20, None, None, 0),
    ("losses", "cleanup", CANCELLED, None, 20, None, None, 0),
]

A, B = "worker-a:101", "worker-b:202"
# The table's rows: slug, kind, status, worker (without the queue), queue wait, run time, retries.
TABLE = [
    ["prepare-input-generation-params", "inputs step", DONE, A, "0.5 s", "1.0 s", ""],
    ["prepare-keys-file-1", "lookup chunk", DONE, A, "2.0 s", "4.0 s", ""],
    ["prepare-keys-file-2", "lookup chunk", DONE, B, "2.0 s", "3.0 s", ""],
    ["collect-keys", "inputs step", DONE, B, "6.5 s", "1.0 s", ""],
    ["write-input-files", "inputs step", DONE, B, "8.0 s", "2.0 s", ""],
    ["record-input-files", "inputs step", DONE, B, "10.5 s", "0.5 s", ""],
    ["cleanup", "inputs step", DONE, B, "11.5 s", "0.5 s", ""],
    ["prepare-losses-generation-params", "losses step", DONE, A, "0.5 s", "1.0 s", ""],
    ["prepare-losses-generation-directory", "losses step", DONE, A, "2.0 s", "1.0 s", ""],
    ["generate-losses-chunk-1", "loss chunk", DONE, A, "3.5 s", "10.0 s", ""],
    ["generate-losses-chunk-2", "loss chunk", DONE, B, "3.5 s", "8.0 s", ""],
    ["generate-losses-chunk-3", "loss chunk", "ERROR", B, "12.0 s", "3.0 s", "2"],
    # Cancelled while running: no end recorded, so it ran at least until the last recorded time.
    ["generate-losses-chunk-4", "loss chunk", CANCELLED, A, "14.0 s", ">=1.0 s", ""],
    ["generate-losses-output", "losses step", CANCELLED, "-", ">=15.0 s", "-", ""],
    ["record-losses-files", "losses step", CANCELLED, "-", ">=15.0 s", "-", ""],
    ["cleanup", "losses step", CANCELLED, "-", ">=15.0 s", "-", ""],
]
SUMMARY = (
    "16 sub-tasks, 2 workers used, wall time 35.0 s, total run time 36.0 s, mean queue wait 5.9 s"
)


def insert_sub_tasks(engine: Engine, analysis: int) -> None:
    def moment(seconds: float | None) -> datetime | None:
        return None if seconds is None else T0 + timedelta(seconds=seconds)

    with Session(engine) as session, session.begin():
        for i, (stage, slug, status, worker, queue, start, end, retries) in enumerate(SUB_TASKS):
            session.add(
                SubTask(
                    analysis_id=analysis,
                    stage=stage,
                    task_id=f"task-{i}",
                    status=status,
                    queue_name=QUEUE,
                    name=NAMES[stage][slug],
                    slug=slug,
                    pending_time=moment(queue),
                    queue_time=moment(queue),
                    start_time=moment(start),
                    end_time=moment(end),
                    retry_count=retries,
                    worker=worker,
                )
            )


@pytest.fixture(scope="module")
def analysis(platform: Platform) -> int:
    """An analysis with the sub-tasks of SUB_TASKS."""
    analysis = new_analysis(platform.url)
    insert_sub_tasks(platform.engine, analysis)
    return analysis


def subtasks(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a real process; OASIS_AUTOSCALER_* only as given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OASIS_AUTOSCALER_")}
    return subprocess.run(
        [COMMAND, "subtasks", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the table: one line each (the output is a pipe, so nothing folds)."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_table_and_chart(platform: Platform, analysis: int, tmp_path: Path) -> None:
    chart = tmp_path / "gantt.png"
    result = subtasks(
        str(analysis),
        "--api-url",
        platform.url,
        "--plot",
        str(chart),
        env={"OASIS_AUTOSCALER_ADMIN_PASSWORD": PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Sub-tasks of analysis {analysis}" in result.stdout
    assert table_rows(result.stdout) == TABLE
    assert [line.rstrip() for line in result.stdout.splitlines()[-3:]] == [
        f"workers: {QUEUE}@<worker>",
        SUMMARY,
        f"Gantt chart written to {chart}",
    ]
    # Rows: the two workers and CANCELLED (the steps that never started).
    assert png_size(chart) == (1200, 350)


def test_flags_override_the_environment_and_no_plot_means_only_the_table(
    platform: Platform, analysis: int, tmp_path: Path
) -> None:
    result = subtasks(
        str(analysis),
        "--api-url",
        platform.url,
        "--username",
        "admin",
        "--password",
        PASSWORD,
        env={
            "OASIS_AUTOSCALER_API_URL": f"http://127.0.0.1:{free_port()}",
            "OASIS_AUTOSCALER_ADMIN_USERNAME": "nobody",
            "OASIS_AUTOSCALER_ADMIN_PASSWORD": "wrong",
        },
    )
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == TABLE
    assert result.stdout.splitlines()[-1] == SUMMARY
    assert "Gantt" not in result.stdout


def test_settings_from_the_environment(platform: Platform, analysis: int) -> None:
    result = subtasks(
        str(analysis),
        env={
            "OASIS_AUTOSCALER_API_URL": platform.url,
            "OASIS_AUTOSCALER_ADMIN_USERNAME": "admin",
            "OASIS_AUTOSCALER_ADMIN_PASSWORD": PASSWORD,
        },
    )
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == TABLE


# (id, arguments after the analysis id; {url}, {tmp} filled in, the analysis to ask for, what
# the message says). `analysis` is "ours" (with sub-tasks), "empty" (none yet) or an id.
ERRORS = [
    ("API unreachable", ["--api-url", "http://127.0.0.1:{port}"], "ours", "cannot reach the API"),
    ("wrong password", ["--password", "wrong"], "ours", "refused user 'admin' and the password"),
    ("unknown user", ["--username", "nobody"], "ours", "refused user 'nobody'"),
    ("analysis not found", [], "999999", "analysis 999999 not found at {url}"),
    ("no sub-tasks yet", [], "empty", "has no sub-tasks yet (status NEW)"),
    ("output folder missing", ["--plot", "{tmp}/no/g.png"], "ours", "folder {tmp}/no does not"),
    ("output is a folder", ["--plot", "{tmp}/folder.png"], "ours", "it is a directory"),
    ("output not a PNG", ["--plot", "{tmp}/gantt.svg"], "ours", "a file name ending in .png"),
    # /sys refuses new files even to root: the folder exists, the write fails.
    ("output not writable", ["--plot", "/sys/g.png"], "ours", "to /sys/g.png: Permission denied"),
]


@pytest.mark.parametrize(
    ("args", "which", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_the_problem(
    platform: Platform,
    analysis: int,
    tmp_path: Path,
    args: list[str],
    which: str,
    message: str,
) -> None:
    (tmp_path / "folder.png").mkdir()
    fill = {"url": platform.url, "tmp": str(tmp_path), "port": str(free_port())}
    target = {"ours": analysis, "empty": new_analysis(platform.url)}.get(which, which)
    result = subtasks(
        str(target),
        "--api-url",
        platform.url,
        *(a.format(**fill) for a in args),
        env={"OASIS_AUTOSCALER_ADMIN_PASSWORD": PASSWORD},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert message.format(**fill) in result.stderr
    assert not (tmp_path / "gantt.png").exists()


def test_no_password_anywhere(platform: Platform, analysis: int) -> None:
    result = subtasks(str(analysis), "--api-url", platform.url)
    assert result.returncode == 2
    assert result.stderr == (
        "error: give the API password: --password or OASIS_AUTOSCALER_ADMIN_PASSWORD\n"
    )
