"""`oasis-autoscaler demo`: the stack with the demo analysis, stopped once it is done."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from api.store.statuses import LOSSES
from cli.local.run import DemoThread, add_stack_flags, running_stack, watch


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the stack with a demo analysis, and stop when it is done",
        description="Start the stack as `up` does, register the built-in demo model, upload a "
        "portfolio and run an analysis through the platform's own client; watch the workers "
        "rise with the chunks and fall back to zero; then stop everything.",
    )
    add_stack_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    with running_stack(args, console) as (stack, stopping):
        demo = DemoThread(stack, args.demo_locations, console)
        status = watch(stack, stopping, console, until=demo.finished_and_idle, demo=demo)
        if demo.error:
            console.print(f"[red]demo failed:[/] {demo.error}", highlight=False, soft_wrap=True)
            return 1
        if status == 0:
            console.print(
                f"demo analysis {demo.analysis} ended {demo.status}; the outputs are in "
                f"{stack.data_dir / 'analyses' / str(demo.analysis)} and at "
                f"{stack.api_url}/v2/analyses/{demo.analysis}/output_file/",
                highlight=False,
                soft_wrap=True,
            )
        return status if demo.status == LOSSES.done else 1
