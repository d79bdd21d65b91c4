"""The streaming split with the real oasislmf: its numbers are oasislmf's, its lookups the same.

oasislmf is the oracle: the `loc_id`s the split writes must be the ones oasislmf gives the whole
file when it makes the input files, and a lookup cut into chunk files must give the keys and
input files a lookup of the whole portfolio gives.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import kernel, lookups
from worker.demo_model import DemoModel, demo_locations, ensure_demo_model
from worker.location_split import read_ids, read_split

pytestmark = pytest.mark.integration

KEYS = ("PortNumber", "AccNumber", "LocNumber")
KEY_TEXT = st.sampled_from(
    ["1", "10", "2", "01", "a", "A", "é", "Z", "x y", " 1", "a,b", 'q"t', "l\nb", "NA", "P-1"]
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    return ensure_demo_model(tmp_path_factory.mktemp("demo") / "model")


def _portfolio(
    keys: list[tuple[str, str, str]], line_end: str = "\r\n", loc_ids: bool = False
) -> str:
    """Demo locations (valid OED) with the given keys, quoted where needed, any line end."""
    rows = list(csv.reader(io.StringIO(demo_locations(len(keys)))))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(rows[0] + (["loc_id"] if loc_ids else []))
    for number, (row, triple) in enumerate(zip(rows[1:], keys, strict=True), start=1):
        writer.writerow([*triple, *row[3:]] + ([str(10 * number)] if loc_ids else []))
    return out.getvalue()


def _oasislmf_loc_ids(location_csv: Path, folder: Path) -> list[int]:
    """The numbers oasislmf gives the whole file as generate-oasis-files loads it."""
    from oasislmf.utils.data import DEFAULT_ADDITIONAL_FIELDS, prepare_oed_exposure
    from ods_tools.oed import OedExposure

    kernel._save_exposure(location_csv, folder)
    exposure = OedExposure.from_config(
        str(folder / kernel.EXPOSURE_CONFIG),
        additional_fields=DEFAULT_ADDITIONAL_FIELDS,
        backend_dtype="pd_dtype",
    )
    prepare_oed_exposure(exposure)
    return [int(i) for i in exposure.location.dataframe["loc_id"]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(st.tuples(KEY_TEXT, KEY_TEXT, KEY_TEXT), min_size=1, max_size=30),
    chunks=st.integers(1, 5),
    line_end=st.sampled_from(["\n", "\r\n"]),
)
def test_the_split_numbers_locations_as_oasislmf_numbers_the_whole_file(
    tmp_path_factory: pytest.TempPathFactory,
    keys: list[tuple[str, str, str]],
    chunks: int,
    line_end: str,
) -> None:
    root = tmp_path_factory.mktemp("numbering")
    location_csv = root / "location.csv"
    location_csv.write_text(_portfolio(keys, line_end))
    rows = kernel.load_locations(location_csv, root / "work", chunks)
    split = read_ids(root / "work" / kernel.LOCATIONS, range(rows))
    (root / "oasislmf").mkdir()
    assert list(split) == _oasislmf_loc_ids(location_csv, root / "oasislmf")


def _lookup(model: DemoModel, location_csv: Path, work: Path, chunks: int, cut: int) -> Path:
    """Input files with the file split into `cut` files and looked up in `chunks` chunks."""
    kernel.load_locations(location_csv, work, cut)
    for index in range(chunks):
        kernel.lookup_chunk(work, model.lookup_config, (index, chunks))
    kernel.collect_keys(work, chunks)
    return kernel.write_input_files(work, model_settings=model.model_settings)


def _whole_portfolio_keys(model: DemoModel, location_csv: Path, folder: Path) -> list[list[str]]:
    """The keys of oasislmf's lookup of the whole file loaded at once, ordered by location."""
    from oasislmf.utils.data import DEFAULT_ADDITIONAL_FIELDS, prepare_oed_exposure
    from ods_tools.oed import OedExposure

    folder.mkdir()
    exposure = OedExposure(
        location=kernel.read_oed_csv(location_csv),
        check_oed=True,
        use_field=True,
        additional_fields=DEFAULT_ADDITIONAL_FIELDS,
        backend_dtype="pd_dtype",
    )
    prepare_oed_exposure(exposure)
    lookups.generate_keys(  # the whole frame at once: a lookup built afresh, nothing kept
        model.lookup_config,
        exposure.location.dataframe,
        folder,
        whole=True,
        keys="keys.csv",
        errors="errors.csv",
    )
    header, *rows = list(csv.reader((folder / "keys.csv").open(newline="")))
    return [header, *sorted(rows, key=lambda row: int(row[0]))]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_lookup_of_split_chunks_gives_the_whole_portfolio_lookup(
    model: DemoModel, tmp_path: Path
) -> None:
    rng = random.Random(3)
    keys = [
        (rng.choice("12é"), rng.choice(["1", "01", "a,b"]), f"L{n * 7 % 23}") for n in range(23)
    ]
    location_csv = tmp_path / "location.csv"
    location_csv.write_text(_portfolio(keys))
    one = _lookup(model, location_csv, tmp_path / "one", chunks=1, cut=1)
    three = _lookup(model, location_csv, tmp_path / "three", chunks=3, cut=3)
    assert len(read_split(tmp_path / "three" / kernel.LOCATIONS).pieces) == 3
    whole = _whole_portfolio_keys(model, location_csv, (tmp_path / "oracle").absolute())
    assert list(csv.reader((three / kernel.KEYS).open(newline=""))) == whole
    first, second = _files(one), _files(three)
    record = kernel.EXPOSURE_CONFIG
    second[record] = second[record].replace(b"/three/", b"/one/")
    assert [name for name in first if first[name] != second[name]] == []
    assert first.keys() == second.keys()


