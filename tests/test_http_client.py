"""Which proxy and which CAs the session uses, read from the environment once."""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from backfill.errors import UsageError
from backfill.send.endpoint import ascii_host, check_endpoint, request_target
from backfill.send.route import Route, route_for, ssl_context

PROXY_NAMES = ["http_proxy", "https_proxy", "no_proxy", "all_proxy"]


def refusal(check: Callable[..., object], *args: object) -> str:
    """The message of the `UsageError` that `check(*args)` raises."""
    with pytest.raises(UsageError) as caught:
        check(*args)
    return str(caught.value)


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
        ({"HTTPS_PROXY": "http://proxy"}, "https://api.torque.so/events", "http://proxy"),
        (
            {"HTTPS_PROXY": "http://[fd00::1]:3128"},
            "https://api.torque.so/",
            "http://[fd00::1]:3128",
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


def test_a_proxy_user_without_a_password_sends_an_empty_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me@proxy:3128")
    route = route_for("https://api.torque.so/events")
    assert route.proxy_headers() == {
        "Proxy-Authorization": "Basic " + base64.b64encode(b"me:").decode()
    }


@pytest.mark.parametrize("proxy", ["https://proxy:3128", "socks5://proxy", "https://:3128"])
def test_a_proxy_not_reached_over_plain_http_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.replace("://", "://me:secret@"))
    assert refusal(route_for, "https://api.torque.so/events") == (
        f"HTTPS_PROXY is {proxy}: only http:// proxies are supported (an https:// endpoint "
        "still goes through them encrypted, in a CONNECT tunnel)."
    )


def test_a_proxy_port_that_is_not_a_number_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:port")
    assert refusal(route_for, "https://api.torque.so/events") == (
        "HTTPS_PROXY has a port that is not a number."
    )


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


# --- NO_PROXY as curl reads it ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_proxy", "endpoint", "bypassed"),
    [
        ("*.example.com", "https://api.example.com/events", True),
        (".example.com", "https://api.example.com/events", True),
        ("example.com", "https://example.com/events", True),
        ("example.com", "https://notexample.com/events", False),
        ("*.example.com", "https://example.org/events", False),
        ("10.0.0.0/8", "http://10.1.2.3:8080/events", True),
        ("10.0.0.0/8", "http://11.1.2.3:8080/events", False),
        ("fd00::/8", "http://[fd12::5]:8080/events", True),
        ("[::1]", "http://[::1]:8787/events", True),
        ("::1", "http://[::1]:8787/events", True),
        ("[::1]:9999", "http://[::1]:8787/events", False),
        ("localhost:8787", "http://localhost:8787/events", True),
        ("localhost:9999", "http://localhost:8787/events", False),
        ("api.example.com:443", "https://api.example.com/events", True),
        ("other.org example.com", "https://api.example.com/events", True),
        ("other.org, ,example.com", "https://api.example.com/events", True),
        ("*", "https://anything.io/events", True),
        ("", "https://api.example.com/events", False),
        ("[::1]:8787", "http://[::1]:8787/events", True),
        ("0:0:0:0:0:0:0:1", "http://[::1]:8787/events", True),  # the same address
        ("10.1.2.3/8", "http://10.9.9.9/events", True),  # host bits set: masked, as curl does
        ("not/a/range", "https://not/events", False),
        ("10.0.0.0/33", "http://10.1.2.3:8080/events", False),  # no such range
        ("10.0.0.0/8", "https://api.example.com/events", False),  # a name is in no range
        ("example.com.", "https://api.example.com/events", True),
        ("example.com", "https://api.example.com./events", True),
        ("localhost:80", "http://localhost/events", True),  # http's own port
        ("localhost:443", "http://localhost/events", False),
        ("api.example.com:443", "https://api.example.com/events", True),
    ],
)
def test_no_proxy_forms_match_as_curl_matches_them(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, endpoint: str, bypassed: bool
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (route_for(endpoint).proxy is None) is bypassed


# --- the endpoint: validated, encoded, and never in clear text to another host ---------------


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("https://api.torque.so/events", "/events"),
        ("https://api.torque.so", "/"),
        ("https://api.torque.so/my events", "/my%20events"),
        ("https://api.torque.so/événements?q=€", "/%C3%A9v%C3%A9nements?q=%E2%82%AC"),
        ("https://api.torque.so/a%20b/100%", "/a%20b/100%25"),
        ("https://api.torque.so/ev?a=1&b=x y", "/ev?a=1&b=x%20y"),
    ],
)
def test_the_endpoints_path_is_percent_encoded_once(endpoint: str, target: str) -> None:
    assert request_target(endpoint) == target


