"""What each answer means, decided in one place so that retry logic looks at a class, not text.

401/403, a 3xx (never followed) and a certificate that does not verify stop the run; other
4xx are final for the row; 408/425/429, 5xx, timeouts and dropped connections are retried.
`Retry-After` is read here, on any status, as seconds or an HTTP date.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import NamedTuple

from backfill.errors import (
    AuthRejected,
    EventRejected,
    RateLimited,
    RedirectRefused,
    TransientSendError,
)

SLOW_DOWN_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403})
_DELAY_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")  # RFC 9110 says digits; some send 1.5
MAX_RETRY_AFTER = 7 * 86400.0  # beyond a week the value is nonsense: read as a week
CONNECT_FAILED = "connect failed"  # the kind that says the server is not there at all


class Reply(NamedTuple):  # NamedTuples: made for every request, and cheaper than dataclasses
    status: int
    headers: Mapping[str, str]
    text: str


def server_message(reply: Reply) -> str:
    """The `message` of Torque's error envelope, or the start of whatever came back."""
    try:
        data = json.loads(reply.text)
    except ValueError:
        return reply.text.strip()
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return reply.text.strip()


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delay-seconds (digits) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.match(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def check_reply(reply: Reply) -> int:
    """Raise the `SendError` subclass that says what to do next; the status if accepted."""
    status = reply.status
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        location = reply.headers.get("location") or "(no Location header)"
        raise RedirectRefused(
            f"the endpoint answered HTTP {status}, a redirect to {location}. backfill never "
            "follows redirects: the API key would travel to another address, and a redirected "
            "POST delivers nothing. Check --endpoint.",
            status=status,
        )
    message = server_message(reply)
    described = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    retry_after = retry_after_seconds(reply.headers.get("retry-after"))
    if status in AUTH_STATUSES:
        raise AuthRejected(
            f"the server refused the API key ({described}); check TORQUE_API_KEY "
            "and that the key belongs to this endpoint and --api.",
            status=status,
        )
    if status in SLOW_DOWN_STATUSES:
        raise RateLimited(described, status=status, retry_after=retry_after)
    if status >= 500:
        raise TransientSendError(described, status=status, retry_after=retry_after)
    raise EventRejected(message or described, status=status)


def is_final_rejection(status: int | None) -> bool:
    """A 4xx the server will answer the same way every time: the row itself is refused."""
    return status is not None and 400 <= status < 500 and status not in SLOW_DOWN_STATUSES
