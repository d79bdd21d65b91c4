"""Cutting an OED location file into chunk files in one streaming pass, numbered as oasislmf
numbers the whole portfolio.

oasislmf gives every row a `loc_id`: the dense rank, from 1, of its (PortNumber, AccNumber,
LocNumber) among the whole file's triples, the values compared as text (`get_ids` sorts the
three OED category columns, whose categories are the sorted strings, and numbers the distinct
triples in that order; a value pandas reads as missing becomes '' and sorts first). A chunk
cannot number its rows alone, since that needs every other row's keys: the split computes the
numbers and writes them beside each chunk.

One pass reads the file in blocks of bytes and notes where each row starts; the rows' key fields
go to a scratch file as it finds them. Each chunk's rows are then copied, as the very bytes of
the file under its header line, into a file of their own, and the keys are read back and ranked
(as big-endian words, with numpy's lexsort) into every row's `loc_id`. Memory never holds the
table, only 8 bytes per row while scanning and the keys (padded to whole 8-byte words) plus a
sort index while numbering, against a few hundred bytes per row for a pandas load.

Rows are what pandas' C parser reads (the reader every chunk and the whole-file load use): blank
and whitespace-only lines are not rows, a quoted field may hold commas, quotes and line breaks.
Blocks without quotes, NULs or lone carriage returns are cut with numpy; from the first block
that has one, the csv module reads the rest. Files pandas would read in a way a row-by-row cut
cannot keep are refused, with the reason: a row with more fields than the header, a key column
missing or given twice, a NUL in a key. Whether the rows are valid OED is for oasislmf's checks
to say, when each chunk is loaded (a `loc_id` column, for one, is not an OED field).

Imports only numpy and the standard library (and the chunking core), not pandas.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from worker.chunking import partition

KEY_FIELDS: Final = ("portnumber", "accnumber", "locnumber")
# What the kernel reads as missing: ods_tools' PANDAS_DEFAULT_NULL_VALUES less "NA" (a test
# checks they agree; ods_tools is not imported here, it brings pandas).
MISSING: Final = frozenset(
    {"", " ", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"}
    | {"1.#QNAN", "N/A", "NULL", "NaN", "n/a", "nan", "null"}
)
WHOLE: Final = "location.csv"
MANIFEST: Final = "split.json"
IDS: Final = "loc_id.npy"
BLOCK_BYTES: Final = 1 << 20
SLACK: Final = 64
CSV_BATCH_ROWS: Final = 1 << 16
CHANGES_ROWS: Final = 1 << 16
_LF, _CR, _COMMA = 10, 13, 44
_BOM: Final = b"\xef\xbb\xbf"
_BLANK: Final = b" \t"
_MISSING_FIRST: Final = np.isin(np.arange(256), [(v.encode() or b"\0")[0] for v in MISSING])
_MISSING_WORDS: Final[npt.NDArray[np.uint64]] = np.sort(
    np.array([np.frombuffer(v.encode().ljust(8, b"\0"), np.uint64)[0] for v in MISSING])
)

Bytes2D = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Header:
    """The header line as in the file (BOM left out), where the rows start, and the columns."""

    raw: bytes
    end: int
    width: int
    keys: tuple[int, ...]


@dataclass(frozen=True)
class Batch:
    """Some consecutive rows: where each starts in the file, and its key fields' bytes."""

    starts: Ints
    keys: tuple[Bytes2D, ...]


@dataclass(frozen=True)
class Split:
    """What `split_locations` left: the row count and the chunks."""

    rows: int
    pieces: tuple[range, ...]


class LocationFileError(ValueError):
    """The location file cannot be cut row by row the way pandas reads it; says why."""


# --- the split --------------------------------------------------------------------------------


