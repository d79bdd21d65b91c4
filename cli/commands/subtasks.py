"""`oasis-autoscaler subtasks`: an analysis's sub-tasks from the API, as a table and a chart.

The command's I/O lives here and in cli/api_client.py: settings, HTTP to the API, the output file.
What the sub-tasks mean is worked out by cli/subtasks/timeline.py; cli/subtasks/gantt.py draws.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from cli.api_client import ApiClient, ClientSettings
from cli.base import CommandError, validation_reasons
from cli.subtasks.timeline import (
    Span,
    SubTaskRecord,
    Timeline,
    build_timeline,
    format_seconds,
    parse_sub_tasks,
    shared_queue,
    summary_line,
)

STATUS_STYLES = {
    "COMPLETED": "green",
    "STARTED": "cyan",
    "QUEUED": "yellow",
    "PENDING": "yellow",
    "ERROR": "bold red",
    "CANCELLED": "magenta",
}


# Flag -> settings field.
FLAGS = {"api_url": "api_url", "username": "admin_username", "password": "admin_password"}


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
    return 0


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
        return ClientSettings(**overrides)
    except ValidationError as exc:
        raise CommandError(f"invalid settings: {validation_reasons(exc)}") from None


def _check_writable(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise CommandError(f"--plot writes a PNG: give a file name ending in .png, not {path}")
    if path.is_dir():
        raise CommandError(f"cannot write the chart to {path}: it is a directory")
    if not path.parent.is_dir():
        raise CommandError(
            f"cannot write the chart to {path}: the folder {path.parent} does not exist"
        )


def _plot(timeline: Timeline, path: Path, analysis: int) -> None:
    # Imported here: matplotlib takes a while to load, and the table alone does not need it.
    from cli.subtasks.gantt import draw_gantt

    try:
        draw_gantt(timeline, path, analysis=analysis)
    except OSError as exc:
        raise CommandError(f"cannot write the chart to {path}: {exc.strerror or exc}") from None


def fetch_sub_tasks(settings: ClientSettings, analysis: int) -> list[SubTaskRecord]:
    """The analysis's sub-tasks; CommandError when there are none or the API says no."""
    if settings.admin_password is None:
        raise CommandError("give the API password: --password or OASIS_AUTOSCALER_ADMIN_PASSWORD")
    with ApiClient(settings) as api:
        api.login(settings.admin_username, settings.admin_password.get_secret_value())
        data = api.get_json(
            f"/v2/analyses/{analysis}/sub_task_list/",
            missing=f"analysis {analysis} not found at {api.base}",
        )
        try:
            records = parse_sub_tasks(data)
        except ValidationError as exc:
            raise CommandError(
                f"the API at {api.base} answered a sub-task list this command cannot read: "
                f"{_first_error(exc)}"
            ) from None
        if not records:
            raise CommandError(
                f"analysis {analysis} has no sub-tasks yet{_why_none(api, analysis)}"
            )
        return records


def _why_none(api: ApiClient, analysis: int) -> str:
    # Sub-tasks appear when a worker splits a stage: the analysis's status says how far it got.
    try:
        body = api.get_json(f"/v2/analyses/{analysis}/", missing="")
    except CommandError:  # only a better message was at stake
        return ""
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, str):
        return ""
    return (
        f" (status {status}): a worker creates them when it starts generating inputs or "
        "running losses"
    )


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
