"""How a CSV file is written, told from its first bytes: the delimiter and the encoding.

`backfill init` reads a file the user has not described yet; these guesses let it read the
file as `run` will be told to (the draft prints the options). The encoding comes from
charset-normalizer's candidates and a few that office tools write, and is checked against
the decoded text: the one chosen is the one under which the file's non-ASCII text reads as
words (`Martín`, `Berguvsvägen`), not as symbols inside words (`Mart¡n`, `Berguvsv„gen`:
cp850 bytes read as cp1252), nor as runs of accented letters (`Ìîñêâà`: Cyrillic read as
cp1252).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from dataclasses import dataclass

from charset_normalizer import from_bytes

HEAD_BYTES = 1 << 20  # enough lines for the delimiter, enough accents for the encoding
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_LINES = 50
# Tried first, in this order, whatever the detector says: what office tools and shops write.
COMMON_ENCODINGS = ("cp1252", "cp850", "cp1250", "cp1251", "latin-1", "cp437", "mac_roman")
WORDS_SHARE = 0.9  # of the tokens with non-ASCII letters that must read as words
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
    """(encoding, why); None when the text is UTF-8 (or ASCII) and needs no --encoding."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None, "UTF-16 with a byte order mark: read as such without --encoding"
    try:
        _whole_lines(head).decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return None, "UTF-8"
    scored = []
    for order, encoding in enumerate(_candidates(head)):
        try:
            text = _whole_lines(head).decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        scored.append((words_share(text), -order, encoding, text))
    if not scored:
        return None, "not UTF-8, and no encoding tried reads it as text"
    share, _, encoding, text = max(scored)
    if share < WORDS_SHARE:
        return None, f"not UTF-8; no encoding tried reads its accented text as words ({share:.0%})"
    example = next((t for t in _TOKEN.findall(text) if not t.isascii()), "")
    return codecs.lookup(encoding).name, f"its accented text reads as words in it ({example!r})"


def words_share(text: str) -> float:
    """The share of tokens with non-ASCII characters that read as words: letters only, and
    either Latin with at most half of them accented, or all of one other script."""
    tokens = [t for t in _TOKEN.findall(text) if not t.isascii()]
    if not tokens:
        return 1.0
    return sum(_reads_as_word(t) for t in tokens) / len(tokens)


def _reads_as_word(token: str) -> bool:
    if not token.isalpha():
        return False
    scripts = {_script(char) for char in token}
    if scripts == {"LATIN"}:
        return sum(not char.isascii() for char in token) * 2 <= len(token)
    return len(scripts) == 1


def _script(char: str) -> str:
    return unicodedata.name(char, "UNKNOWN").split()[0]


def _candidates(head: bytes) -> list[str]:
    detected = [match.encoding for match in from_bytes(head[: 1 << 16])]
    return list(dict.fromkeys([*COMMON_ENCODINGS, *detected]))


def _whole_lines(head: bytes) -> bytes:
    """`head` up to its last line break, so that a character cut in two is left out."""
    end = head.rfind(b"\n")
    return head[: end + 1] if end > 0 else head


def _decoded(head: bytes, encoding: str) -> str:
    return _whole_lines(head).decode(encoding, errors="replace")
