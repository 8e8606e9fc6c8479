"""The failure report: one object per row that did not make it, written as the run goes.

A report is both a record for people and the input of `rerun`, so a row's original values
must come back exactly: `00123` stays text, an integer stays an integer, a timestamp keeps
its sub-second digits. JSON carries text, integers, floats, booleans and null as they are;
anything else is tagged (`{"$datetime": "2024-03-05T14:22:31.123456+00:00"}`). The CSV
form holds the same objects, with `record` and `event` as JSON text in their cells.

Lines go to the operating system as soon as they are written (`record_file.RecordFile`), so
a crash, even `kill -9`, keeps every failure that was known; a run fsyncs the report on a
timer and at the end. The file is created readable by its owner only, since it holds
customer data.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from backfill.books.record_file import PRIVATE_FILE_MODE, RecordFile
from backfill.errors import ReportError
from backfill.mapping.events import RowFailure


def source_last_part(source: str) -> str:
    """What names a SOURCE in messages and file names: its last part (`orders.csv`,
    `orders-*.csv` for a glob, a folder's or prefix's name)."""
    return source.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "source"


def report_name(source: str, rehearsal: str = "") -> str:
    """The default report's name, as `run` and `plan` have it: `<name>.failures.jsonl`, and a
    rehearsal's `<name>.sandbox.failures.jsonl`, `<name>` as the user knows the source:
    a file's own name (`Sample - Superstore.xlsx`), a glob's or a folder's stem (`orders`
    for `orders-*.csv`, `exports` for `exports/`). Only characters no file name may hold
    everywhere are replaced."""
    return source_stem(source) + f"{rehearsal}.failures.jsonl"


def source_stem(source: str) -> str:
    """A SOURCE's readable name for its records (see `report_name`)."""
    parts = source.replace("\\", "/").split("/")
    wild = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), None)
    if wild is not None:  # a glob: the text before its first wildcard, else its folder's
        before = _WILDCARD.split(parts[wild], maxsplit=1)[0].rstrip("-_. ")
        parts = parts[:wild] + ([before] if before else [])
    name = next((part for part in reversed(parts) if part not in ("", ".")), "source")
    return _UNSAFE.sub("_", name).strip(" .") or "source"


_WILDCARD = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')  # not allowed in names on Windows or POSIX


REPORT_FIELDS = (
    "row",
    "source",
    "stage",
    "reason",
    "error",
    "status",
    "attempts",
    "record",
    "event",
)
__all__ = ["PRIVATE_FILE_MODE", "REPORT_FIELDS", "ReportWriter", "read_report"]
MIN_SECRET_LENGTH = 8  # shorter "keys" are test values; scrubbing them would mangle data


