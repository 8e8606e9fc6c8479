"""Opening a CSV file: its compression, its byte order mark, and its header row.

Apart from the reader (csv_reader.py) because it is another job: the header is read once,
with Python's csv module, before Arrow parses any data; and when it is not text, the message
has to guess at the file's encoding to say what to try next.
"""

from __future__ import annotations

import csv
import io
import re

import pyarrow as pa
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.text_codec import encoding_from_bom, likely_encoding

_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that did not decode (surrogateescape)


def compression(name: str) -> str | None:
    """gzip by the name in any case (`ORDERS.CSV.GZ`): Arrow's "detect" knows only `.gz`."""
    return "gzip" if name.lower().endswith(".gz") else None


def open_stream(filesystem: pafs.FileSystem, path: str, name: str) -> pa.NativeFile:
    return filesystem.open_input_stream(path, compression=compression(name))


def bom_encoding(filesystem: pafs.FileSystem, path: str, name: str) -> str | None:
    try:
        with open_stream(filesystem, path, name) as stream:
            return encoding_from_bom(stream.read(4))
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{name}: cannot read the CSV: {exc}") from exc


def csv_header(
    filesystem: pafs.FileSystem,
    path: str,
    name: str,
    delimiter: str,
    encoding: str,
    encoding_given: bool,
) -> list[str]:
    """The header row, read with Python's csv module so quoting and a BOM are handled."""
    text_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        stream = open_stream(filesystem, path, name)
        # Only the header must decode here: bytes further on are the data's business.
        text = io.TextIOWrapper(
            stream, encoding=text_encoding, errors="surrogateescape", newline=""
        )
        header = next(csv.reader(text, delimiter=delimiter), None)
    except (OSError, pa.ArrowException, csv.Error, UnicodeError) as exc:
        raise SourceError(f"{name}: cannot read the CSV header: {exc}") from exc
    if not header:
        raise SourceError(f"{name}: the file is empty; expected a header line of column names.")
    undecodable = [column for column in header if _UNDECODED.search(column) or "\0" in column]
    if undecodable:
        raise SourceError(_header_not_text(name, undecodable[0], encoding, encoding_given))
    return header


def _header_not_text(name: str, column: str, encoding: str, encoding_given: bool) -> str:
    found = "".join(
        f"\\x{ord(char) - 0xDC00:02x}" if 0xDC80 <= ord(char) <= 0xDCFF else char for char in column
    )
    if encoding_given:
        return f"{name}: the header is not {encoding} text (found {found!r}); check --encoding."
    guess = None if "\0" in column else likely_encoding(column.encode("utf-8", "surrogateescape"))
    if guess is not None:
        return (
            f"{name}: the header is not UTF-8 text (found {found!r}); it looks like {guess}: "
            f"try --encoding {guess}, or save the file as UTF-8."
        )
    if "\0" in column:  # ASCII in UTF-16: a zero byte after (LE) or before (BE) each letter
        utf16 = "utf-16-be" if column.startswith("\0") else "utf-16-le"
        return (
            f"{name}: the header is not UTF-8 text (found {found!r}; UTF-16 without a byte "
            f"order mark?); try --encoding {utf16}, or save the file as UTF-8."
        )
    return f"{name}: the header is not UTF-8 text (found {found!r}); save the file as UTF-8."
