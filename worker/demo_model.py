"""The built-in demo model: a PiWind-like wind model made offline from a fixed seed.

It lets the whole platform run on one machine with the real Oasis kernel and no model download.
The hazard and vulnerability data come from oasislmf's own model-file generator (the Python class
behind `oasislmf test model generate-model-files`); this module adds what makes it a model the
platform can run: a keys lookup (oasislmf's built-in lookup, a fixed-size grid of area perils
over Great Britain and vulnerabilities merged by occupancy and coverage), the event and
occurrence sets named as the model settings select them, and the model settings themselves in
OasisPlatform's shape. Same seed, same bytes: everything is generated deterministically and the
model folder is relocatable (the lookup names its keys data relative to its own file).
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from worker.atomic import build_dir

SEED: Final = 1234
PERIL: Final = "WTC"
EVENT_SET: Final = "p"
OCCURRENCE_SET: Final = "lt"
EVENTS: Final = 1447
PERIODS: Final = 1000
LAT_MIN, LAT_MAX, LON_MIN, LON_MAX = 49.0, 59.0, -8.0, 2.0
ARC_SIZE: Final = 0.5
AREA_PERILS: Final = round((LAT_MAX - LAT_MIN) / ARC_SIZE) * round((LON_MAX - LON_MIN) / ARC_SIZE)
AREA_PERILS_PER_EVENT: Final = 40
INTENSITY_BINS: Final = 10
DAMAGE_BINS: Final = 20
# Valid OED occupancy codes (residential), and OED coverage types: buildings, contents, BI.
OCCUPANCY_CODES: Final = (1050, 1051, 1052, 1053, 1054, 1055)
COVERAGE_TYPES: Final = (1, 3, 4)
VULNERABILITIES: Final = len(OCCUPANCY_CODES) * len(COVERAGE_TYPES)
RETURN_PERIODS: Final = (10, 25, 50, 100, 250, 500, 1000)

SUPPLIER_ID, MODEL_ID, VERSION_ID = "OasisLMF", "PiWind", "1"
MODEL_DATA, KEYS_DATA = "model_data", "keys_data"
LOOKUP_CONFIG, MODEL_SETTINGS = "lookup_config.json", "model_settings.json"

# City centres the demo locations are scattered around (all inside the area-peril grid).
_GB_CITIES: Final = (
    (51.507, -0.128),
    (52.486, -1.890),
    (53.481, -2.242),
    (55.864, -4.252),
    (53.801, -1.549),
    (51.455, -2.588),
    (55.953, -3.189),
    (51.482, -3.179),
    (54.978, -1.618),
    (52.630, 1.297),
    (50.376, -4.143),
    (57.150, -2.094),
)
LOCATION_COLUMNS: Final = (
    "PortNumber",
    "AccNumber",
    "LocNumber",
    "CountryCode",
    "Latitude",
    "Longitude",
    "OccupancyCode",
    "ConstructionCode",
    "LocPerilsCovered",
    "BuildingTIV",
    "ContentsTIV",
    "BITIV",
    "LocCurrency",
)


@dataclass(frozen=True)
class DemoModel:
    """Where the parts of a model are: the kernel's model data, the lookup's, and the settings."""

    model_data_dir: Path
    keys_data_dir: Path
    lookup_config: Path
    model_settings: Path


def ensure_demo_model(directory: Path) -> DemoModel:
    """The demo model in `directory`, generated first if it is not there yet.

    Built in a temporary folder beside `directory` and renamed into place, so two processes
    racing end with one complete model; a folder left by a killed attempt is never mistaken for
    a model. `directory` must be absent, empty, or a demo model. (Safe between processes, not
    between threads of one process: oasislmf's generator draws from numpy's global random state.)
    """
    directory = directory.absolute()
    model = model_files(directory)
    if not _complete(model):
        if directory.is_dir() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} is neither empty nor a demo model")
        if directory.is_dir():
            directory.rmdir()
        build_dir(directory, _generate)
    return model


def demo_locations(count: int, seed: int = SEED) -> str:
    """An OED location file (CSV) of `count` locations in Great Britain the lookup resolves.

    Identifiers are numeric, as in many real OED files (PiWind's among them).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LOCATION_COLUMNS)
    for number in range(1, count + 1):
        latitude, longitude = rng.choice(_GB_CITIES)
        building = rng.randrange(100, 1000) * 1000
        writer.writerow(
            (
                1,
                1 + (number - 1) // 5,
                number,
                "GB",
                f"{latitude + rng.uniform(-0.2, 0.2):.4f}",
                f"{longitude + rng.uniform(-0.2, 0.2):.4f}",
                rng.choice(OCCUPANCY_CODES),
                5000,
                PERIL,
                building,
                building // rng.choice((2, 4, 5)),
                building // rng.choice((5, 10, 20)),
                "GBP",
            )
        )
    return out.getvalue()


def demo_analysis_settings(number_of_samples: int = 10) -> dict[str, Any]:
    """Ground-up ORD outputs of the demo model: sample ELT and PLT, period ALT, full EPT."""
    return {
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "model_settings": {"event_set": EVENT_SET, "event_occurrence_id": OCCURRENCE_SET},
        "number_of_samples": number_of_samples,
        "gul_threshold": 0,
        "return_periods": list(RETURN_PERIODS),
        "gul_output": True,
        "gul_summaries": [
            {
                "id": 1,
                "ord_output": {
                    "elt_sample": True,
                    "plt_sample": True,
                    "alt_period": True,
                    "ept_full_uncertainty_aep": True,
                    "ept_full_uncertainty_oep": True,
                },
            }
        ],
    }


def model_settings() -> dict[str, Any]:
    """The model settings as OasisPlatform holds them (validated by oasislmf's schema)."""
    return {
        "name": "PiWind demo",
        "description": "PiWind-like wind model over Great Britain, generated offline",
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "model_version_id": VERSION_ID,
        "model_default_samples": 10,
        "model_settings": {
            "event_set": {
                "name": "Event Set",
                "desc": "Either Probabilistic or Historic",
                "default": EVENT_SET,
                "options": [{"id": EVENT_SET, "desc": "Probabilistic", "number_of_events": EVENTS}],
            },
            "event_occurrence_id": {
                "name": "Occurrence Set",
                "desc": "Occurrence selector",
                "default": OCCURRENCE_SET,
                "options": [{"id": OCCURRENCE_SET, "desc": f"Long Term, {PERIODS} years"}],
            },
        },
        "lookup_settings": {
            "supported_perils": [{"id": PERIL, "desc": "Tropical Cyclone"}],
            # Read by the API's exposure check (`worker.exposure`): the TIV columns it needs.
            "supported_coverage_types": list(COVERAGE_TYPES),
        },
    }


def lookup_config() -> dict[str, Any]:
    """oasislmf's built-in lookup: perils, coverage types, grid area perils, vulnerabilities."""
    return {
        "model": {"supplier_id": SUPPLIER_ID, "model_id": MODEL_ID, "model_version": VERSION_ID},
        "builtin_lookup_type": "new_lookup",
        "keys_data_path": KEYS_DATA,
        "step_definition": {
            "split_loc_perils_covered": {
                "type": "split_loc_perils_covered",
                "columns": ["locperilscovered"],
                "parameters": {"model_perils_covered": [PERIL]},
            },
            "create_coverage_type": {
                "type": "simple_pivot",
                "parameters": {
                    "pivots": [{"new_cols": {"coverage_type": c}} for c in COVERAGE_TYPES]
                },
            },
            "area_peril": {
                "type": "fixed_size_geo_grid",
                "columns": ["latitude", "longitude"],
                "parameters": {
                    "lat_min": LAT_MIN,
                    "lat_max": LAT_MAX,
                    "lon_min": LON_MIN,
                    "lon_max": LON_MAX,
                    "arc_size": ARC_SIZE,
                },
            },
            "vulnerability": {
                "type": "merge",
                "columns": ["peril_id", "coverage_type", "occupancycode"],
                "parameters": {
                    "file_path": "%%KEYS_DATA_PATH%%/vulnerability_dict.csv",
                    "id_columns": ["vulnerability_id"],
                },
            },
        },
        "strategy": [
            "split_loc_perils_covered",
            "create_coverage_type",
            "area_peril",
            "vulnerability",
        ],
    }


def vulnerability_dict() -> str:
    """One vulnerability per (coverage type, occupancy), numbered from 1."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("PERIL_ID", "COVERAGE_TYPE", "OCCUPANCYCODE", "VULNERABILITY_ID"))
    pairs = [(c, o) for c in COVERAGE_TYPES for o in OCCUPANCY_CODES]
    for number, (coverage, occupancy) in enumerate(pairs, start=1):
        writer.writerow((PERIL, coverage, occupancy, number))
    return out.getvalue()


def model_files(directory: Path) -> DemoModel:
    """Where the parts of a model laid out as the demo's are in `directory` (nothing is made).

    The layout: `model_data/` (the kernel's model data), `keys_data/` (the lookup's data),
    `lookup_config.json` and `model_settings.json`.
    """
    return DemoModel(
        model_data_dir=directory / MODEL_DATA,
        keys_data_dir=directory / KEYS_DATA,
        lookup_config=directory / LOOKUP_CONFIG,
        model_settings=directory / MODEL_SETTINGS,
    )


def _complete(model: DemoModel) -> bool:
    return all(
        p.exists()
        for p in (
            model.model_data_dir,
            model.keys_data_dir,
            model.lookup_config,
            model.model_settings,
        )
    )


def _generate(directory: Path) -> None:
    model = model_files(directory)
    _generate_model_data(model.model_data_dir)
    model.keys_data_dir.mkdir()
    (model.keys_data_dir / "vulnerability_dict.csv").write_text(vulnerability_dict())
    model.lookup_config.write_text(_json(lookup_config()))
    model.model_settings.write_text(_json(model_settings()))


def _generate_model_data(model_data: Path) -> None:
    """oasislmf's generator writes static/ and input/; the kernel wants them in one folder."""
    from oasislmf.computation.generate.files import (  # type: ignore[import-untyped]
        GenerateDummyModelFiles,
    )

    generated = model_data.parent / "generated"
    GenerateDummyModelFiles(
        target_dir=str(generated),
        num_vulnerabilities=VULNERABILITIES,
        num_intensity_bins=INTENSITY_BINS,
        num_damage_bins=DAMAGE_BINS,
        num_events=EVENTS,
        num_areaperils=AREA_PERILS,
        areaperils_per_event=AREA_PERILS_PER_EVENT,
        num_periods=PERIODS,
        random_seed=SEED,
    ).run()
    model_data.mkdir()
    for name in ("footprint.bin", "footprint.idx", "vulnerability.bin", "damage_bin_dict.bin"):
        shutil.move(generated / "static" / name, model_data / name)
    # Named for the sets the model settings offer, and unsuffixed for an analysis naming none.
    for name, selected in (("events", EVENT_SET), ("occurrence", OCCURRENCE_SET)):
        shutil.copyfile(generated / "input" / f"{name}.bin", model_data / f"{name}_{selected}.bin")
        shutil.move(generated / "input" / f"{name}.bin", model_data / f"{name}.bin")
    shutil.rmtree(generated)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"
