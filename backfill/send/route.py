"""How the sender reaches the endpoint: TLS trust and proxies, the way every HTTP tool does
them, decided once at start-up and explained when they cannot work (`wire.py` uses them).

- Certificates are always verified. The trust store is Python's default (the system's CAs),
  plus what `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR` (a hashed directory) name, so a
  private CA can be trusted without code. A name that cannot be read is a `UsageError`.
- `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (either case; lower case wins, as in curl and
  urllib) pick the proxy for the endpoint's scheme; an `https://` endpoint goes through the
  proxy in a CONNECT tunnel, so the proxy sees neither the key nor the events. NO_PROXY is
  read as curl reads it (`bypasses_proxy`): `*`, domains matched with their subdomains
  (`example.com`, `.example.com`, `*.example.com`), IP addresses and CIDR ranges (IPv6 with
  or without brackets), each optionally with `:port`; commas or spaces between them. The proxy is
  resolved here from the environment only: never `~/.netrc`, whose credentials would travel to
  the endpoint.
- Redirects are never followed (`wire.py` returns a 3xx like any answer): the sender turns a
  3xx into `RedirectRefused`.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
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
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not chosen or bypasses_proxy(host, port, proxies.get("no", "")):
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


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY names this host (a `urlsplit` hostname) and port, as curl reads it."""
    host = host.rstrip(".").lower()
    for entry in re.split(r"[,\s]+", no_proxy.lower()):
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if name and entry_port in (None, port) and _names(name, host):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, or an entry without a port (a bare IPv6 address has more
    than one colon, so its last group is not a port)."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        return inside, int(rest[1:]) if rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def _names(entry: str, host: str) -> bool:
    """A CIDR range holding the host's address, the same address, or the domain itself or
    one of its subdomains (a leading `.` or `*.` changes nothing, as in curl)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if "/" in entry:
        try:
            return address is not None and address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    try:
        return address == ipaddress.ip_address(entry)
    except ValueError:
        pass
    domain = entry.removeprefix("*").removeprefix(".").rstrip(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