def split_locations(location_csv: Path, folder: Path, chunks: int) -> Split:
    """Cut `location_csv` into `chunks` files in `folder` (fewer if it has fewer rows).

    `folder` gets `rows-A-B.csv` per chunk (the header, then rows A..B-1 as they are in the
    file), `loc_id.npy` (every row's `loc_id` over the whole file, in file order), the whole
    file (`location.csv`, a hard link or a copy) and `split.json` (the row count and the chunks).
    """
    header = read_header(location_csv)
    with tempfile.TemporaryFile(dir=folder) as scratch:
        keys = KeySpill(scratch)
        starts = _scan_all(location_csv, header, keys)
        if not len(starts):
            raise LocationFileError(f"{location_csv} has a header but no rows")
        pieces = tuple(partition(len(starts), min(chunks, len(starts))))
        _write_pieces(location_csv, header, [int(starts[p.start]) for p in pieces], pieces, folder)
        del starts
        np.save(folder / IDS, number(keys))
    _link_or_copy(location_csv, folder / WHOLE)
    split = Split(keys.rows, pieces)
    (folder / MANIFEST).write_text(_manifest(split))
    return split


def _scan_all(location_csv: Path, header: Header, keys: KeySpill) -> Ints:
    """Where every row starts; their key fields go to `keys`."""
    starts = []
    for batch in scan(location_csv, header):
        starts.append(batch.starts)
        keys.add(batch.keys, len(batch.starts))
    return _concatenate(starts)


def read_split(folder: Path) -> Split:
    data = json.loads((folder / MANIFEST).read_text())
    pieces = tuple(range(start, stop) for start, stop in data["pieces"])
    return Split(rows=data["rows"], pieces=pieces)


def piece_file(folder: Path, rows: range) -> Path:
    return folder / f"rows-{rows.start}-{rows.stop}.csv"


def read_ids(folder: Path, rows: range) -> Ints:
    """The `loc_id`s of `rows` (reads only them)."""
    ids: Ints = np.load(folder / IDS, mmap_mode="r")[rows.start : rows.stop]
    return np.array(ids)


def covering(split: Split, rows: range) -> list[tuple[range, range]]:
    """The pieces holding `rows`, each with the part of it `rows` takes (relative to the piece)."""
    parts = []
    for piece in split.pieces:
        start, stop = max(rows.start, piece.start), min(rows.stop, piece.stop)
        if start < stop:
            parts.append((piece, range(start - piece.start, stop - piece.start)))
    return parts


# --- the header -------------------------------------------------------------------------------


def read_header(location_csv: Path) -> Header:
    """The first row that is not blank, parsed as pandas parses it, and where it ends."""
    with open(location_csv, "rb") as stream:
        skip = len(_BOM) if stream.read(len(_BOM)) == _BOM else 0
        for row, start, end in _csv_rows(location_csv, skip):
            stream.seek(start)
            return _header(row, stream.read(end - start), end, location_csv)
    raise LocationFileError(f"{location_csv} is empty")


def _header(names: list[str], raw: bytes, end: int, source: Path) -> Header:
    universal = [name.strip().lower() for name in names]
    keys = []
    for field in KEY_FIELDS:
        found = [i for i, name in enumerate(universal) if name == field]
        if len(found) != 1:
            many = "more than one" if found else "no"
            raise LocationFileError(f"{source} has {many} {field} column (OED field, any case)")
        keys.append(found[0])
    return Header(raw, end, len(names), tuple(keys))


# --- finding the rows and their keys ----------------------------------------------------------


def scan(location_csv: Path, header: Header) -> Iterator[Batch]:
    """Every row after the header, in order, a block at a time: numpy while the bytes are
    plain, the csv module from the first block that quotes, holds a NUL or a lone CR."""
    offset = header.end
    for block in _blocks(location_csv, header.end):
        batch = _plain_batch(block, offset, header)
        if batch is None:
            yield from _csv_batches(location_csv, offset, header)
            return
        offset += block.size
        if len(batch.starts):
            yield batch


@dataclass(frozen=True)
class Block:
    """`size` bytes of the file, ending at a line feed (or the end of the file), in a buffer
    with at least SLACK bytes after them, so a field's bytes can be read past its end."""

    buffer: bytearray
    size: int

    def data(self) -> npt.NDArray[np.uint8]:
        return np.frombuffer(self.buffer, np.uint8)[: self.size]

    def has(self, text: bytes) -> bool:
        return self.buffer.find(text, 0, self.size) >= 0


