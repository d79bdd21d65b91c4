"""`oasis-autoscaler subtasks`: an analysis's sub-tasks from the API, as a table and a chart.

The only I/O of the command lives here: settings, HTTP to the API, the output file. What the
sub-tasks mean is worked out by worker/subtask_timeline.py; the chart is drawn by worker/gantt.py.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from worker.subtask_timeline import (
    Span,
    SubTaskRecord,
    Timeline,
    build_timeline,
    format_seconds,
    parse_sub_tasks,
    shared_queue,
    summary_line,
)

if TYPE_CHECKING:
    # Imported where used: requests takes ~60 ms to load, which every other subcommand of the
    # one CLI would pay.
    import requests

STATUS_STYLES = {
    "COMPLETED": "green",
    "STARTED": "cyan",
    "QUEUED": "yellow",
    "PENDING": "yellow",
    "ERROR": "bold red",
    "CANCELLED": "magenta",
}


class ClientSettings(BaseSettings):
    """How to reach the API as a client: `OASIS_AUTOSCALER_*` variables, flags over them."""

    model_config = SettingsConfigDict(env_prefix="OASIS_AUTOSCALER_", extra="ignore")

    api_url: str = "http://127.0.0.1:8000"
    # The same variables the API creates its first user from, so one environment serves both.
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    request_timeout_seconds: float = Field(default=30.0, gt=0)


# Flag -> settings field.
FLAGS = {"api_url": "api_url", "username": "admin_username", "password": "admin_password"}


class SubtasksError(Exception):
    """A problem the user can fix (unreachable API, bad login, no such analysis, ...)."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "subtasks",
        help="show an analysis's sub-tasks as a table and, with --plot, a Gantt chart",
        description="Fetch an analysis's sub-tasks from the API and print them as a table with "
        "a summary. With --plot, also draw them as a Gantt chart: one row per worker process, "
        "each sub-task's queue wait and run. Settings come from OASIS_AUTOSCALER_API_URL, "
        "OASIS_AUTOSCALER_ADMIN_USERNAME and OASIS_AUTOSCALER_ADMIN_PASSWORD; these flags "
        "override them.",
    )
    parser.add_argument("analysis", type=_analysis_id, metavar="ANALYSIS", help="analysis id")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="also write the Gantt chart to this PNG"
    )
    defaults = ClientSettings.model_fields
    parser.add_argument("--api-url", metavar="URL", help=f"default {defaults['api_url'].default}")
    parser.add_argument("--username", help=f"default {defaults['admin_username'].default}")
    parser.add_argument(
        "--password",
        help="visible to other users in the process list: prefer OASIS_AUTOSCALER_ADMIN_PASSWORD",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    try:
        _run(args, console)
    except SubtasksError as exc:
        # soft_wrap: a message is one line, however narrow the terminal, so it can be grepped.
        # Text: an API's answer quoted in the message may hold [brackets], which are not markup.
        message = Text.assemble(("error:", "bold red"), f" {exc}")
        Console(stderr=True).print(message, soft_wrap=True)
        return 2
    return 0


def _run(args: argparse.Namespace, console: Console) -> None:
    settings = _settings(args)
    if args.plot is not None:
        # Before the API is asked anything: a typo in the path should not cost a round trip.
        _check_writable(args.plot)
    records = fetch_sub_tasks(settings, args.analysis)
    timeline = build_timeline(records, now=datetime.now(UTC))
    print_table(console, timeline, args.analysis)
    if args.plot is not None:
        _plot(timeline, args.plot, args.analysis)
        console.print(Text(f"Gantt chart written to {args.plot}"), soft_wrap=True)


def _analysis_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"an analysis id is a whole number, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"an analysis id is at least 1, got {value}")
    return value


def _settings(args: argparse.Namespace) -> ClientSettings:
    overrides = {
        field: getattr(args, flag)
        for flag, field in FLAGS.items()
        if getattr(args, flag) is not None
    }
    try:
        settings = ClientSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SubtasksError(f"invalid settings: {problems}") from None
    return settings


def _check_writable(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise SubtasksError(f"--plot writes a PNG: give a file name ending in .png, not {path}")
    if path.is_dir():
        raise SubtasksError(f"cannot write the chart to {path}: it is a directory")
    if not path.parent.is_dir():
        raise SubtasksError(
            f"cannot write the chart to {path}: the folder {path.parent} does not exist"
        )


def _plot(timeline: Timeline, path: Path, analysis: int) -> None:
    # Imported here: matplotlib takes a while to load, and the table alone does not need it.
    from worker.gantt import draw_gantt

    try:
        draw_gantt(timeline, path, analysis=analysis)
    except OSError as exc:
        raise SubtasksError(f"cannot write the chart to {path}: {exc.strerror or exc}") from None


class ApiClient:
    """The API's token login and JSON GETs, each failure turned into a SubtasksError."""

    def __init__(self, settings: ClientSettings) -> None:
        import requests

        self.base = settings.api_url.rstrip("/")
        self.timeout = settings.request_timeout_seconds
        self.session = requests.Session()

    def login(self, username: str, password: str) -> None:
        response = self._send(
            "POST", "/access_token/", json={"username": username, "password": password}
        )
        if response.status_code == 401:
            raise SubtasksError(
                f"the API at {self.base} refused user {username!r} and the password given "
                f"(401: {_detail(response)})"
            )
        body = _json(self._expect_ok(response))
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise SubtasksError(f"the API at {self.base} answered a login without access_token")
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> requests.Response:
        response = self._send("GET", path)
        if response.status_code == 401:
            raise SubtasksError(
                f"the API at {self.base} refused the access token for GET {path} "
                f"(401: {_detail(response)})"
            )
        return response

    def get_json(self, path: str, *, missing: str) -> Any:
        """The JSON answer to GET `path`; a 404 is a SubtasksError saying `missing`."""
        response = self.get(path)
        if response.status_code == 404:
            raise SubtasksError(missing)
        return _json(self._expect_ok(response))

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        url = self.base + path
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise SubtasksError(
                f"the API at {self.base} did not answer {method} {path} within {self.timeout:g} s"
            ) from None
        except requests.ConnectionError as exc:
            raise SubtasksError(
                f"cannot reach the API at {self.base} ({_reason(exc)}): is it running there? "
                "Set --api-url or OASIS_AUTOSCALER_API_URL"
            ) from None
        except requests.RequestException as exc:  # a malformed URL, mostly
            raise SubtasksError(f"cannot ask the API at {self.base!r}: {exc}") from None

    def _expect_ok(self, response: requests.Response) -> requests.Response:
        if not response.ok:
            request = response.request
            path = (request.path_url if request else "") or "?"
            raise SubtasksError(
                f"the API at {self.base} answered {response.status_code} to "
                f"{request.method if request else ''} {path}: {_detail(response)}"
            )
        return response

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.session.close()


def fetch_sub_tasks(settings: ClientSettings, analysis: int) -> list[SubTaskRecord]:
    """The analysis's sub-tasks; SubtasksError when there are none or the API says no."""
    if settings.admin_password is None:
        raise SubtasksError("give the API password: --password or OASIS_AUTOSCALER_ADMIN_PASSWORD")
    with ApiClient(settings) as api:
        api.login(settings.admin_username, settings.admin_password.get_secret_value())
        data = api.get_json(
            f"/v2/analyses/{analysis}/sub_task_list/",
            missing=f"analysis {analysis} not found at {api.base}",
        )
        try:
            records = parse_sub_tasks(data)
        except ValidationError as exc:
            raise SubtasksError(
                f"the API at {api.base} answered a sub-task list this command cannot read: "
                f"{_first_error(exc)}"
            ) from None
        if not records:
            raise SubtasksError(
                f"analysis {analysis} has no sub-tasks yet{_why_none(api, analysis)}"
            )
        return records


def _why_none(api: ApiClient, analysis: int) -> str:
    # Sub-tasks appear when a worker splits a stage: the analysis's status says how far it got.
    try:
        body = api.get_json(f"/v2/analyses/{analysis}/", missing="")
    except SubtasksError:  # only a better message was at stake
        return ""
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, str):
        return ""
    return (
        f" (status {status}): a worker creates them when it starts generating inputs or "
        "running losses"
    )


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SubtasksError(
            f"the API answered {response.request.method if response.request else ''} "
            f"{response.url} with something that is not JSON"
        ) from None


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return str(body)[:200]


def _reason(exc: requests.ConnectionError) -> str:
    # requests nests the socket error several layers deep; its errno text is what people need.
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{more}"


def print_table(console: Console, timeline: Timeline, analysis: int) -> None:
    queue = shared_queue(b.worker for b in timeline.bars if b.worker)
    table = Table(
        title=f"Sub-tasks of analysis {analysis}",
        title_justify="left",
        caption=f"workers: {queue}<worker>" if queue else None,
        caption_justify="left",
    )
    # Fold, never truncate, so that a narrow terminal (or a pipe: 80 columns) loses nothing.
    table.add_column("slug", overflow="fold")
    # The chart's colours in words; it also tells the two stages' `cleanup` apart.
    table.add_column("kind", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("worker", overflow="fold")
    for column in ("queue wait", "run time", "retries"):
        table.add_column(column, justify="right", no_wrap=True)
    for bar in timeline.bars:
        # Text, not str: a worker or slug holding [brackets] must not be read as rich markup.
        table.add_row(
            Text(bar.slug),
            Text(bar.kind.value),
            Text(bar.status, style=STATUS_STYLES.get(bar.status, "")),
            Text(bar.worker.removeprefix(queue) if bar.worker else "-"),
            Text(_duration(bar.wait)),
            Text(_duration(bar.run)),
            Text(str(bar.retries) if bar.retries else ""),
        )
    _table_console(console, table).print(table)
    console.print(Text(summary_line(timeline.summary)), soft_wrap=True)


def _table_console(console: Console, table: Table) -> Console:
    # A terminal folds the table to fit; a pipe or a file (80 columns to rich) gets whole lines,
    # so that grep and friends see one sub-task per line.
    if console.is_terminal:
        return console
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    return Console(file=console.file, width=max(natural, console.width))


def _duration(span: Span | None) -> str:
    if span is None:
        return "-"
    # An open span has no recorded end: the real duration is at least this.
    return (">=" if span.open else "") + format_seconds(span.seconds)
