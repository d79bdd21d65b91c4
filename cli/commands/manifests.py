"""`oasis-autoscaler manifests model`: print a model's worker Deployment and KEDA ScaledObject."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from cli.keda.timing import (
    COOLDOWN_PERIOD_SECONDS,
    POLLING_INTERVAL_SECONDS,
    SCALE_DOWN_STABILIZATION_SECONDS,
)
from cli.manifests.generator import worker_manifests
from cli.manifests.platform import platform_specs
from cli.manifests.worker_spec import WorkerSpec, check

# Spec field -> (flag, type); the flags a spec can be printed back as, in this order.
SPEC_FLAGS: dict[str, tuple[str, Any]] = {
    "supplier": ("--supplier", str),
    "model": ("--model", str),
    "version": ("--version", str),
    "min_replicas": ("--min", int),
    "max_replicas": ("--max", int),
    "namespace": ("--namespace", str),
    "scaler_address": ("--scaler-address", str),
    "image": ("--image", str),
    "tls": ("--tls", bool),
    "tls_secret": ("--tls-secret", str),
    "grace_period_seconds": ("--grace-period-seconds", int),
    "polling_interval_seconds": ("--polling-interval-seconds", int),
    "cooldown_period_seconds": ("--cooldown-period-seconds", int),
    "scale_down_window_seconds": ("--scale-down-window-seconds", int),
    "concurrency": ("--concurrency", int),
    "model_data_dir": ("--model-data-dir", str),
    "fallback_replicas": ("--fallback-replicas", int),
    "deployment": ("--deployment", str),
    "queue_name": ("--queue", str),
}
RESOURCE_FLAGS = {
    "cpu_request": "--cpu-request",
    "cpu_limit": "--cpu-limit",
    "memory_request": "--memory-request",
    "memory_limit": "--memory-limit",
}
HELP = {
    "supplier": "the model's supplier_id, as registered",
    "model": "the model's model_id, as registered",
    "version": "the model's version_id, as registered",
    "min_replicas": "minReplicaCount: workers kept when idle (default 0)",
    "max_replicas": "maxReplicaCount: the model's cap, at least its worker_count_max (default 10)",
    "namespace": "the namespace of the base's services (default oasis)",
    "scaler_address": "the scaler's gRPC HOST:PORT (default oasis-scaler.NAMESPACE.svc:9090)",
    "image": "the oasis-autoscaler image (default oasis-autoscaler:latest)",
    "tls": "KEDA calls the scaler with TLS and a client certificate (TriggerAuthentication)",
    "tls_secret": "Secret with ca.crt, tls.crt, tls.key for --tls (default "
    "oasis-scaler-client-tls)",
    "grace_period_seconds": "a stopping worker's time to finish its chunk, at least the longest "
    "chunk (default 21600, the worker's visibility timeout)",
    "polling_interval_seconds": f"KEDA's pollingInterval (default {POLLING_INTERVAL_SECONDS})",
    "cooldown_period_seconds": "KEDA's cooldownPeriod before scaling to zero "
    f"(default {COOLDOWN_PERIOD_SECONDS})",
    "scale_down_window_seconds": "the HPA's scale-down stabilization window "
    f"(default {SCALE_DOWN_STABILIZATION_SECONDS}; docs/simulate.md says when to set one)",
    "concurrency": "chunks one worker pod runs at once (default 1)",
    "model_data_dir": "the model's data on the shared volume (default: the built-in demo model)",
    "fallback_replicas": "workers while the scaler cannot answer (default: keep those running)",
    "deployment": "scale this existing worker Deployment (an OasisPlatform's) instead of "
    "generating one: only the ScaledObject is printed, named after it",
    "queue_name": "the model's queue as the metrics name it, when not SUPPLIER-MODEL-VERSION "
    "(an OasisPlatform v2 model's: SUPPLIER-MODEL-VERSION-v2)",
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "manifests",
        help="print Kubernetes manifests (a model's workers and ScaledObject)",
        description="Print Kubernetes manifests as YAML, for `kubectl apply -f -`.",
    )
    kinds = parser.add_subparsers(dest="manifests", required=True, metavar="KIND")
    model = kinds.add_parser(
        "model",
        help="a model's worker Deployment and KEDA ScaledObject",
        description="Print a model's worker Deployment (or, with --deployment, target an "
        "existing one) and its KEDA ScaledObject (external-push "
        "trigger to the scaler, AverageValue, HPA tolerance 0), and with --tls the "
        "TriggerAuthentication with KEDA's client certificate. The shared objects (service "
        "account, data volume, secrets, scaler) come from the kustomize base in manifests/.",
    )
    for name, (flag, kind) in SPEC_FLAGS.items():
        required = name in ("supplier", "model", "version")
        if kind is bool:
            model.add_argument(flag, dest=name, action="store_true", help=HELP[name])
        else:
            model.add_argument(
                flag,
                dest=name,
                type=kind,
                required=required,
                default=None,
                metavar=_metavar(name, kind),
                help=HELP[name],
            )
    group = model.add_argument_group("each worker's resources (Kubernetes quantities)")
    for name, flag in RESOURCE_FLAGS.items():
        group.add_argument(flag, dest=name, default=None, metavar="QUANTITY")
    model.set_defaults(func=run, manifests_parser=model)
    _add_platform_parser(kinds)


# The flags `manifests platform` shares with `manifests model`: what is not the Deployment's.
PLATFORM_FLAGS = (
    "min_replicas",
    "max_replicas",
    "namespace",
    "scaler_address",
    "tls",
    "tls_secret",
    "polling_interval_seconds",
    "cooldown_period_seconds",
    "scale_down_window_seconds",
    "fallback_replicas",
)


def _add_platform_parser(kinds: Any) -> None:
    platform = kinds.add_parser(
        "platform",
        help="a ScaledObject for each worker Deployment of an existing OasisPlatform",
        description="Read `kubectl get deployments -l oasislmf/type=worker -o json` (a file, or "
        "- for stdin) and print, for each OasisPlatform worker Deployment, its ScaledObject "
        "naming the model by the platform's queue (SUPPLIER-MODEL-VERSION-v2), as `manifests "
        "model --deployment NAME --queue QUEUE` prints it. --namespace applies to Deployments "
        "that name none.",
    )
    platform.add_argument(
        "--deployments", required=True, metavar="FILE", help="kubectl's JSON list, or -"
    )
    for name in PLATFORM_FLAGS:
        flag, kind = SPEC_FLAGS[name]
        if kind is bool:
            platform.add_argument(flag, dest=name, action="store_true", help=HELP[name])
        else:
            platform.add_argument(
                flag,
                dest=name,
                type=kind,
                default=None,
                metavar=_metavar(name, kind),
                help=HELP[name],
            )
    platform.set_defaults(func=run_platform, manifests_parser=platform)


def run_platform(args: argparse.Namespace, console: Console) -> int:
    parser: argparse.ArgumentParser = args.manifests_parser
    # Unset flags are None (and --tls False): the spec's defaults hold.
    given = {
        name: value
        for name in PLATFORM_FLAGS
        if (value := getattr(args, name)) is not None and value is not False
    }
    template = WorkerSpec("supplier", "model", "1", **given)
    try:
        text = sys.stdin.read() if args.deployments == "-" else Path(args.deployments).read_text()
        specs, skipped = platform_specs(json.loads(text), template)
    except (OSError, ValueError) as error:
        parser.error(f"--deployments: {error}")
    problems = [(spec, problem) for spec in specs for problem in check(spec)]
    if problems:
        parser.error(
            "; ".join(f"{spec.name}: {_flag(p.field)}: {p.message}" for spec, p in problems)
        )
    if not specs:
        parser.error("--deployments: no OasisPlatform worker Deployment in it")
    for item in skipped:
        sys.stderr.write(f"skipped {item.item}: {item.reason}\n")
    console.file.write("".join(render(spec) for spec in specs))
    return 0


def spec_from(args: argparse.Namespace) -> WorkerSpec:
    given = {name: getattr(args, name) for name in SPEC_FLAGS if getattr(args, name) is not None}
    resources = {name: getattr(args, name) for name in RESOURCE_FLAGS if getattr(args, name)}
    spec = WorkerSpec(**given)
    if resources:
        spec = WorkerSpec(**{**given, "resources": type(spec.resources)(**resources)})
    return spec


def run(args: argparse.Namespace, console: Console) -> int:
    parser: argparse.ArgumentParser = args.manifests_parser
    spec = spec_from(args)
    problems = check(spec)
    if problems:
        # Exits 2 with the usage, as for a malformed flag; nothing is printed to stdout.
        parser.error("; ".join(f"{_flag(p.field)}: {p.message}" for p in problems))
    console.file.write(render(spec))
    return 0


def render(spec: WorkerSpec) -> str:
    """The YAML documents, after a comment with the command that prints them again."""
    body = yaml.safe_dump_all(worker_manifests(spec), sort_keys=False, width=1000)
    return f"# Generated by: {command_line(spec)}\n---\n{body}"


def command_line(spec: WorkerSpec) -> str:
    """`oasis-autoscaler manifests model` with the flags that differ from the defaults."""
    defaults = WorkerSpec(spec.supplier, spec.model, spec.version)
    words = ["oasis-autoscaler", "manifests", "model"]
    for field in fields(WorkerSpec):
        value, default = getattr(spec, field.name), getattr(defaults, field.name)
        if field.name == "resources":
            words += _resource_words(value, default)
        elif field.name in ("supplier", "model", "version") or value != default:
            flag = SPEC_FLAGS[field.name][0]
            words += [flag] if isinstance(value, bool) else [flag, str(value)]
    return shlex.join(words)


def _resource_words(value: object, default: object) -> list[str]:
    words = []
    for name, flag in RESOURCE_FLAGS.items():
        if getattr(value, name) != getattr(default, name):
            words += [flag, getattr(value, name)]
    return words


def _metavar(name: str, kind: Any) -> str:
    if name.endswith("_seconds"):
        return "SECONDS"
    special = {
        "scaler_address": "HOST:PORT",
        "model_data_dir": "PATH",
        "tls_secret": "NAME",
        "deployment": "NAME",
        "queue_name": "QUEUE",
    }
    return special.get(name) or ("N" if kind is int else name.upper())


def _flag(field: str) -> str:
    name = field.removeprefix("resources.")
    return RESOURCE_FLAGS.get(name) or SPEC_FLAGS[name][0]
