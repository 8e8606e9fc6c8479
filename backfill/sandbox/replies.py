"""How the sandbox answers, as Torque does: `{status, message}` errors, Retry-After, silence.

Shared by the server's own checks (key, rate, validation) and the faults it injects, so an
injected 429 looks exactly like a real one.
"""

from __future__ import annotations

import json
import math
import time
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web

SUCCESS = b'{"status":"SUCCESS","data":{"accepted":true}}'


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a code Python does not name, e.g. a fault of "499"
        return "Error"


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    code = phrase(status).upper().replace(" ", "_").replace("-", "_")
    body = json.dumps({"status": code, "message": message})
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


def retry_after(seconds: int, retry_after_format: str) -> dict[str, str]:
    """The Retry-After header: whole seconds (at least 1), or the HTTP date they end at."""
    seconds = max(1, seconds)
    if retry_after_format == "http-date":
        return {"Retry-After": formatdate(math.ceil(time.time()) + seconds, usegmt=True)}
    return {"Retry-After": str(seconds)}


def drop(request: web.Request) -> web.Response:
    """Close the connection with no answer; aiohttp ignores the response it cannot write."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
