"""`HttpxPoster`: the sender over any httpx transport, the unit tests' seam (`MockTransport`).

Production sends with `wire.WirePoster`; this one exists so that tests (and anyone who
wants httpx's transports) can drive the whole sender without a socket. Like the wire, it
raises `AnswerLost` when the request may have left and no answer came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from backfill.errors import AnswerLost, TransientSendError
from backfill.send.answers import CONNECT_FAILED, Reply

# httpx times each phase on its own (pool, connect, write, read); the outer bound only stops a
# transport that honours none of them (a MockTransport handler that never returns), so that
# a connection never made stays "never sent" (ConnectTimeout, PoolTimeout), as on the wire.
PHASES = 4

if TYPE_CHECKING:
    import httpx

    from backfill.send.sender import SendPolicy


class HttpxPoster:
    """POSTs through an httpx transport: `httpx.MockTransport` in tests, or any other."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        policy: SendPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx  # only here: production sends with wire.py; httpx costs 0.1 s to import

        self._httpx = httpx
        self._url = httpx.URL(url)
        self._headers = dict(headers)
        self._timeout = policy.timeout
        limits = httpx.Limits(max_connections=policy.concurrency)
        self._transport = transport or httpx.AsyncHTTPTransport(limits=limits)

    async def post(self, body: bytes) -> Reply:
        httpx = self._httpx
        request = httpx.Request("POST", self._url, headers=self._headers, content=body)
        timeout = {"connect": self._timeout, "read": self._timeout, "write": self._timeout}
        request.extensions["timeout"] = {**timeout, "pool": self._timeout}
        try:
            response = await asyncio.wait_for(
                self._transport.handle_async_request(request), PHASES * self._timeout
            )
            await response.aread()
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise TransientSendError("no connection within the timeout", kind="timeout") from None
        except (asyncio.TimeoutError, httpx.TimeoutException):  # written, never answered
            raise AnswerLost("no answer within the timeout", kind="timeout") from None
        except httpx.RemoteProtocolError:
            raise AnswerLost(
                "the server closed the connection without answering", kind="disconnected"
            ) from None
        except httpx.ConnectError:
            raise TransientSendError(
                f"cannot connect to {self._url.host}", kind=CONNECT_FAILED
            ) from None
        except (httpx.ReadError, httpx.WriteError) as exc:  # the request may have left
            raise AnswerLost(
                f"the connection failed ({type(exc).__name__})", kind="connection error"
            ) from None
        except httpx.TransportError as exc:
            raise TransientSendError(
                f"the connection failed ({type(exc).__name__})", kind="connection error"
            ) from None
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status_code, headers, response.text)

    async def aclose(self) -> None:
        await self._transport.aclose()
