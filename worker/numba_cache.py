"""numba's cache of the kernel's compiled code: one folder per CPU type, built once, outside any
data dir.

numba compiles the kernel's functions for the CPU it runs on (the cache's index records the CPU
name and features): code compiled for one CPU type is useless on another, and compiling the
whole kernel takes minutes. So the cache root (the worker's `numba_cache_dir`, by default in the
user's cache folder, shared by every data dir) holds one folder per CPU type, and a folder is
built once, by a small analysis that runs every tool the loss stage can use (ground-up and
insured losses, every ORD output but the quantiles) through the cold kernel; a marker file says
it is complete. The image builds the folder of its build machine's CPU; a worker on another CPU
type builds its own once, and says so in its log. The warm kernel (`worker.zygote`) loads what
the folder holds.

Run as `python -m worker.numba_cache ROOT` to build the folder of this machine's CPU in ROOT.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from worker.demo_model import DemoModel, demo_analysis_settings, demo_locations, ensure_demo_model

log = logging.getLogger(__name__)
MARKER: Final = "built-by-oasis-autoscaler"
LOCK: Final = ".lock"
WARM_UP_LOCATIONS: Final = 10
WARM_UP_CHUNKS: Final = 2
# Every ORD output the warm-up asks for: each runs code of its own in eltpy, pltpy, aalpy, lecpy.
ORD_OUTPUTS: Final = (
    "elt_sample",
    "elt_moment",
    "plt_sample",
    "plt_moment",
    "alt_period",
    "alt_meanonly",
    "ept_full_uncertainty_aep",
    "ept_full_uncertainty_oep",
    "ept_mean_sample_aep",
    "ept_mean_sample_oep",
    "ept_per_sample_mean_aep",
    "ept_per_sample_mean_oep",
    "psept_aep",
    "psept_oep",
)


def cpu_key() -> str:
    """This CPU type as numba tells caches apart: its name and a digest of its features."""
    from numba.core.registry import cpu_target

    _, name, features = cpu_target.target_context.codegen().magic_tuple()
    return f"{name}-{hashlib.sha256(features.encode()).hexdigest()[:12]}"


def cpu_folder(root: Path) -> Path:
    return root / cpu_key()


def ensure_built(root: Path, seed: Path | None = None) -> Path:
    """This CPU type's folder in `root`, built first if it is not complete (once: concurrent
    callers wait for the one that builds it). A complete folder for this CPU in `seed` (a
    read-only root, such as the one the image built) is copied instead of building one."""
    folder = cpu_folder(root)
    if (folder / MARKER).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        seeded = seed / folder.name if seed is not None else None
        if not (folder / MARKER).is_file() and seeded and (seeded / MARKER).is_file():
            shutil.copytree(seeded, folder, dirs_exist_ok=True)
            log.info("numba cache for %s copied from %s", folder.name, seeded)
        if not (folder / MARKER).is_file():
            others = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / MARKER).is_file())
            reason = (
                f"the numba cache was built for {', '.join(others)}, not this CPU"
                if others
                else f"the numba cache in {root} has no build for this CPU yet"
            )
            log.warning(
                "%s (%s): compiling the kernel once into %s (a few minutes)",
                reason,
                folder.name,
                folder,
            )
            started = time.monotonic()
            build(folder)
            log.warning(
                "the kernel is compiled for %s (%.0f s); later workers on this CPU type start warm",
                folder.name,
                time.monotonic() - started,
            )
    return folder


def build(folder: Path) -> None:
    """Compile every kernel tool a loss stage can use into `folder` by running a small analysis
    through the cold kernel, then mark the folder complete."""
    from worker import kernel

    with tempfile.TemporaryDirectory(prefix="oasis-numba-warm-up-") as scratch:
        run_dir = warm_up_run(Path(scratch), insured=True)
        for index in range(WARM_UP_CHUNKS):
            kernel.losses_chunk(run_dir, index, WARM_UP_CHUNKS, numba_cache_dir=folder)
        kernel.losses_output(run_dir, WARM_UP_CHUNKS, numba_cache_dir=folder)
    (folder / MARKER).write_text(f"{cpu_key()}\n")


@dataclass(frozen=True)
class WarmUpAnalysis:
    model: DemoModel
    inputs: Path


def warm_up_run(root: Path, *, insured: bool, locations: int = WARM_UP_LOCATIONS) -> Path:
    """`warm_up_analysis` in `root` with its loss stage prepared (every ORD output but the
    quantiles) in `root/run`, which it returns, ready for its chunks."""
    from worker import kernel

    analysis = warm_up_analysis(root, insured=insured, locations=locations)
    run_dir = root / "run"
    kernel.prepare_losses(
        analysis.inputs,
        analysis.model.model_data_dir,
        full_settings(insured=insured),
        run_dir,
        model_settings=analysis.model.model_settings,
    )
    return run_dir


def warm_up_analysis(
    root: Path, *, insured: bool, locations: int = WARM_UP_LOCATIONS
) -> WarmUpAnalysis:
    """The demo model and the Oasis input files of `locations` demo locations in `root`; with
    `insured`, one account per five locations with a deductible and a limit (fm files)."""
    from oasislmf.computation.generate.files import GenerateFiles  # type: ignore[import-untyped]

    from worker import kernel

    model = ensure_demo_model(root / "model")
    rows = list(csv.DictReader(io.StringIO(demo_locations(locations))))
    for row in rows:  # text identifiers: the account file is read as given, not as text
        for column, prefix in (("PortNumber", "P"), ("AccNumber", "A"), ("LocNumber", "L")):
            row[column] = prefix + row[column]
    location_csv = root / "location.csv"
    _write_csv(location_csv, list(rows[0]), [list(r.values()) for r in rows])
    work = root / "work"
    kernel.load_locations(location_csv, work)
    kernel.lookup_chunk(work, model.lookup_config, (0, 1))
    kernel.collect_keys(work, 1)
    options: dict[str, Any] = {}
    if insured:
        account_csv = root / "account.csv"
        accounts = sorted({(r["PortNumber"], r["AccNumber"]) for r in rows})
        _write_csv(
            account_csv,
            ["PortNumber", "AccNumber", "AccCurrency", "PolNumber", "PolPerilsCovered"]
            + ["PolPeril", "PolDedType6All", "PolDed6All", "LayerLimit", "LayerAttachment"]
            + ["LayerParticipation"],
            [[p, a, "GBP", "POL1", "WTC", "WTC", 0, 5000, 2000000, 0, 1] for p, a in accounts],
        )
        options["oed_accounts_csv"] = str(account_csv)
    inputs = root / "input"
    GenerateFiles(
        oasis_files_dir=str(inputs),
        oed_location_csv=str(location_csv),
        keys_data_path=str(work / kernel.KEYS_DIR / kernel.KEYS),
        keys_errors_path=str(work / kernel.KEYS_DIR / kernel.KEYS_ERRORS),
        model_settings_json=str(model.model_settings),
        **options,
    ).run()
    return WarmUpAnalysis(model, inputs)


def full_settings(*, insured: bool) -> dict[str, Any]:
    """The demo's analysis settings with every ORD output of `ORD_OUTPUTS`, insured too if asked."""
    settings = demo_analysis_settings()
    summaries = [{"id": 1, "ord_output": dict.fromkeys(ORD_OUTPUTS, True)}]
    settings["gul_summaries"] = summaries
    if insured:
        settings["il_output"] = True
        settings["il_summaries"] = summaries
    return settings


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        print("usage: python -m worker.numba_cache ROOT", file=sys.stderr)
        sys.exit(2)
    print(ensure_built(Path(sys.argv[1]).absolute()))
