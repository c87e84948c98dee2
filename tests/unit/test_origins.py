"""``--ws-allowed-origins``: pattern compilation and Origin matching (fastws.ws.handshake), the
Config option and its validation, and the CLI flag. No sockets; the live checks are in
tests/integration/test_origins.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from fastws import cli
from fastws.config import Config, option_default
from fastws.ws import handshake
from fastws.ws.origins import AllowedOrigins, check_origin, compile_origins, origin_allowed

pytestmark = pytest.mark.timeout(30)


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    for name in ("fastws", "fastws.error", "fastws.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def quiet(**kwargs: Any) -> Config:
    return Config(asgi_app, log_config=None, **kwargs)


PATTERNS = [
    "https://app.example.com",
    "https://*.example.org",
    "http://127.0.0.1:8000",
    "http://localhost:3000",
    "https://[::1]:8443",
    "chrome-extension://abcdefghijklmnop",
]


@pytest.fixture(scope="module")
def allowed() -> AllowedOrigins:
    return compile_origins(PATTERNS)


# --------------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        b"https://app.example.com",
        "HTTPS://APP.EXAMPLE.COM",  # scheme and host compare case-insensitively
        "https://App.Example.Com:443",  # the default port, written out
        "https://a.example.org",  # wildcard: one label
        "https://a.b.c.example.org",  # wildcard: several labels
        "https://A.Example.ORG",
        "http://127.0.0.1:8000",
        "http://localhost:3000",
        "https://[::1]:8443",
        "https://[0:0:0:0:0:0:0:1]:8443",  # IPv6 compares by address
        "chrome-extension://abcdefghijklmnop",
    ],
)
def test_allowed_origins_match(allowed: AllowedOrigins, origin: str | bytes) -> None:
    assert origin_allowed(origin, allowed) is True


@pytest.mark.parametrize(
    "origin",
    [
        None,  # no Origin header
        "",
        "null",  # opaque origin: sandboxed iframes, file:// pages
        "https://example.com",  # not app.
        "https://evil.com",
        "http://app.example.com",  # scheme differs
        "wss://app.example.com",
        "https://app.example.com:8443",  # port differs
        "https://app.example.com.evil.com",  # suffix attack
        "https://evilapp.example.com",
        "https://example.org",  # wildcard does not cover the bare domain
        "https://evilexample.org",  # nor a name that merely ends with it
        "https://example.org.evil.com",
        "https://.example.org",  # empty label
        "http://a.example.org",  # wildcard keeps the scheme
        "https://a.example.org:444",  # and the port
        "http://127.0.0.1",  # port 80, not 8000
        "http://127.0.0.1:8001",
        "http://localhost:3000/",  # an origin has no path
        "http://localhost:3000/app",
        "http://user@localhost:3000",
        "http://localhost:3000?x",
        "http://localhost:abc",
        "http://localhost:99999",
        "https://[::2]:8443",
        "https://[::1]",
        "https://[nonsense]:8443",
        "https://app.example.com\x00",
        "chrome-extension://other",
        "https://app.example.com, https://evil.com",
        "*",
    ],
)
def test_other_origins_do_not_match(allowed: AllowedOrigins, origin: str | None) -> None:
    assert origin_allowed(origin, allowed) is False


def test_default_ports_make_patterns_equal() -> None:
    assert origin_allowed("https://a.test", compile_origins(["https://a.test:443"]))
    assert origin_allowed("http://a.test:80", compile_origins(["http://a.test"]))
    assert not origin_allowed("http://a.test:443", compile_origins(["https://a.test"]))


def test_wildcard_with_port() -> None:
    allowed = compile_origins(["http://*.dev.test:5173"])
    assert origin_allowed("http://ui.dev.test:5173", allowed)
    assert not origin_allowed("http://ui.dev.test", allowed)
    assert not origin_allowed("http://dev.test:5173", allowed)


def test_idna_pattern_matches_the_punycode_browsers_send() -> None:
    allowed = compile_origins(["https://bücher.example", "https://*.münchen.test"])
    assert origin_allowed("https://xn--bcher-kva.example", allowed)
    assert origin_allowed("https://shop.xn--mnchen-3ya.test", allowed)
    assert not origin_allowed("https://bücher.example", allowed)  # raw UTF-8 is not an origin


def test_patterns_are_kept_as_written_and_stripped() -> None:
    allowed = compile_origins([" https://A.test ", "https://*.b.test"])
    assert allowed.patterns == ("https://A.test", "https://*.b.test")
    assert allowed.exact == {("https", "a.test", 443)}
    assert allowed.wildcards == (("https", ".b.test", 443),)


# --------------------------------------------------------------------------------------------
# check_origin: headers in, rejection out
# --------------------------------------------------------------------------------------------


def test_check_origin_accepts_an_allowed_origin(allowed: AllowedOrigins) -> None:
    headers = [(b"host", b"x"), (b"origin", b"https://app.example.com")]
    assert check_origin(headers, allowed) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(b"host", b"x")], "Origin header required"),
        ([(b"origin", b"https://evil.com")], "Origin 'https://evil.com' is not allowed"),
        (
            [(b"origin", b"https://app.example.com"), (b"origin", b"https://evil.com")],
            "more than one Origin header",
        ),
        (
            [(b"origin", b"https://app.example.com"), (b"origin", b"https://app.example.com")],
            "more than one Origin header",
        ),
    ],
)
def test_check_origin_refuses_with_403(
    allowed: AllowedOrigins, headers: list[tuple[bytes, bytes]], reason: str
) -> None:
    rejection = check_origin(headers, allowed)
    assert rejection == handshake.Rejection(403, reason)
    response = handshake.rejection_response(rejection, [])
    assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"connection: close\r\n" in response


def test_check_origin_truncates_a_huge_origin_in_the_reason(allowed: AllowedOrigins) -> None:
    rejection = check_origin([(b"origin", b"https://" + b"a" * 5000 + b".com")], allowed)
    assert rejection is not None and len(rejection.reason) < 300


# --------------------------------------------------------------------------------------------
# bad patterns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("*", "leave the option unset"),
        ("null", "opaque origin 'null'"),
        ("https://app.example.com/", "no path"),
        ("https://app.example.com/path", "no path"),
        ("app.example.com", "scheme://host"),
        ("https://", "scheme://host"),
        ("https://a.test:0x50", "scheme://host"),
        ("https://a.test:65536", "scheme://host"),
        ("https://user@a.test", "scheme://host"),
        ("1https://a.test", "scheme://host"),
        ("https://*", "whole first label"),
        ("https://*example.com", "whole first label"),
        ("https://app.*.example.com", "whole first label"),
        ("https://*.*.example.com", "whole first label"),
        ("*://example.com", "scheme://host"),
        ("https://*.10.0.0.1", "not an IP address"),
        ("https://*.[::1]", "not an IP address"),
    ],
)
def test_bad_patterns_are_rejected_naming_them(pattern: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_origins([pattern])
    assert str(info.value).startswith(repr(pattern))
    assert message in str(info.value)


def test_no_pattern_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one origin"):
        compile_origins([])


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def test_default_is_none_and_written_once() -> None:
    assert option_default("ws_allowed_origins") is None
    config = quiet()
    assert config.ws_allowed_origins is None
    config.load()
    assert config.allowed_origins is None


def test_list_and_comma_separated_forms() -> None:
    a = quiet(ws_allowed_origins=["https://a.test", "https://*.b.test"])
    b = quiet(ws_allowed_origins="https://a.test, https://*.b.test")
    assert a.ws_allowed_origins == b.ws_allowed_origins == ["https://a.test", "https://*.b.test"]


def test_patterns_are_compiled_once_by_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastws.config as config_module

    calls: list[list[str]] = []
    real = config_module.compile_origins

    def counting(patterns: list[str]) -> AllowedOrigins:
        calls.append(list(patterns))
        return real(patterns)

    monkeypatch.setattr(config_module, "compile_origins", counting)
    config = quiet(ws_allowed_origins=["https://a.test"])
    assert config.allowed_origins is None  # not before load()
    calls.clear()  # __init__ validated them
    config.load()
    config.load()
    assert calls == [["https://a.test"]]
    assert config.allowed_origins is not None
    assert origin_allowed("https://a.test", config.allowed_origins)


@pytest.mark.parametrize(
    "value",
    [[], "", " , ", ["https://a.test", "https://b.test/"], "https://*.*.x", 42, [b"https://a"]],
)
def test_invalid_values_raise_naming_the_option(value: Any) -> None:
    with pytest.raises(ValueError, match="^invalid ws_allowed_origins: "):
        quiet(ws_allowed_origins=value)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run", lambda app, **options: recorded.append(options))
    for name in list(os.environ):
        if name.startswith(("FASTWS_", "UVICORN_")) and "EXTENSIONS" not in name:
            monkeypatch.delenv(name)
    return recorded


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.main, ["main:app", *args], env=env)


def test_cli_default_is_none(calls: list[dict[str, Any]]) -> None:
    assert invoke([]).exit_code == 0
    assert calls[0]["ws_allowed_origins"] is None


def test_cli_comma_separated_and_repeated(calls: list[dict[str, Any]]) -> None:
    result = invoke(
        [
            "--ws-allowed-origins",
            "https://a.test,https://*.b.test",
            "--ws-allowed-origins",
            " http://localhost:3000 ",
        ]
    )
    assert result.exit_code == 0, result.output
    assert calls[0]["ws_allowed_origins"] == [
        "https://a.test",
        "https://*.b.test",
        "http://localhost:3000",
    ]


def test_cli_from_environment(calls: list[dict[str, Any]]) -> None:
    env = {"FASTWS_WS_ALLOWED_ORIGINS": "https://a.test,https://*.b.test"}
    assert invoke([], env=env).exit_code == 0
    assert calls[0]["ws_allowed_origins"] == ["https://a.test", "https://*.b.test"]


@pytest.mark.parametrize("value", ["", "https://a.test/", "*", "null", "https://a.*.test"])
def test_cli_bad_value_is_usage_error_naming_the_flag(
    calls: list[dict[str, Any]], value: str
) -> None:
    result = invoke(["--ws-allowed-origins", value])
    assert result.exit_code == 2, result.output
    assert "'--ws-allowed-origins'" in result.output
    assert calls == []


def test_cli_help_mentions_the_flag() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert "--ws-allowed-origins" in result.output
