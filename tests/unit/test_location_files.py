"""Location files: CSV with a header and data rows, counted as a stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.files import NotCsv, count_csv_rows


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        (b"LocNumber,Latitude\n1,52\n2,53\n", 2),
        (b"\xef\xbb\xbfLocNumber,Latitude\r\n1,52\r\n", 1),
        (b"LocNumber,Latitude\n1,52\n\n2,53\n,\n", 2),
        (b'LocNumber,Name\n1,"Smith, John"\n2,"multi\nline"\n', 2),
        (b"LocNumber,Latitude\n", 0),
    ],
    ids=["plain", "bom and crlf", "blank rows", "quoted", "header only"],
)
def test_rows_are_counted(tmp_path: Path, content: bytes, rows: int) -> None:
    path = tmp_path / "loc.csv"
    path.write_bytes(content)
    assert count_csv_rows(path) == rows


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no header row"),
        (b",,\n1,2,3\n", "no header row"),
        (b"\xff\xfe\x00\x01", "not UTF-8"),
        (b"a\x00b,c\n1,2\n", "binary"),
        (b"a,b\n1,2,3\n", "row 2 has 3 fields, the header has 2"),
        (b'a,b\n"1,2\n', "not valid CSV"),
    ],
)
def test_what_is_not_csv_says_why(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "loc.csv"
    path.write_bytes(content)
    with pytest.raises(NotCsv, match=reason):
        count_csv_rows(path)
