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
window's.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

WINDOW_BYTES = 16 << 20  # the sheet's XML parsed at a time: ~450,000 cells of numbers
SHARED_STRINGS_SHARE = 2
BLOCK = 1 << 20
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELATION = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_SHEET_DATA = re.compile(rb"<((?:[\w.-]+:)?)sheetData(?:\s[^>]*)?(/?)>")
_ROOT = re.compile(rb"<((?:[\w.-]+:)?)worksheet[\s>]")
_DIMENSION = re.compile(rb"<(?:[\w.-]+:)?dimension\s[^>]*/>")
_NUMBERED_ROW = re.compile(rb"<(?:[\w.-]+:)?row\s[^>]*?\br=")
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
    def window_bytes(self) -> int:
        parts = self.parts.items()
        strings = sum(len(data) for name, data in parts if "sharedstrings" in name.lower())
        return max(WINDOW_BYTES, SHARED_STRINGS_SHARE * strings)


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


def windows(book: zipfile.ZipFile, sheet: SheetXml, title: str) -> Iterator[Window]:
    """The sheet's windows in order, those holding no cell left out."""
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
        for body in _bodies(head, stream, space, sheet.window_bytes):
            xml = start + body + end
            window = _parse(python_calamine, sheet, title, xml, 0 if _numbered(body) else before)
            before += body.count(b"<" + space + b"row")
            if window is not None:
                yield window


def _bodies(pending: bytearray, stream: IO[bytes], space: bytes, size: int) -> Iterator[bytes]:
    """The rows' XML, cut before a `<row` tag once at least `size` bytes are held."""
    row, closing = b"<" + space + b"row", b"</" + space + b"sheetData>"
    searched = 0
    while True:
        end = pending.find(closing, searched)
        if end >= 0:
            first = pending.find(row, 0, end)
            if first >= 0:
                yield bytes(pending[first:end])
            return
        searched = max(0, len(pending) - len(closing))
        if len(pending) >= size:
            first, cut = pending.find(row), pending.rfind(row, 0, len(pending) - 64)
            if 0 <= first < cut:
                yield bytes(pending[first:cut])
                del pending[:cut]
                searched = max(0, searched - cut)
        block = stream.read(BLOCK)
        if not block:
            raise ValueError("the sheet's XML ends inside its rows")
        pending += block


def _numbered(body: bytes) -> bool:
    return _NUMBERED_ROW.match(body) is not None


def _parse(calamine: Any, sheet: SheetXml, title: str, xml: bytes, before: int) -> Window | None:
    """One window through calamine, as a workbook of its own holding only these rows."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:  # stored: nothing gained by compressing
        for name, data in sheet.parts.items():
            book.writestr(name, data)
        book.writestr(sheet.member, xml)
    del xml
    buffer.seek(0)
    with calamine.CalamineWorkbook.from_filelike(buffer) as workbook:
        parsed = workbook.get_sheet_by_name(title)
    if parsed.start is None:
        return None
    row, column = parsed.start
    rows = parsed.to_python(skip_empty_area=True)
    if column:
        pad = [EMPTY] * column
        rows = [pad + cells for cells in rows]
    return Window(before + row, rows)