def encode_value(value: Any) -> Any:
    """A record value as JSON-safe data that `decode_value` turns back into the same value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        encoded = {str(k): encode_value(v) for k, v in value.items()}
        if len(encoded) == 1 and next(iter(encoded)) in _DECODERS:
            return {"$dict": encoded}  # a dict that looks like a tag ({"$date": ...}) stays a dict
        return encoded
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    return str(value)


_DECODERS = {
    "$float": float,
    "$datetime": lambda text: _parse_datetime(text),
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$decimal": Decimal,
    "$base64": base64.b64decode,
    "$dict": lambda items: {k: decode_value(v) for k, v in items.items()},
}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            tag, payload = next(iter(value.items()))
            if tag in _DECODERS:
                return _DECODERS[tag](payload)
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def _parse_datetime(text: str) -> Any:
    """Datetimes with nanoseconds need pandas; others stay plain `datetime`s."""
    fraction = re.search(r"\.([0-9]+)", text)
    try:
        if fraction and len(fraction.group(1)) > 6:  # Python 3.11+ would drop the digits
            raise ValueError(text)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        import pandas as pd

        return pd.Timestamp(text)


def failure_to_json(failure: RowFailure) -> dict[str, Any]:
    return {
        "row": failure.row,
        "source": failure.source,
        "stage": failure.stage,
        "reason": failure.reason,
        "error": failure.error,
        "status": failure.status,
        "attempts": failure.attempts,
        "record": encode_value(failure.record),
        "event": failure.event,
    }


def failure_from_json(data: dict[str, Any]) -> RowFailure:
    return RowFailure(
        row=data.get("row"),
        source=data.get("source", ""),
        stage=data.get("stage", "mapping"),
        reason=data.get("reason") or data.get("error", ""),
        error=data.get("error", ""),
        record=decode_value(data.get("record") or {}),
        event=data.get("event"),
        status=data.get("status"),
        attempts=data.get("attempts") or 0,
    )


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class ReportWriter:
    """Appends failures to a `.jsonl` or `.csv` report, each line handed to the OS at once.

    `secrets` are scrubbed from every line: a server that echoes the API key back in an
    error message must not get it into a file.
    """

    def __init__(self, path: str | Path, secrets: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.is_csv = self.path.suffix.lower() == ".csv"
        self._secrets = [s for s in secrets if len(s) >= MIN_SECRET_LENGTH]
        self.written = 0
        self._file = RecordFile(self.path)
        if self._file.size == 0:
            if self.is_csv:
                self._write(_csv_line(REPORT_FIELDS))
            self._file.make_durable()

    def write(self, failure: RowFailure) -> None:
        data = failure_to_json(failure)
        if self.is_csv:
            cells = [data[name] for name in REPORT_FIELDS]
            cells[-2:] = [_dumps(data["record"]), _dumps(data["event"])]
            self._write(_csv_line(["" if c is None else c for c in cells]))
        else:
            self._write(_dumps(data) + "\n")
        self.written += 1

    def _write(self, line: str) -> None:
        for secret in self._secrets:
            line = line.replace(secret, "[redacted]")
        self._file.write(line.encode("utf-8"))

    def sync(self) -> None:
        self._file.sync()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _csv_line(cells: Iterable[Any]) -> str:
    cells = list(cells)
    # The writer quotes only "\n" of the line ends, but a reader also ends a row at a lone
    # "\r" (a server's message may hold one): quote every cell of such a line.
    carriage = any("\r" in cell for cell in cells if isinstance(cell, str))
    buffer = io.StringIO()
    quoting = csv.QUOTE_ALL if carriage else csv.QUOTE_MINIMAL
    csv.writer(buffer, lineterminator="\n", quoting=quoting).writerow(cells)
    return buffer.getvalue()


def read_report(path: str | Path, *, allow_torn_tail: bool = False) -> Iterator[RowFailure]:
    """Failures from a report. A crash can leave a half-written last line; with
    `allow_torn_tail` it is ignored (its row was never marked done, so it is retried)."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path}: no such report file.")
    if path.suffix.lower() == ".csv":
        yield from _read_csv_report(path)
        return
    with path.open(encoding="utf-8") as lines:
        previous: tuple[int, str] | None = None
        for number, line in enumerate(lines, start=1):
            if previous is not None:
                yield _parse_line(path, *previous)
            previous = (number, line)
        if previous is not None:
            number, line = previous
            if allow_torn_tail and not line.endswith("\n"):
                return
            yield _parse_line(path, number, line)


def _parse_line(path: Path, number: int, line: str) -> RowFailure:
    if not line.strip():
        raise ReportError(f"{path}, line {number}: empty line; expected one JSON object.")
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}, line {number}: not JSON ({exc.msg}); expected one failure object a line."
        ) from None
    if not isinstance(data, dict) or "record" not in data:
        raise ReportError(
            f"{path}, line {number}: expected an object with row, record and event; "
            f"found {type(data).__name__}."
        )
    return failure_from_json(data)


def _read_csv_report(path: Path) -> Iterator[RowFailure]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(REPORT_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise ReportError(
                f"{path}: not a backfill report; the columns {sorted(missing)} are missing."
            )
        for number, cells in enumerate(reader, start=2):
            try:
                data: dict[str, Any] = {
                    "row": int(cells["row"]) if cells["row"] else None,
                    "status": int(cells["status"]) if cells["status"] else None,
                    "attempts": int(cells["attempts"] or 0),
                    "record": json.loads(cells["record"] or "{}"),
                    "event": json.loads(cells["event"] or "null"),
                }
            except ValueError as exc:
                raise ReportError(f"{path}, line {number}: unreadable cell ({exc}).") from None
            for name in ("source", "stage", "reason", "error"):
                data[name] = cells[name]
            yield failure_from_json(data)
