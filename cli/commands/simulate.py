"""The `simulate` subcommand: traces and variants from YAML/JSON files, results as tables, JSON
and a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from cli.base import UsageError, validation_reasons
from cli.simulate.engine import Result, Simulation
from cli.simulate.ours import KedaScaling
from cli.simulate.plot import write_plot
from cli.simulate.report import as_json, print_results
from cli.simulate.trace import Trace, merged
from cli.simulate.upstream import UpstreamScaling
from cli.simulate.workload import analyses_of


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate what a configuration would do to a workload trace",
        description="Play workload traces (YAML or JSON, see docs/simulate.md) through the "
        "scaling strategies, chunking, fleet budget and KEDA timing, and report per model the "
        "makespan, queue wait, worker-seconds and peak workers. The first file is a trace; each "
        "further file is another trace (it has `analyses`) or a variant laid over the first.",
    )
    parser.add_argument("trace", type=Path, help="the workload trace")
    parser.add_argument(
        "more", type=Path, nargs="*", metavar="FILE", help="more traces, or variants of the first"
    )
    parser.add_argument(
        "--upstream",
        action="store_true",
        help="also run each under the upstream worker-controller's rules",
    )
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write a plot of every run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    traces = load_traces(args.trace, args.more)
    results: list[Result] = []
    for trace in traces:
        results.append(Simulation(trace, KedaScaling(trace), record=bool(args.plot)).run())
        if args.upstream:
            results.append(Simulation(trace, UpstreamScaling(trace), record=bool(args.plot)).run())
    if args.plot:
        try:
            write_plot(results, args.plot)
        except OSError as exc:
            raise UsageError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
    if args.json:
        console.print_json(json.dumps(as_json(results)))
    else:
        print_results(console, results)
        if args.plot:
            console.print(f"plot: {args.plot}", highlight=False)
    return 0


def load_traces(first: Path, more: list[Path]) -> list[Trace]:
    """The first trace, then each further file as a trace or as a variant of the first."""
    base = _read(first)
    traces = [_trace(base, first)]
    for path in more:
        data = _read(path)
        if "analyses" not in data:
            data = merged(base, {**data, "name": data.get("name", path.stem)})
        traces.append(_trace(data, path))
    return traces


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} must hold a mapping (models, analyses, ...), not {type(data).__name__}"
        )
    return data


def _trace(data: dict[str, Any], path: Path) -> Trace:
    try:
        trace = Trace.model_validate({"name": path.stem, **data})
        analyses_of(trace)  # chunk counts against given chunk durations
        return trace
    except ValidationError as exc:
        raise UsageError(f"invalid trace {path}: {validation_reasons(exc)}") from None
    except ValueError as exc:  # a chunking or timing rule the models refuse
        raise UsageError(f"invalid trace {path}: {exc}") from None
