"""`oasis-autoscaler api`: serve the REST API."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.base import add_setting_flags, settings_from

FLAGS = {"host": str, "port": int, "data_dir": Path, "database_url": str, "redis_url": str}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve the OasisPlatform v2 REST API",
        description="Serve the REST API. Settings come from OASIS_AUTOSCALER_* environment "
        "variables; these flags override them.",
    )
    add_setting_flags(parser, FLAGS)
    parser.add_argument("--threads", type=int, default=8, help="request threads (waitress)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    from waitress import serve

    from api.app import create_app
    from api.settings import ApiSettings

    settings = settings_from(ApiSettings, args, FLAGS)
    app = create_app(settings)
    console.print(f"API listening on http://{settings.host}:{settings.port}/", highlight=False)
    serve(app, host=settings.host, port=settings.port, threads=args.threads, ident=None)
    return 0
