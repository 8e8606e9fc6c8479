"""Solana public keys: base58 text of exactly 32 bytes.

Checked before sending because Torque rejects a bad key one request at a time; catching it
here puts the row in the report with a precise reason instead of spending a request.
"""

from __future__ import annotations

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PUBKEY_BYTES = 32
_DIGITS = {char: value for value, char in enumerate(BASE58_ALPHABET)}


def b58encode(raw: bytes) -> str:
    """Base58 text of `raw` (Bitcoin alphabet), as Solana writes public keys."""
    number = int.from_bytes(raw, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = BASE58_ALPHABET[digit] + text
    leading_zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * leading_zeros + text


def decoded_length(text: str) -> int | None:
    """How many bytes `text` decodes to, or None when it is not base58."""
    number = 0
    for char in text:
        digit = _DIGITS.get(char)
        if digit is None:
            return None
        number = number * 58 + digit
    leading_ones = len(text) - len(text.lstrip("1"))
    return leading_ones + (number.bit_length() + 7) // 8


def base58_span(byte_count: int) -> tuple[str, str]:
    """The base58 digits of the smallest number of exactly `byte_count` bytes and of the
    first one too large: the alphabet is in ASCII order, so (length, text) compares like the
    number, and a column can be checked with string comparisons instead of decoding it."""
    if byte_count <= 0:
        return "", BASE58_ALPHABET[1]
    return b58encode(b"\x01" + bytes(byte_count - 1)), b58encode(b"\x01" + bytes(byte_count))


def pubkey_problem(text: object) -> str | None:
    """Why `text` is not a Solana public key, or None when it is one."""
    if not isinstance(text, str):
        return f"expected base58 text, found {type(text).__name__}"
    if not 32 <= len(text) <= 44:
        return f"expected 32 to 44 base58 characters, found {len(text)}"
    bad = sorted({char for char in text if char not in _DIGITS})
    if bad:
        return f"{''.join(bad)!r} is not in the base58 alphabet (no 0, O, I or l)"
    length = decoded_length(text)
    if length != PUBKEY_BYTES:
        return f"decodes to {length} bytes, expected {PUBKEY_BYTES}"
    return None
