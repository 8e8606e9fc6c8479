"""`--endpoint`: checked once, before anything is sent, and written on the wire as a URL.

- What cannot be an http(s) URL is a `UsageError` naming what is wrong: another scheme, no
  host, a port that is not a number from 1 to 65535, a space or control character in the
  host, a host name that has no ASCII (IDNA) form.
- The path and query are percent-encoded as UTF-8 where a character may not appear raw
  (a space, `é`, `€`); `%XX` already there is kept, a lone `%` becomes `%25`.
- The key travels in clear text with plain http: `--allow-insecure` is needed unless the
  endpoint and the proxy that would carry the request (HTTP_PROXY) are this machine.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit

from backfill.errors import UsageError

LOOPBACK_NAMES = {"localhost"}
_SAFE = "/:@!$&'()*+,;=-._~%"  # RFC 3986 pchar and query characters, and '%' of %XX
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BAD_HOST = re.compile(r"[\s\x00-\x1f\x7f/\\?#@]")


def check_endpoint(endpoint: str, allow_insecure: bool) -> None:
    """A `UsageError` for an endpoint that cannot work, or that would send the key in
    clear text to another machine (the endpoint, or the proxy) without --allow-insecure."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint {endpoint!r} is not an http(s) URL.")
    request_target(endpoint)  # raises for what cannot be encoded
    if parts.scheme != "http" or allow_insecure:
        return
    from backfill.send.route import route_for

    proxy = route_for(endpoint).proxy
    if not is_loopback(parts.hostname):
        raise UsageError(
            f"--endpoint {endpoint} is plain http to another machine: the API key would "
            "travel in clear text. Use https, or --allow-insecure if you mean it."
        )
    proxy_host = urlsplit(proxy).hostname if proxy else None
    if proxy_host is not None and not is_loopback(proxy_host):
        raise UsageError(
            f"--endpoint {endpoint} is plain http and HTTP_PROXY sends it through the proxy "
            f"{bracketed(proxy_host)}: the API key would travel there in clear text. Add the "
            "host to NO_PROXY, use https, or --allow-insecure if you mean it."
        )


def request_target(endpoint: str) -> str:
    """The path and query as they go in the request line, percent-encoded."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in endpoint):  # urlsplit drops some
        raise UsageError(f"--endpoint {endpoint!r} holds a line break or control character.")
    parts = urlsplit(endpoint)
    _check_authority(endpoint, parts.netloc, parts.hostname or "")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--endpoint {endpoint!r}: the port must be a number from 1 to 65535.")
    path = _encoded(parts.path) or "/"
    return path + (f"?{_encoded(parts.query)}" if parts.query else "")


def _check_authority(endpoint: str, netloc: str, host: str) -> None:
    if _BAD_HOST.search(host) or any(c in netloc for c in " \t\r\n"):
        raise UsageError(f"--endpoint {endpoint!r}: the host holds a space or another "
                         "character a host name cannot hold.")  # fmt: skip
    try:
        host.encode("idna")
    except UnicodeError:
        raise UsageError(
            f"--endpoint {endpoint!r}: the host {host!r} is not a valid host name."
        ) from None


def _encoded(text: str) -> str:
    return quote(_LONE_PERCENT.sub("%25", text), safe=_SAFE, encoding="utf-8")


def ascii_host(host: str) -> str:
    """The host as it goes in `Host:` and to the resolver: IDNA for a non-ASCII name."""
    return host if host.isascii() else host.encode("idna").decode("ascii")


def is_loopback(host: str) -> bool:
    """This machine: `localhost`, 127.0.0.0/8 or ::1 (a `urlsplit` hostname: no brackets)."""
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
