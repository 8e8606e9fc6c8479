"""How the sender reaches the endpoint: TLS trust and proxies, the way every HTTP tool does
them, decided once at start-up and explained when they cannot work (`wire.py` uses them).

- Certificates are always verified. The trust store is Python's default (the system's CAs),
  plus what `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR` (a hashed directory) name, so a
  private CA can be trusted without code. A name that cannot be read is a `UsageError`.
- `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (either case; lower case wins, as in curl and
  urllib) pick the proxy for the endpoint's scheme; an `https://` endpoint goes through the
  proxy in a CONNECT tunnel, so the proxy sees neither the key nor the events. The proxy is
  resolved here from the environment only: never `~/.netrc`, whose credentials would travel to
  the endpoint.
- Redirects are never followed (`wire.py` returns a 3xx like any answer): the sender turns a
  3xx into `RedirectRefused`.
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from backfill.errors import UsageError

CERT_FILE_ENV = "SSL_CERT_FILE"
CERT_DIR_ENV = "SSL_CERT_DIR"
PRIVATE_CA_HINT = (
    f"if the endpoint uses a private CA, trust it with {CERT_FILE_ENV}=/path/to/ca-bundle.pem "
    f"(or {CERT_DIR_ENV})"
)


@dataclass(frozen=True)
class Route:
    """How requests reach the endpoint: directly, or through a forward proxy."""

    proxy: str | None = None  # the proxy's URL without credentials
    proxy_user: str | None = None
    proxy_password: str | None = None

    def __repr__(self) -> str:  # never show proxy credentials
        return f"Route(proxy={self.proxy!r})"

    def proxy_headers(self) -> dict[str, str]:
        """`Proxy-Authorization` for credentials in the proxy's URL (Basic, as curl does)."""
        if self.proxy_user is None:
            return {}
        pair = f"{self.proxy_user}:{self.proxy_password or ''}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def ssl_context() -> ssl.SSLContext:
    """A verifying context: the system's CAs plus SSL_CERT_FILE / SSL_CERT_DIR."""
    context = ssl.create_default_context()
    cafile = os.environ.get(CERT_FILE_ENV, "").strip()
    capath = os.environ.get(CERT_DIR_ENV, "").strip()
    if cafile:
        if not Path(cafile).is_file():
            raise UsageError(f"{CERT_FILE_ENV}={cafile}: no such file; name a PEM CA bundle.")
        try:
            context.load_verify_locations(cafile=cafile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UsageError(
                f"{CERT_FILE_ENV}={cafile} cannot be read as PEM certificates ({exc})."
            ) from None
    if capath:
        if not Path(capath).is_dir():
            raise UsageError(f"{CERT_DIR_ENV}={capath}: no such directory.")
        context.load_verify_locations(capath=capath)
    return context


def route_for(endpoint: str) -> Route:
    """The proxy the environment names for this endpoint, or none (NO_PROXY, or unset)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(parts.scheme)
    if not chosen or urllib.request.proxy_bypass_environment(host, proxies):
        return Route()
    variable = f"{parts.scheme.upper()}_PROXY"
    if "://" not in chosen:
        chosen = "http://" + chosen  # curl reads a bare host:port as an http proxy
    proxy = urlsplit(chosen)
    if proxy.scheme != "http" or not proxy.hostname:
        raise UsageError(
            f"{variable} is {_without_credentials(chosen)}: only http:// proxies are supported "
            "(an https:// endpoint still goes through them encrypted, in a CONNECT tunnel)."
        )
    try:
        port = proxy.port
    except ValueError:
        raise UsageError(f"{variable} has a port that is not a number.") from None
    netloc = proxy.hostname if ":" not in proxy.hostname else f"[{proxy.hostname}]"
    url = f"http://{netloc}" + (f":{port}" if port else "")
    user = urllib.request.unquote(proxy.username) if proxy.username is not None else None
    password = urllib.request.unquote(proxy.password) if proxy.password is not None else None
    return Route(url, user, password)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