@pytest.mark.parametrize(
    ("endpoint", "said"),
    [
        ("ftp://api.torque.so/events", "not an http(s) URL"),
        ("https:///events", "not an http(s) URL"),
        ("https://api.torque.so:99999/events", "port must be a number from 1 to 65535"),
        ("https://api.torque.so:http/events", "port must be a number from 1 to 65535"),
        ("https://api torque.so/events", "the host holds a space"),
        ("https://api.torque.so/ev\nents", "line break or control character"),
        ("https://api.torque.so/ev\x7fents", "line break or control character"),
        ("https://api.torque.so:0/events", "port must be a number from 1 to 65535"),
        ("https://api\\torque.so/events", "the host holds a space or another character"),
    ],
)
def test_what_cannot_be_an_endpoint_is_a_usage_error_saying_why(endpoint: str, said: str) -> None:
    with pytest.raises(UsageError, match=re.escape(said)):
        check_endpoint(endpoint, allow_insecure=False)


def test_plain_http_to_this_machine_through_a_proxy_elsewhere_needs_allow_insecure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    with pytest.raises(UsageError, match=r"through the proxy proxy\.corp.*clear text"):
        check_endpoint("http://127.0.0.1:8787/events", allow_insecure=False)
    check_endpoint("http://127.0.0.1:8787/events", allow_insecure=True)
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    check_endpoint("http://127.0.0.1:8787/events", allow_insecure=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")  # a proxy on this machine
    monkeypatch.delenv("NO_PROXY")
    check_endpoint("http://127.0.0.2:8787/events", allow_insecure=False)


@pytest.mark.parametrize(
    "endpoint",
    ["https://api.torque.so:1/events", "https://api.torque.so:65535/", "https://API.EXAMPLE.com/"],
)
def test_ports_from_1_to_65535_and_upper_case_hosts_are_endpoints(endpoint: str) -> None:
    check_endpoint(endpoint, allow_insecure=False)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            "https://api torque.so/events",
            "--endpoint 'https://api torque.so/events': the host holds a space or another "
            "character a host name cannot hold.",
        ),
        (
            "https://a..b/events",
            "--endpoint 'https://a..b/events': the host 'a..b' is not a valid host name.",
        ),
    ],
)
def test_a_host_that_cannot_be_one_is_refused_word_for_word(endpoint: str, message: str) -> None:
    assert refusal(check_endpoint, endpoint, False) == message


@pytest.mark.parametrize("endpoint", ["http://localhost:8787/", "http://localhost.:8787/"])
def test_plain_http_to_localhost_needs_no_allow_insecure(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    check_endpoint(endpoint, allow_insecure=False)


def test_plain_http_to_another_machine_is_refused_saying_the_key_would_travel_in_clear() -> None:
    assert refusal(check_endpoint, "http://10.0.0.5:8787/events", False) == (
        "--endpoint http://10.0.0.5:8787/events is plain http to another machine: the API key "
        "would travel in clear text. Use https, or --allow-insecure if you mean it."
    )


def test_a_plain_http_proxy_elsewhere_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://[fd00::1]:3128")
    assert refusal(check_endpoint, "http://127.0.0.1:8787/events", False) == (
        "--endpoint http://127.0.0.1:8787/events is plain http and HTTP_PROXY sends it through "
        "the proxy [fd00::1]: the API key would travel there in clear text. Add the host to "
        "NO_PROXY, use https, or --allow-insecure if you mean it."
    )


@pytest.mark.parametrize(
    ("host", "on_the_wire"),
    [("api.torque.so", "api.torque.so"), ("bücher.example", "xn--bcher-kva.example")],
)
def test_a_non_ascii_host_is_resolved_and_named_in_its_idna_form(
    host: str, on_the_wire: str
) -> None:
    assert ascii_host(host) == on_the_wire


def test_a_host_with_a_space_is_a_usage_error_before_anything_is_sent(tmp_path: Path) -> None:
    from tests.conftest import run_cli, write_valid_orders

    source, mapping = write_valid_orders(tmp_path, 1)
    args = ["run", source, "--mapping", mapping, "--json", "--endpoint", "https://api torque.so/"]
    done = run_cli(*args, cwd=tmp_path)
    assert done.code == 2 and "Traceback" not in done.stderr
    assert "the host holds a space" in done.stderr
