"""A sheet cut into windows of rows, each parsed by calamine on its own: memory bounded.

python-calamine parses a whole sheet before it hands over a row (some 90 bytes a cell), and
has no reader that streams. So the sheet's XML is read from the zip as a stream, cut at `<row`
tags into windows of about `WINDOW_BYTES`, and each window is handed to calamine as a small
workbook of its own: the workbook's own parts (workbook.xml and its relationships for the
sheet names and the 1904 flag, styles.xml for date formats, sharedStrings.xml) and the
window's rows inside the sheet's own `<sheetData>`. Rows keep their `r=` numbers, so calamine
puts each where Excel does; a window of rows written without `r=` is placed after the rows
before it. Each window parses the shared strings again: a window is at least
`SHARED_STRINGS_SHARE` times as large as the table, so that parse stays a fraction of the
window's. The small workbook is written to a scratch file, streamed from the window's pieces:
calamine reads a file in place, while a buffer it copies several times (a third of its time
on large windows).
"""

from __future__ import annotations

import io
import re
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

WINDOW_BYTES = 8 << 20  # the sheet's XML parsed at a time: ~200,000 cells (measured best)
SHARED_STRINGS_SHARE = 1  # the table parses ~4x faster a byte than rows: <= ~25% more
SAMPLE_WINDOW_BYTES = 512 << 10  # init: ~600 rows of 20 columns a window
SAMPLE_WINDOWS = 21
SAMPLE_STRINGS_BYTES = 64 << 20  # shared strings parsed at most, over init's windows
BLOCK = 1 << 20
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELATION = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_SHEET_DATA = re.compile(rb"<((?:[\w.-]+:)?)sheetData(?:\s[^>]*)?(/?)>")
_ROOT = re.compile(rb"<((?:[\w.-]+:)?)worksheet[\s>]")
_DIMENSION = re.compile(rb"<(?:[\w.-]+:)?dimension\s[^>]*/>")
_NUMBERED_ROW = re.compile(rb"<(?:[\w.-]+:)?row\s[^>]*?\br=")
_ROW_NUMBER = re.compile(rb"<(?:[\w.-]+:)?row\s[^>]*?\br=\"([0-9]+)\"")
EMPTY = ""
Row = list[Any]


@dataclass(frozen=True)
class Window:
    """Rows of the sheet, each from column A: `rows[0]` is the sheet's row `first` (0 is
    Excel's row 1). Rows before `first` since the window before are empty."""

    first: int
    rows: list[Row]


@dataclass(frozen=True)
class SheetXml:
    """Where a sheet's XML is in the workbook, and the small parts every window needs."""

    titles: list[str]
    member: str
    parts: dict[str, bytes]

    @property
    def strings_bytes(self) -> int:
        parts = self.parts.items()
        return sum(len(data) for name, data in parts if "sharedstrings" in name.lower())

    @property
    def window_bytes(self) -> int:
        return max(WINDOW_BYTES, SHARED_STRINGS_SHARE * self.strings_bytes)


def sheet_xml(book: zipfile.ZipFile, title: str | None) -> tuple[SheetXml, str]:
    """The workbook's sheet titles and the parts around the sheet `title` (None: the first),
    found as calamine finds them. KeyError when `title` is not a sheet of the workbook."""
    names = {name.lower(): name for name in book.namelist()}
    workbook = ET.fromstring(_part(book, names, "xl/workbook.xml"))
    rels = ET.fromstring(_part(book, names, "xl/_rels/workbook.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target", "") for rel in rels}
    sheets = {
        sheet.get("name", ""): targets.get(sheet.get(_RELATION), "")
        for sheet in workbook.iter(f"{_MAIN}sheet")
    }
    titles = list(sheets)
    chosen = titles[0] if title is None and titles else title
    if chosen not in sheets:
        raise KeyError(chosen)
    member = names.get(_member_path(sheets[chosen]).lower(), "")
    parts = {
        name: book.read(name)
        for name in book.namelist()
        if name != member and (name.count("/") <= 1 or name.lower().startswith("xl/_rels/"))
    }
    return SheetXml(titles, member, parts), chosen


def _part(book: zipfile.ZipFile, names: dict[str, str], part: str) -> bytes:
    if part not in names:
        raise zipfile.BadZipFile(f"it has no {part}")
    return book.read(names[part])


def _member_path(target: str) -> str:
    if target.startswith("/"):
        return target[1:]
    return target if target.lower().startswith("xl/") else f"xl/{target}"


