"""Text in any encoding Python knows, decoded as Arrow streams it, without one bad byte
stopping the file; and a guess at the encoding a file that is not UTF-8 was written in.

Arrow's CSV reader transcodes through a Python incremental decoder when the encoding is not
plain UTF-8. We hand it one whose error handler marks each byte that does not decode as a
private-use character (U+F0000 + the byte) instead of failing: Arrow would otherwise stop
the whole file at such a byte. The row holding a mark is then set aside as a `read` failure,
with the bytes shown as `\\xe9`.
"""

from __future__ import annotations

import codecs
import functools
import unicodedata

from backfill.errors import SourceError

MARK_BASE = 0xF0000  # Supplementary Private Use Area-A: no orders file holds these
MARK_PATTERN = "[\U000f0000-\U000f00ff]"
_ERRORS = "backfill-mark-undecodable"
_PREFIX = "backfill_marked_"
_BOMS = ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Single-byte encodings that office tools write, most common first: cp1252 is what Excel
# writes on most Windows machines in the Americas and Western Europe; cp850 what DOS-era
# tools and Windows consoles write there.
LIKELY_SINGLE_BYTE = ("cp1252", "cp850", "cp1250", "cp1251", "latin-1")
_SYMBOLS = set("£€¥°§©®±µ¿¡«»–—‘’“”•…ºª½¼¾")
_CURRENCY = set("£€¥")


class Marks:
    """How many bytes were marked so far, in any file: when it has not moved, none were."""

    count = 0


def marking_codec(encoding: str) -> str:
    """The name of a codec for Arrow: `encoding`, with undecodable bytes marked."""
    return _PREFIX + codecs.lookup(encoding).name.replace("-", "_")


def check_encoding(encoding: str) -> str:
    """Python's name for `encoding`; a clear error for one it does not know."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise SourceError(
            f"--encoding {encoding!r} is not an encoding Python knows; "
            "try cp1252, latin-1, utf-16 or utf-8."
        ) from None
    try:
        codecs.getincrementaldecoder(info.name)
    except LookupError:
        raise SourceError(f"--encoding {encoding!r} cannot decode text.") from None
    return info.name


def encoding_from_bom(head: bytes) -> str | None:
    """UTF-16 announced by its byte order mark (UTF-8's needs nothing: Arrow skips it)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None


def shown(text: str) -> str:
    """Marked bytes written as `\\xe9`, for people."""
    return "".join(
        f"\\x{ord(char) - MARK_BASE:02x}" if MARK_BASE <= ord(char) <= MARK_BASE + 0xFF else char
        for char in text
    )


def raw_bytes(text: str) -> bytes:
    """The bytes a marked UTF-8 text came from."""
    return b"".join(
        bytes([ord(char) - MARK_BASE])
        if MARK_BASE <= ord(char) <= MARK_BASE + 0xFF
        else char.encode("utf-8", "surrogatepass")
        for char in text
    )


def likely_encoding(data: bytes) -> str | None:
    """The encoding under which `data`'s non-ASCII text reads as words; None if none does.

    Words: a letter inside a Latin word is a Latin letter (`Martín`, not `Mart¡n` or
    `Martбn`), at most two in a row among ASCII ones (UTF-8 read wrongly gives `MartÃ­n`);
    letters of other scripts (Cyrillic, Greek) come in runs of their own; signs such as
    `°` stand outside words, and currency signs touch no letter. The common single-byte
    encodings are tried first (the first wins a tie), then charset-normalizer's proposals."""
    best, best_score = _best_reading(data, LIKELY_SINGLE_BYTE)
    if best_score < 1.0:
        proposed, score = _best_reading(data, _detected(data))
        if score > best_score:
            best, best_score = proposed, score
    return best if best_score >= 0.5 else None


def _best_reading(data: bytes, encodings: tuple[str, ...]) -> tuple[str | None, float]:
    best, best_score = None, 0.0
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        score = _reads_as_words(text)
        if score > best_score:
            best, best_score = encoding, score
    return best, best_score


def _detected(data: bytes) -> tuple[str, ...]:
    from charset_normalizer import from_bytes

    return tuple(match.encoding for match in from_bytes(data) if match.encoding != "ascii")


def _reads_as_words(text: str) -> float:
    """The share of the non-ASCII characters of `text` that sit as they would in words."""
    high = [i for i, char in enumerate(text) if ord(char) > 0x7F]
    if not high:
        return 0.0
    good = 0
    for i in high:
        char = text[i]
        before, after = text[i - 1 : i], text[i + 1 : i + 2]
        in_word = before.isalpha() and after.isalpha()
        if char.isalpha():
            beside_ascii = any(n.isascii() and n.isalpha() for n in before + after)
            if "LATIN" in unicodedata.name(char, ""):
                run = text[max(i - 2, 0) : i + 1]
                good += not (i >= 2 and all(ord(c) > 0x7F and c.isalpha() for c in run))
            else:
                good += not beside_ascii
        elif char in _SYMBOLS:  # a currency sign touches no letter (`5 €`, not `¥and£`)
            good += not (before.isalpha() or after.isalpha() if char in _CURRENCY else in_word)
    return good / len(high)


def not_text_reason(column: str, encoding: str | None, line: str) -> str:
    """Why a row was set aside, with the encoding it looks like where there is one."""
    if encoding is not None:
        return f"column {column!r} is not {encoding} text; check --encoding"
    guess = likely_encoding(raw_bytes(line))
    if guess is None:
        return f"column {column!r} is not UTF-8 text; save the file as UTF-8"
    return (
        f"column {column!r} is not UTF-8 text; it looks like {guess}: "
        f"try --encoding {guess}, or save the file as UTF-8"
    )


def _mark(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    Marks.count += error.end - error.start
    marked = "".join(chr(MARK_BASE + byte) for byte in error.object[error.start : error.end])
    return marked, error.end


def _find(name: str) -> codecs.CodecInfo | None:
    if not name.startswith(_PREFIX):
        return None
    try:
        base = codecs.lookup(name[len(_PREFIX) :])
    except LookupError:
        return None
    decoder = functools.partial(codecs.getincrementaldecoder(base.name), errors=_ERRORS)
    return codecs.CodecInfo(base.encode, base.decode, incrementaldecoder=decoder, name=name)


codecs.register_error(_ERRORS, _mark)
codecs.register(_find)
