"""How a CSV file is written, told from its first bytes: the delimiter and the encoding.

`backfill init` reads a file the user has not described yet; these guesses let it read the
file as `run` will be told to (the draft prints the options). The encoding of a file that is
not UTF-8 is the one the reader's hint names (`text_codec.likely_encoding`): the one under
which the file's non-ASCII text reads as words (`Martín`, not `Mart¡n`).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass

from backfill.read.text_codec import likely_encoding

HEAD_BYTES = 1 << 20  # enough lines for the delimiter, enough accents for the encoding
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_LINES = 50
_TOKEN = re.compile(r"[^\x00-\x40\x5b-\x60\x7b-\x7f\s]+")  # runs without ASCII non-letters


@dataclass(frozen=True)
class Sniffed:
    """A CSV file's delimiter and encoding (None: UTF-8 or plain ASCII), and why."""

    delimiter: str
    encoding: str | None
    delimiter_why: str
    encoding_why: str


def sniff_csv(head: bytes) -> Sniffed:
    """The delimiter and encoding of a CSV file that starts with `head`."""
    encoding, encoding_why = sniff_encoding(head)
    text = _decoded(head, encoding or "utf-8")
    delimiter, delimiter_why = sniff_delimiter(text)
    return Sniffed(delimiter, encoding, delimiter_why, encoding_why)


def sniff_delimiter(text: str) -> tuple[str, str]:
    """The delimiter that splits the first lines into the same number of fields (more than
    one), most often; a comma when none does."""
    best: tuple[float, int, int, str] | None = None
    for rank, delimiter in enumerate(DELIMITERS):
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))[:DELIMITER_LINES]
        rows = [row for row in rows if row]
        if not rows or len(rows[0]) < 2:
            continue
        steady = sum(len(row) == len(rows[0]) for row in rows) / len(rows)
        score = (steady, len(rows[0]), -rank, delimiter)
        best = max(best, score) if best else score
    if best is None or best[0] < 0.8:
        return ",", "no delimiter splits the lines evenly: a comma, as CSV has by default"
    shown = {"\t": "a tab", ",": "a comma", ";": "a semicolon", "|": "a pipe"}[best[3]]
    return best[3], f"{shown}: it splits the header into {best[1]} columns, as it does the rows"


def sniff_encoding(head: bytes) -> tuple[str | None, str]:
    """(encoding, why); None when the text is UTF-8 (or ASCII) and needs no --encoding. The
    guess is the read hint's own (`text_codec.likely_encoding`): one rule for both."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None, "UTF-16 with a byte order mark: read as such without --encoding"
    lines = _whole_lines(head)
    try:
        lines.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return None, "UTF-8"
    guess = likely_encoding(lines)
    if guess is None:
        return None, "not UTF-8, and no encoding tried reads its accented text as words"
    text = lines.decode(guess, errors="replace")
    example = next((t for t in _TOKEN.findall(text) if not t.isascii()), "")
    return codecs.lookup(guess).name, f"its accented text reads as words in it ({example!r})"


def _whole_lines(head: bytes) -> bytes:
    """`head` up to its last line break, so that a character cut in two is left out."""
    end = head.rfind(b"\n")
    return head[: end + 1] if end > 0 else head


def _decoded(head: bytes, encoding: str) -> str:
    return _whole_lines(head).decode(encoding, errors="replace")
