"""The streaming location split: rows as pandas reads them, keys numbered as oasislmf numbers them.

pandas is the oracle for what a row is (every chunk, and the whole-file load, read with it); the
numbering's oracle here is the rule itself (dense rank of the key triple, values as text, a
missing value as ''), which tests/integration/test_location_split.py checks against oasislmf.
"""

from __future__ import annotations

import io
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import location_split
from worker.chunking import partition
from worker.location_split import (
    MISSING,
    KeySpill,
    LocationFileError,
    Split,
    covering,
    fixed,
    number,
    piece_file,
    read_header,
    read_ids,
    read_split,
    split_locations,
)

HEADER = "PortNumber,AccNumber,LocNumber,CountryCode"
NA_VALUES = sorted(MISSING)


def _read(source: Path | str) -> list[list[str]]:
    """Rows as the kernel's pandas call reads them (missing values as '')."""
    stream = io.StringIO(source) if isinstance(source, str) else source
    table = pd.read_csv(stream, dtype=str, keep_default_na=False, na_values=NA_VALUES)
    return [["" if pd.isna(v) else str(v) for v in row] for row in table.itertuples(index=False)]


def _expected_ids(rows: list[list[str]], keys: tuple[int, ...] = (0, 1, 2)) -> list[int]:
    triples = [tuple(row[k] for k in keys) for row in rows]
    rank = {triple: i for i, triple in enumerate(sorted(set(triples)), start=1)}
    return [rank[t] for t in triples]


def _split(tmp_path: Path, text: str | bytes, chunks: int) -> tuple[Split, Path]:
    source = tmp_path / "location.csv"
    source.write_bytes(text.encode() if isinstance(text, str) else text)
    folder = tmp_path / "split"
    folder.mkdir()
    return split_locations(source, folder, chunks), folder


def _pieces(split: Split, folder: Path) -> list[list[str]]:
    return [row for piece in split.pieces for row in _read(piece_file(folder, piece))]


# --- the header -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        (HEADER + "\n1,1,1,GB\n", (0, 1, 2)),
        ("CountryCode, locnumber ,ACCNUMBER,portNumber\nGB,1,1,1\n", (3, 2, 1)),
        ("\ufeff" + HEADER + "\r\n1,1,1,GB\r\n", (0, 1, 2)),
        ("\n  \n" + HEADER + "\n1,1,1,GB\n", (0, 1, 2)),
        ('"PortNumber","AccNumber","LocNumber"\n1,1,1\n', (0, 1, 2)),
    ],
    ids=["plain", "any case and spaces", "BOM and CRLF", "blank lines first", "quoted"],
)
def test_the_header(tmp_path: Path, text: str, keys: tuple[int, ...]) -> None:
    source = tmp_path / "location.csv"
    source.write_text(text)
    header = read_header(source)
    assert header.keys == keys
    assert source.read_bytes()[header.end - len(header.raw) : header.end] == header.raw


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("PortNumber,AccNumber,Loc\n1,1,1\n", "no locnumber column"),
        ("PortNumber,AccNumber,LocNumber,locnumber\n1,1,1,1\n", "more than one locnumber"),
        (HEADER + "\n", "no rows"),
        (HEADER + "\n1,1,1,GB\n1,1,2,GB,extra\n", "5 fields and the header 4"),
        (HEADER + '\n1,1,"a\0b",GB\n', "NUL"),
    ],
    ids=["empty", "no LocNumber", "LocNumber twice", "no rows", "too many fields", "NUL in a key"],
)
def test_files_a_row_by_row_cut_cannot_keep_are_refused(
    tmp_path: Path, text: str, reason: str
) -> None:
    with pytest.raises(LocationFileError, match=reason):
        _split(tmp_path, text, 2)


# --- rows as pandas reads them ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        HEADER + "\n1,1,1,GB\n1,1,2,GB\n1,1,3,GB\n",
        HEADER + "\r\n1,1,1,GB\r\n1,1,2,GB\r\n1,1,3,GB",
        HEADER + "\r1,1,1,GB\r1,1,2,GB\r1,1,3,GB\r",
        HEADER + "\n\n1,1,1,GB\n \t \n1,1,2,GB\n\n\n1,1,3,GB\n\n",
        HEADER + '\n1,"a,b",1,GB\n1,"x\ny",2,"G""B"\n1,1,3\n',
        HEADER + "\n1,1,1,GB\n,,,\n1,1\n",
        HEADER + "\n1,1,NULL,GB\n1,1, ,GB\n1,1,NA,GB\n",
    ],
    ids=["LF", "CRLF, no last line end", "CR", "blank lines", "quotes", "short rows", "missing"],
)
@pytest.mark.parametrize("chunks", [1, 2, 3, 5])
def test_the_pieces_hold_the_rows_pandas_reads(tmp_path: Path, text: str, chunks: int) -> None:
    split, folder = _split(tmp_path, text, chunks)
    whole = _read(text)
    assert split.rows == len(whole)
    assert split.pieces == tuple(partition(len(whole), min(chunks, len(whole))))
    assert _pieces(split, folder) == whole
    assert list(read_ids(folder, range(split.rows))) == _expected_ids(whole)
    assert (folder / location_split.WHOLE).read_bytes() == (tmp_path / "location.csv").read_bytes()
    assert read_split(folder) == split


