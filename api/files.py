"""Uploaded files kept in the data dir; location files are checked as CSV and as the kernel will
read them (`worker.exposure`), and their rows counted."""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path
from typing import IO, Any

from werkzeug.datastructures import FileStorage

from api.errors import ApiError, bad_request
from worker.exposure import ExposureError, check_location_file, keyed_coverage_types

CHUNK_BYTES = 1024 * 1024


class NotCsv(ValueError):
    pass


def store_upload(upload: FileStorage, directory: Path, max_bytes: int) -> tuple[str, Path]:
    """Save the upload under a new unique name; returns (stored name, path)."""
    directory.mkdir(parents=True, exist_ok=True)
    stored = f"{uuid.uuid4().hex}.csv"
    path = directory / stored
    temporary = path.with_suffix(".part")
    written = 0
    with temporary.open("wb") as out:
        while chunk := upload.stream.read(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                out.close()
                temporary.unlink()
                raise ApiError(413, {"file": [f"The file is larger than {max_bytes} bytes."]})
            out.write(chunk)
    os.replace(temporary, path)
    return stored, path


def count_csv_rows(path: Path) -> int:
    """Data rows of a CSV file with a header row, read as a stream; NotCsv says what is wrong."""
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
        try:
            return _count_rows(text)
        except UnicodeDecodeError as exc:
            raise NotCsv(f"the file is not UTF-8 text (byte {exc.start})") from None
        except csv.Error as exc:
            raise NotCsv(f"the file is not valid CSV: {exc}") from None


def _count_rows(text: IO[str]) -> int:
    reader = csv.reader(text, strict=True)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise NotCsv("the file has no header row")
    if "\x00" in "".join(header):
        raise NotCsv("the file holds binary data")
    rows = 0
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise NotCsv(
                f"row {reader.line_num} has {len(row)} fields, the header has {len(header)}"
            )
        rows += 1
    return rows


def checked_location_file(
    upload: FileStorage | None, directory: Path, max_bytes: int
) -> tuple[str, int]:
    """Store an uploaded location file and count its rows, or refuse it with a 400."""
    if upload is None:
        raise bad_request("file", "No file was sent: send it as the multipart field 'file'.")
    stored, path = store_upload(upload, directory, max_bytes)
    try:
        rows = count_csv_rows(path)
    except NotCsv as exc:
        path.unlink()
        raise bad_request("file", f"Not a CSV location file: {exc}.") from None
    if rows == 0:
        path.unlink()
        raise bad_request("file", "The location file has no data rows.")
    try:
        check_location_file(path, coverage_types=None)
    except ExposureError as exc:
        path.unlink()
        raise bad_request("file", f"The kernel cannot use this location file: {exc}.") from None
    return stored, rows


def check_for_model(path: Path, model_settings: dict[str, Any] | None) -> None:
    """Refuse (400) a stored location file the model's lookup and oasislmf cannot use."""
    try:
        check_location_file(path, coverage_types=keyed_coverage_types(model_settings))
    except ExposureError as exc:
        raise bad_request(
            "location_file", f"The model's lookup and oasislmf cannot use it: {exc}."
        ) from None