def windows(
    book: zipfile.ZipFile, sheet: SheetXml, title: str, sampled: bool = False
) -> Iterator[Window]:
    """The sheet's windows in order, those holding no cell left out. `sampled`: small
    windows, only the first and some spread over the sheet are parsed (`sample_offsets`)."""
    import python_calamine  # imported here: only xlsx sources pay for it

    with book.open(sheet.member) as stream:
        head = bytearray()
        while not (opening := _SHEET_DATA.search(head)):
            block = stream.read(BLOCK)
            if not block:
                return
            head += block
        space, closed = opening.group(1), opening.group(2)
        if closed:
            return
        root = _ROOT.search(head)
        start = _DIMENSION.sub(b"", bytes(head[: opening.end()]))  # no size to reserve
        end = b"</" + space + b"sheetData></" + (root.group(1) if root else b"") + b"worksheet>"
        del head[: opening.end()]
        before = 0  # rows (row tags) before the window
        size = SAMPLE_WINDOW_BYTES if sampled else sheet.window_bytes
        targets = sample_offsets(book.getinfo(sheet.member).file_size, sheet) if sampled else []
        offset = len(start)  # where the body starts in the sheet's XML, near enough
        with tempfile.TemporaryDirectory(prefix="backfill-xlsx-") as scratch:
            at = Path(scratch) / "window.xlsx"
            for body in _bodies(head, stream, space, size):
                offset += len(body)
                if sampled and not (targets and targets[0] < offset):
                    if not targets:
                        return
                    before = _rows_through(body, space, before)
                    continue
                while targets and targets[0] < offset:
                    targets.pop(0)
                xml = (start, body, end)
                first = 0 if _numbered(body) else before
                window = _parse(python_calamine, sheet, title, xml, first, at)
                before = _rows_through(body, space, before)
                if window is not None:
                    yield window


def sample_offsets(sheet_bytes: int, sheet: SheetXml) -> list[int]:
    """Where in a sheet's XML `init` parses a window of `SAMPLE_WINDOW_BYTES`: the first,
    and others evenly spread; fewer when the shared strings (parsed again with each) are
    large. The last is two windows before the end, where a whole window still is."""
    count = SAMPLE_WINDOWS
    if sheet.strings_bytes * count > SAMPLE_STRINGS_BYTES:
        count = max(2, SAMPLE_STRINGS_BYTES // sheet.strings_bytes)
    last = max(0, sheet_bytes - 2 * SAMPLE_WINDOW_BYTES)
    return sorted({i * last // max(count - 1, 1) for i in range(count)})


def _bodies(pending: bytearray, stream: IO[bytes], space: bytes, size: int) -> Iterator[bytes]:
    """The rows' XML, cut before the first `<row` tag past `size` bytes."""
    row, closing = b"<" + space + b"row", b"</" + space + b"sheetData>"
    searched = 0
    while True:
        end = pending.find(closing, searched)
        limit = end if end >= 0 else len(pending)
        while (cut := pending.find(row, size, limit)) > 0:
            first = pending.find(row, 0, cut)
            if first >= 0:
                yield bytes(pending[first:cut])
            del pending[:cut]
            limit, end = limit - cut, end - cut if end >= 0 else end
        if end >= 0:
            first = pending.find(row, 0, end)
            if first >= 0:
                yield bytes(pending[first:end])
            return
        searched = max(0, len(pending) - len(closing))
        block = stream.read(BLOCK)
        if not block:
            raise ValueError("the sheet's XML ends inside its rows")
        pending += block


def _numbered(body: bytes) -> bool:
    return _NUMBERED_ROW.match(body) is not None


def _rows_through(body: bytes, space: bytes, before: int) -> int:
    """The rows up to the end of `body`: its last row's own number, else counted."""
    last = _ROW_NUMBER.match(body, max(0, body.rfind(b"<" + space + b"row")))
    return int(last.group(1)) if last else before + body.count(b"<" + space + b"row")


def _parse(
    calamine: Any, sheet: SheetXml, title: str, xml: tuple[bytes, ...], before: int, at: Path
) -> Window | None:
    """One window through calamine, as a workbook of its own holding only these rows,
    written to the file `at` (calamine reads a file without copying it, a buffer several
    times); in memory when the disk refuses it."""
    try:
        _write_book(at, sheet, xml)
        opened = calamine.CalamineWorkbook.from_path(str(at))
    except OSError:
        buffer = io.BytesIO()
        _write_book(buffer, sheet, xml)
        buffer.seek(0)
        opened = calamine.CalamineWorkbook.from_filelike(buffer)
    with opened as workbook:
        parsed = workbook.get_sheet_by_name(title)
    if parsed.start is None:
        return None
    row, column = parsed.start
    rows = parsed.to_python(skip_empty_area=True)
    if column:
        pad = [EMPTY] * column
        rows = [pad + cells for cells in rows]
    return Window(before + row, rows)


def _write_book(target: Path | IO[bytes], sheet: SheetXml, xml: tuple[bytes, ...]) -> None:
    with zipfile.ZipFile(target, "w") as book:  # stored: nothing gained by compressing
        for name, data in sheet.parts.items():
            book.writestr(name, data)
        with book.open(sheet.member, "w", force_zip64=True) as member:
            for piece in xml:
                member.write(piece)