def test_keys_are_compared_as_text_with_missing_values_first(tmp_path: Path) -> None:
    text = HEADER + "\n1,1,9,GB\n1,1,10,GB\n2,1,1,GB\n1,A,10,GB\n1,1,9,GB\n1,1,é,GB\n1,1,null,GB\n"
    _, folder = _split(tmp_path, text, 3)
    assert list(read_ids(folder, range(7))) == [3, 2, 6, 5, 3, 4, 1]


FIRST, SECOND, THIRD = partition(10, 3)


@pytest.mark.parametrize(
    ("rows", "parts"),
    [
        (range(0, 10), [(FIRST, range(0, 4)), (SECOND, range(0, 3)), (THIRD, range(0, 3))]),
        (range(5, 6), [(SECOND, range(1, 2))]),
        (range(3, 8), [(FIRST, range(3, 4)), (SECOND, range(0, 3)), (THIRD, range(0, 1))]),
    ],
    ids=["all", "inside one", "across three"],
)
def test_covering(rows: range, parts: list[tuple[range, range]]) -> None:
    split = Split(10, (FIRST, SECOND, THIRD))
    assert covering(split, rows) == parts


# --- properties -------------------------------------------------------------------------------

KEY_TEXT = st.sampled_from(
    ["1", "10", "2", "01", "a", "A", "é", "Z", "x y", "a,b", 'q"t', "l\nb", "NA", "null", " "]
)
OTHER = st.sampled_from(["GB", "", "a,b", 'say "hi"', "x\r\ny", " pad "])
ROWS = st.lists(st.tuples(KEY_TEXT, KEY_TEXT, KEY_TEXT, OTHER), min_size=1, max_size=40)


def _field(value: str, quote_anyway: bool) -> str:
    if quote_anyway or any(c in value for c in ',"\r\n') or not value.strip(" \t"):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def location_files(draw: st.DrawFn) -> str:
    """A CSV as tools write them: any line end, quoting where needed or everywhere, blank lines."""
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote = draw(st.booleans())
    lines = [HEADER]
    for row in draw(ROWS):
        lines += [""] * draw(st.integers(0, 1))
        lines.append(",".join(_field(v, quote) for v in row))
    return end.join(lines) + draw(st.sampled_from([end, ""]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=location_files(), chunks=st.integers(1, 6), block=st.sampled_from([64, 1 << 20]))
def test_any_file_is_cut_where_pandas_cuts_it_and_numbered_by_its_keys(
    tmp_path_factory: pytest.TempPathFactory, text: str, chunks: int, block: int
) -> None:
    with patch.object(location_split, "BLOCK_BYTES", block):
        split, folder = _split(tmp_path_factory.mktemp("split"), text, chunks)
    whole = _read(text)
    assert _pieces(split, folder) == whole
    assert list(read_ids(folder, range(split.rows))) == _expected_ids(whole)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plain=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=60),
    quoted=st.lists(st.tuples(KEY_TEXT, KEY_TEXT), min_size=1, max_size=20),
)
def test_plain_blocks_then_quoted_ones_hand_over_at_a_row(
    tmp_path_factory: pytest.TempPathFactory,
    plain: list[tuple[int, int]],
    quoted: list[tuple[str, str]],
) -> None:
    """numpy cuts the first blocks, the csv module the rest, from where numpy stopped."""
    lines = [HEADER] + [f"P{a},{b},{a * b},GB" for a, b in plain]
    lines += [f"{_field(a, True)},{_field(b, False)},x,GB" for a, b in quoted]
    text = "\n".join(lines) + "\n"
    with patch.object(location_split, "BLOCK_BYTES", 32):
        split, folder = _split(tmp_path_factory.mktemp("split"), text, 4)
    whole = _read(text)
    assert _pieces(split, folder) == whole
    assert list(read_ids(folder, range(split.rows))) == _expected_ids(whole)


@given(
    st.lists(
        st.tuples(
            *[st.text(st.characters(min_codepoint=1, exclude_categories=["Cs"]), max_size=12)] * 3
        ),
        min_size=1,
        max_size=200,
    )
)
def test_number_is_the_dense_rank_of_the_key_triples_as_text(
    triples: list[tuple[str, str, str]],
) -> None:
    spill = KeySpill(io.BytesIO())
    for low in range(0, len(triples), 7):  # in batches, as the scan adds them
        batch = triples[low : low + 7]
        columns = [fixed([t[f].encode() for t in batch]) for f in range(3)]
        spill.add(tuple(columns), len(batch))
    rank = {t: i for i, t in enumerate(sorted(set(triples)), start=1)}
    assert list(number(spill)) == [rank[t] for t in triples]
    assert number(spill).dtype == np.int64


def test_the_missing_values_are_the_kernels() -> None:
    from ods_tools.oed.common import PANDAS_DEFAULT_NULL_VALUES

    assert frozenset(PANDAS_DEFAULT_NULL_VALUES - {"NA"}) == MISSING
    assert max(len(v.encode()) for v in MISSING) <= 8