def _blocks(location_csv: Path, start: int) -> Iterator[Block]:
    """The file from `start` in blocks of about BLOCK_BYTES, each ending at a line feed."""
    with open(location_csv, "rb") as stream:
        stream.seek(start)
        rest = b""
        while True:
            buffer = bytearray(len(rest) + BLOCK_BYTES + SLACK)
            buffer[: len(rest)] = rest
            read = stream.readinto(memoryview(buffer)[len(rest) : len(rest) + BLOCK_BYTES])
            end = len(rest) + read
            cut = buffer.rfind(b"\n", 0, end) + 1 if read else end
            rest = bytes(buffer[cut:end])
            if cut:
                yield Block(buffer, cut)
            if not read:
                return


def _plain(block: Block) -> bool:
    """No quote, no NUL, and every CR starts a CR LF."""
    if block.has(b'"') or block.has(b"\0"):
        return False
    if not block.has(b"\r"):
        return True
    data = block.data()
    after = np.flatnonzero(data == _CR) + 1
    return bool(after[-1] < len(data)) and bool((data[after] == _LF).all())


def _plain_batch(block: Block, offset: int, header: Header) -> Batch | None:
    """The rows of a block (None if it is not plain): numpy finds lines, commas and keys."""
    if not _plain(block):
        return None
    data = block.data()
    commas = np.flatnonzero(data == _COMMA)
    starts, ends, first, fields = _lines(data, commas, block.has(b"\r"))
    keep = _not_blank(block, starts, ends, fields)
    if not keep.all():
        starts, ends, first, fields = starts[keep], ends[keep], first[keep], fields[keep]
    _check_width(int(fields.max(initial=0)), header)
    spans = [_field_span(column, starts, ends, commas, first, fields) for column in header.keys]
    longest = max(int(lengths.max(initial=0)) for _, lengths in spans)
    room = np.frombuffer(block.buffer, np.uint8)
    if longest > SLACK:
        room = np.concatenate((data, np.zeros(longest, np.uint8)))
    return Batch(starts + offset, tuple(_gather(room, *span) for span in spans))


def _lines(data: npt.NDArray[np.uint8], commas: Ints, carriage: bool) -> tuple[Ints, ...]:
    """Each line with something on it: its start, its end (before any CR LF), the index of its
    first comma in `commas`, and its number of fields."""
    feeds = np.flatnonzero(data == _LF)
    starts = np.concatenate(([0], feeds + 1))
    ends = np.concatenate((feeds, [len(data)]))
    first = np.searchsorted(commas, starts)
    fields = np.diff(first, append=len(commas)) + 1
    if carriage:
        ends = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == _CR))
    filled = ends > starts
    return starts[filled], ends[filled], first[filled], fields[filled]


def _not_blank(block: Block, starts: Ints, ends: Ints, fields: Ints) -> npt.NDArray[np.bool_]:
    """False for the lines pandas skips: only spaces and tabs (such a line has no comma)."""
    keep = np.ones(len(starts), bool)
    for i in np.flatnonzero(fields == 1):
        keep[i] = bool(block.buffer[starts[i] : ends[i]].strip(_BLANK))
    return keep


def _field_span(
    column: int, starts: Ints, ends: Ints, commas: Ints, first: Ints, fields: Ints
) -> tuple[Ints, Ints]:
    """Where field `column` of each line starts, and its length (0 when the line is shorter)."""
    present = fields > column
    if not len(commas):
        return starts, np.where(present, ends - starts, 0)
    last = len(commas) - 1
    begin = starts if column == 0 else commas[np.minimum(first + column - 1, last)] + 1
    finish = np.where(fields > column + 1, commas[np.minimum(first + column, last)], ends)
    return np.where(present, begin, starts), np.where(present, finish - begin, 0)


def _gather(room: npt.NDArray[np.uint8], starts: Ints, lengths: Ints) -> Bytes2D:
    """Each field's bytes, NUL-padded to the longest; a field pandas reads as missing is ''.

    `room` holds the block and at least as many bytes after it as the longest field."""
    width = int(lengths.max(initial=0))
    if width == 0:
        return np.zeros((len(starts), 0), np.uint8)
    fields = np.lib.stride_tricks.sliding_window_view(room, width)[starts]
    fields *= np.arange(width) < lengths[:, None]
    fields *= ~_missing(fields, lengths)[:, None]
    return fields