def test_any_chunking_of_the_rows_reads_the_files_that_hold_them(
    model: DemoModel, tmp_path: Path
) -> None:
    location_csv = tmp_path / "location.csv"
    location_csv.write_text(demo_locations(20))
    kernel.load_locations(location_csv, tmp_path / "work", 3)
    keys = kernel.lookup_chunk(tmp_path / "work", model.lookup_config, range(4, 15))
    ids = {int(row[0]) for row in list(csv.reader((keys / kernel.KEYS).open()))[1:]}
    assert ids == set(read_ids(tmp_path / "work" / kernel.LOCATIONS, range(4, 15)))


def test_a_file_with_a_loc_id_column_is_refused_as_oasislmf_refuses_it(
    model: DemoModel, tmp_path: Path
) -> None:
    from ods_tools.oed.common import OdsException

    location_csv = tmp_path / "location.csv"
    location_csv.write_text(_portfolio([("1", "1", str(n)) for n in range(6)], loc_ids=True))
    kernel.load_locations(location_csv, tmp_path / "work", 2)
    with pytest.raises(OdsException, match="'loc_id' is not a valid oed field"):
        kernel.lookup_chunk(tmp_path / "work", model.lookup_config, (0, 2))


def _grid_cache_files() -> set[str]:
    import oasislmf.lookup

    cache = Path(oasislmf.lookup.__file__).parent / "__pycache__"
    return {p.name for p in cache.glob("*geo_grid*")} if cache.is_dir() else set()


def test_lookups_leave_nothing_in_numbas_cache(model: DemoModel, tmp_path: Path) -> None:
    """oasislmf's grid lookup cannot reuse its cache; shared, the cache breaks after ~64 runs."""
    from numba.core import config

    before, setting = _grid_cache_files(), config.CACHE_DIR  # type: ignore[attr-defined]
    location_csv = tmp_path / "location.csv"
    location_csv.write_text(demo_locations(6))
    kernel.load_locations(location_csv, tmp_path / "work", 3)
    for index in range(3):
        kernel.lookup_chunk(tmp_path / "work", model.lookup_config, (index, 3))
    assert _grid_cache_files() == before
    assert setting == config.CACHE_DIR  # type: ignore[attr-defined]


def test_a_chunk_refuses_numbers_that_disagree_with_its_keys(
    model: DemoModel, tmp_path: Path
) -> None:
    """The guard against the split reading a key otherwise than pandas: numbers in reverse."""
    location_csv = tmp_path / "location.csv"
    location_csv.write_text(demo_locations(9))
    folder = tmp_path / "work" / kernel.LOCATIONS
    kernel.load_locations(location_csv, tmp_path / "work", 3)
    np.save(folder / "loc_id.npy", np.arange(9, 0, -1))
    with pytest.raises(RuntimeError, match="out of order"):
        kernel.lookup_chunk(tmp_path / "work", model.lookup_config, (0, 3))
