"""Which proxy and which CAs the session uses, read from the environment once."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from backfill.errors import UsageError
from backfill.send.route import Route, route_for, ssl_context

PROXY_NAMES = ["http_proxy", "https_proxy", "no_proxy", "all_proxy"]


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@pytest.mark.parametrize(
    ("settings", "endpoint", "proxy"),
    [
        ({}, "https://api.torque.so/events", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.torque.so/events", "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128"}, "https://api.torque.so/events", "http://proxy:3128"),
        ({"HTTPS_PROXY": "proxy:3128"}, "https://api.torque.so/events", "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128"}, "https://api.torque.so/events", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8787/events", "http://proxy:3128"),
        (
            {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"},
            "https://api.torque.so/events",
            "http://lower:2",
        ),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "torque.so"},
            "https://api.torque.so/events",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": ".torque.so,localhost"},
            "https://api.torque.so/events",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"},
            "https://api.torque.so/events",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example.com"},
            "https://api.torque.so/events",
            "http://proxy:3128",
        ),
    ],
)
def test_the_proxy_follows_the_environment_like_curl(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], endpoint: str, proxy: str | None
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert route_for(endpoint).proxy == proxy


def test_proxy_credentials_are_used_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me:s%40cret@proxy:3128")
    route = route_for("https://api.torque.so/events")
    assert route.proxy == "http://proxy:3128"
    assert route.proxy_headers() == {
        "Proxy-Authorization": "Basic " + base64.b64encode(b"me:s@cret").decode()
    }
    assert "s@cret" not in repr(route) and "s%40cret" not in repr(route)
    assert Route().proxy_headers() == {}


@pytest.mark.parametrize("proxy", ["https://proxy:3128", "socks5://proxy:1080"])
def test_a_proxy_not_reached_over_plain_http_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.replace("://", "://me:secret@"))
    with pytest.raises(UsageError, match=r"HTTPS_PROXY is .*only http:// proxies") as caught:
        route_for("https://api.torque.so/events")
    assert "secret" not in str(caught.value)


def test_ssl_cert_file_adds_a_private_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trustme

    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    def trusts_it(context: ssl.SSLContext) -> bool:
        return any("trustme" in str(cert["subject"]) for cert in context.get_ca_certs())

    assert not trusts_it(ssl_context())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    context = ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert trusts_it(context)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("SSL_CERT_FILE", lambda p: p / "missing.pem", "no such file"),
        ("SSL_CERT_FILE", lambda p: p, "no such file"),
        ("SSL_CERT_DIR", lambda p: p / "missing", "no such directory"),
    ],
)
def test_ca_settings_that_cannot_be_read_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, make: object, message: str
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv(name, str(make(tmp_path)))  # type: ignore[operator]
    with pytest.raises(UsageError, match=f"{name}=.*{message}"):
        ssl_context()


def test_a_file_that_is_not_pem_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_FILE", str(junk))
    with pytest.raises(UsageError, match="cannot be read as PEM certificates"):
        ssl_context()