def _missing(fields: Bytes2D, lengths: Ints) -> npt.NDArray[np.bool_]:
    """The fields whose text is one pandas reads as missing (all are at most 8 bytes long)."""
    missing = (lengths <= 8) & _MISSING_FIRST[fields[:, 0]]
    rows = np.flatnonzero(missing)
    head = np.zeros((len(rows), 8), np.uint8)
    head[:, : min(8, fields.shape[1])] = fields[rows, :8]
    words = head.view(np.uint64).ravel()
    found = _MISSING_WORDS[np.minimum(np.searchsorted(_MISSING_WORDS, words), len(MISSING) - 1)]
    missing[rows] = found == words
    return missing


def _check_width(fields: int, header: Header) -> None:
    if fields > header.width:
        raise LocationFileError(
            f"a row has {fields} fields and the header {header.width}: pandas would refuse the"
            " file, or take its first column as an index"
        )


# --- the csv module, for the blocks numpy does not cut ----------------------------------------


def _csv_batches(location_csv: Path, offset: int, header: Header) -> Iterator[Batch]:
    starts: list[int] = []
    keys: list[list[bytes]] = [[] for _ in header.keys]
    for row, start, _ in _csv_rows(location_csv, offset):
        _check_width(len(row), header)
        starts.append(start)
        for column, values in zip(header.keys, keys, strict=True):
            values.append(_key_bytes(row[column] if column < len(row) else ""))
        if len(starts) == CSV_BATCH_ROWS:
            yield _batch(starts, keys)
            starts, keys = [], [[] for _ in header.keys]
    if starts:
        yield _batch(starts, keys)


def _csv_rows(location_csv: Path, offset: int) -> Iterator[tuple[list[str], int, int]]:
    """Each row pandas reads from byte `offset` on: its fields, and where it starts and ends."""
    with open(location_csv, "rb") as binary:
        binary.seek(offset)
        lines = _CountedLines(io.TextIOWrapper(binary, encoding="utf-8", newline=""), offset)
        reader = csv.reader(lines)
        while True:
            start = lines.next_row()
            row = next(reader, None)
            if row is None:
                return
            if row and not lines.blank():
                yield row, start, lines.position


class _CountedLines:
    """The lines of a text stream for csv.reader, counting the bytes they came from."""

    def __init__(self, text: Iterable[str], offset: int) -> None:
        self._text = iter(text)
        self.position = offset
        self._lines: list[str] = []

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = next(self._text)
        self.position += len(line.encode("utf-8"))
        self._lines.append(line)
        return line

    def next_row(self) -> int:
        """Start counting the lines of the next row; where it starts."""
        self._lines.clear()
        return self.position

    def blank(self) -> bool:
        """True if the row was one line of nothing but spaces and tabs (pandas skips it)."""
        return len(self._lines) == 1 and not self._lines[0].strip(" \t\r\n")


def _key_bytes(value: str) -> bytes:
    if "\0" in value:
        raise LocationFileError(f"a key field holds a NUL character: {value!r}")
    return b"" if value in MISSING else value.encode("utf-8")


def _batch(starts: list[int], keys: list[list[bytes]]) -> Batch:
    return Batch(np.array(starts, np.int64), tuple(fixed(values) for values in keys))


def fixed(values: list[bytes]) -> Bytes2D:
    width = max(map(len, values), default=0)
    if width == 0:
        return np.zeros((len(values), 0), np.uint8)
    return np.array(values, dtype=f"S{width}").view(np.uint8).reshape(len(values), width)


# --- numbering --------------------------------------------------------------------------------


