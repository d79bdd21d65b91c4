"""The `plan` subcommand: configurations from JSON files and flags, a plan printed as tables."""

from __future__ import annotations

import argparse
import json
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from cli.base import UsageError, validation_reasons
from cli.planning import Plan, make_plan
from scaler.configuration import ScalingConfiguration, ScalingStrategy
from worker.chunking import Stage, stage_rule
from worker.configuration import ChunkingConfiguration, ChunkingStrategy

M = TypeVar("M", bound=BaseModel)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show the chunks per stage and the workers each strategy asks for",
        description="Show, for a workload, the chunks each analysis stage gets and the workers "
        "each scaling strategy asks for at each stage's peak. Flags override the JSON files.",
    )
    parser.add_argument(
        "--scaling", type=Path, metavar="FILE", help="JSON of the model's scaling_configuration"
    )
    parser.add_argument(
        "--chunking",
        type=Path,
        metavar="FILE",
        help="JSON of the model's (or the analysis's) chunking_configuration",
    )
    _add_field_flags(parser, ScalingConfiguration, "scaling_configuration fields")
    _add_field_flags(parser, ChunkingConfiguration, "chunking_configuration fields")
    workload = parser.add_argument_group("workload")
    workload.add_argument("--analyses", type=int, default=1, help="analyses running at once")
    workload.add_argument("--locations", type=int, help="rows of each analysis's location file")
    workload.add_argument("--events", type=int, help="events of the selected event set")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, console: Console) -> int:
    if args.locations is None and args.events is None:
        raise UsageError("give --locations, --events or both: there is no stage to plan")
    for name in ("analyses", "locations", "events"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be at least 1, got {value}")
    scaling = _configuration(ScalingConfiguration, args.scaling, args)
    chunking = _configuration(ChunkingConfiguration, args.chunking, args)
    plan = make_plan(
        scaling, chunking, analyses=args.analyses, locations=args.locations, events=args.events
    )
    if args.json:
        console.print_json(json.dumps(plan.as_dict()))
    else:
        _print_plan(console, plan, scaling, chunking)
    return 0


def _add_field_flags(parser: argparse.ArgumentParser, model: type[BaseModel], title: str) -> None:
    group = parser.add_argument_group(title)
    for name, field in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            group.add_argument(
                flag,
                dest=name,
                choices=[m.value for m in annotation],
                help=f"default {field.default.value}",
            )
        else:
            group.add_argument(
                flag, dest=name, type=int, metavar="N", help=f"default {field.default}"
            )


def _configuration(model: type[M], path: Path | None, args: argparse.Namespace) -> M:
    data: dict[str, Any] = _read_json_object(path) if path else {}
    data.update(
        {
            name: getattr(args, name)
            for name in model.model_fields
            if getattr(args, name) is not None
        }
    )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        source = f" ({path})" if path else ""
        raise UsageError(f"invalid {model.__name__}{source}: {validation_reasons(exc)}") from None


# A loss chunk's fixed cost (bench/warm_kernel.py on 2 cores; docs/warm-kernel.md).
CHUNK_START_SECONDS = {"warm": 0.5, "cold": 6.0}


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _print_plan(
    console: Console, plan: Plan, scaling: ScalingConfiguration, chunking: ChunkingConfiguration
) -> None:
    loss = next((s for s in plan.stages if s.stage == "loss"), None)
    chunks = Table(
        title="Chunks per analysis",
        title_justify="left",
        caption=_chunk_price(loss.chunks) if loss else None,
        caption_justify="left",
    )
    for column in ("stage", "strategy", "items", "chunks", "items per chunk"):
        chunks.add_column(column, justify="left" if column in ("stage", "strategy") else "right")
    for stage in plan.stages:
        per_chunk = (
            f"{stage.smallest_chunk:,}"
            if stage.smallest_chunk == stage.largest_chunk
            else f"{stage.smallest_chunk:,}-{stage.largest_chunk:,}"
        )
        unit = "locations" if stage.stage == "lookup" else "events"
        chunks.add_row(
            stage.stage,
            _chunking_rule(chunking, stage.stage),
            f"{stage.items:,} {unit}",
            f"{stage.chunks:,}",
            per_chunk,
        )
    console.print(chunks)

    noun = "analysis" if plan.analyses == 1 else "analyses"
    workers = Table(
        title=f"Workers asked for with {plan.analyses:,} {noun} at once",
        title_justify="left",
        caption="* the model's configured strategy",
        caption_justify="left",
    )
    workers.add_column("strategy")
    workers.add_column("idle", justify="right")
    for stage in plan.stages:
        workers.add_column(f"{stage.stage} peak", justify="right")
    for row in plan.strategies:
        marker = "*" if row.configured else " "
        label = f"{marker} {row.strategy.value} ({_scaling_rule(scaling, row.strategy)})"
        workers.add_row(label, str(row.idle), *(str(row.peaks[s.stage]) for s in plan.stages))
    console.print(workers)


def _chunk_price(chunks: int) -> str:
    """What the loss chunks cost before any work (docs/warm-kernel.md has the advice)."""
    warm, cold = CHUNK_START_SECONDS["warm"], CHUNK_START_SECONDS["cold"]
    return (
        f"each loss chunk starts in ~{warm} s with the warm kernel (~{cold} s cold): "
        f"{chunks:,} chunks spend ~{chunks * warm:.0f} s of worker time starting "
        f"(~{chunks * cold:.0f} s cold); give each chunk a few seconds of work"
    )


def _chunking_rule(config: ChunkingConfiguration, stage: Stage) -> str:
    rule = stage_rule(config, stage)
    if rule.strategy is ChunkingStrategy.FIXED_CHUNKS:
        return f"{rule.strategy.value} ({rule.fixed_chunks:,})"
    return f"{rule.strategy.value} ({rule.items_per_chunk:,} per chunk, max {rule.max_chunks:,})"


def _scaling_rule(config: ScalingConfiguration, strategy: ScalingStrategy) -> str:
    cap = f"max {config.worker_count_max}"
    rule = {
        ScalingStrategy.FIXED_WORKERS: f"fixed {config.worker_count_fixed}",
        ScalingStrategy.QUEUE_LOAD: f"1 per analysis, {cap}",
        ScalingStrategy.DYNAMIC_TASKS: f"1 per {config.chunks_per_worker} chunks, {cap}",
    }[strategy]
    return rule + (f", min {config.worker_count_min}" if config.worker_count_min else "")