class KeySpill:
    """The key fields the scan finds, batch by batch, kept in a scratch file until numbering
    (held in memory as many small arrays, they would cost more than their size)."""

    def __init__(self, scratch: BinaryIO) -> None:
        self._scratch = scratch
        self._shapes: list[tuple[int, tuple[int, ...]]] = []

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self._shapes)

    def add(self, keys: tuple[Bytes2D, ...], rows: int) -> None:
        for field in keys:
            self._scratch.write(field.tobytes())
        self._shapes.append((rows, tuple(field.shape[1] for field in keys)))

    def widths(self) -> list[int]:
        """Each key field's longest value, in bytes."""
        return [max(w[f] for _, w in self._shapes) for f in range(len(KEY_FIELDS))]

    def batches(self) -> Iterator[tuple[Bytes2D, ...]]:
        """The batches as they were added."""
        self._scratch.seek(0)
        for rows, widths in self._shapes:
            yield tuple(self._read(rows, width) for width in widths)

    def _read(self, rows: int, width: int) -> Bytes2D:
        data = np.frombuffer(self._scratch.read(rows * width), np.uint8)
        return data.reshape(rows, width)


def _key_words(keys: KeySpill) -> Words:
    """Each location's key triple as big-endian 64-bit words, word by word: `words[w][row]`.

    The three fields, each NUL-padded to its longest, are laid side by side and cut into
    8-byte words, so comparing two rows' words in order compares their key triples field by
    field as text (UTF-8 keeps code point order, and a key holds no NUL).
    """
    widths = keys.widths()
    words = np.zeros((max(1, -(-sum(widths) // 8)), keys.rows), np.uint64)
    octets = words.view(np.uint8).reshape(len(words), keys.rows, 8)
    firsts = np.cumsum([0, *widths])
    row = 0
    for batch in keys.batches():
        for field, first in zip(batch, firsts, strict=False):
            for byte in range(field.shape[1]):
                word, place = divmod(int(first) + byte, 8)
                octets[word, row : row + len(field), place] = field[:, byte]
        row += len(batch[0])
    if sys.byteorder == "little":
        words.byteswap(inplace=True)
    return words


def number(keys: KeySpill) -> Ints:
    """Each row's `loc_id`: the dense rank, from 1, of its key triple."""
    words = _key_words(keys)
    order = np.lexsort(words[::-1])
    new = _changes(words, order)
    del words
    return _scatter_ranks(order, new)


def _scatter_ranks(order: Ints, new: npt.NDArray[np.bool_]) -> Ints:
    ordered = np.cumsum(new, dtype=np.int64)
    ordered += 1
    ranks = np.empty(len(order), np.int64)
    ranks[order] = ordered
    return ranks


def _changes(words: Words, order: Ints) -> npt.NDArray[np.bool_]:
    """Where, in `order`, a row differs from the one before (a slice at a time, to stay small)."""
    new = np.zeros(len(order), bool)
    for low in range(1, len(order), CHANGES_ROWS):
        high = min(low + CHANGES_ROWS, len(order))
        taken = words[:, order[low - 1 : high]]
        new[low:high] = (taken[:, 1:] != taken[:, :-1]).any(axis=0)
    return new


# --- writing ----------------------------------------------------------------------------------


def _write_pieces(
    source: Path, header: Header, begins: list[int], pieces: tuple[range, ...], folder: Path
) -> None:
    """Each piece's file: the header line, then the file's bytes from its first row to the next
    piece's (blank lines between rows come along; pandas skips them)."""
    ends = [*begins[1:], source.stat().st_size]
    with open(source, "rb") as stream:
        for piece, begin, end in zip(pieces, begins, ends, strict=True):
            with open(piece_file(folder, piece), "wb") as out:
                out.write(header.raw)
                _copy_range(stream, out, begin, end)


def _copy_range(source: BinaryIO, target: BinaryIO, begin: int, end: int) -> None:
    """Bytes `begin`..`end` of `source` onto the end of `target`, a block at a time."""
    source.seek(begin)
    while begin < end:
        data = source.read(min(BLOCK_BYTES, end - begin))
        target.write(data)
        begin += len(data)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link when the file system allows one (the upload is never rewritten in place,
    and a link keeps its bytes even if the upload is removed), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _concatenate(parts: list[Ints]) -> Ints:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _manifest(split: Split) -> str:
    pieces = [[p.start, p.stop] for p in split.pieces]
    return json.dumps({"rows": split.rows, "pieces": pieces}) + "\n"
