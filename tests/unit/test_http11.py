"""fastws.http11: the header checks and the bytes of response heads, without a socket."""

from __future__ import annotations

import pytest

from fastws import http11
from fastws.ws import handshake

DEFAULTS = [(b"date", b"Tue, 01 Dec 2026 00:00:00 GMT"), (b"server", b"fastws")]


def test_check_headers_lowercases_and_encodes_str_and_bytes():
    assert http11.check_headers([(b"X-A", b"1"), ("Content-Type", "text/plain")]) == [
        (b"x-a", b"1"),
        (b"content-type", b"text/plain"),
    ]


def test_values_may_hold_space_tab_and_obs_text():
    value = b"a b\tc \x80\xff"
    assert http11.check_headers([(b"x", value)]) == [(b"x", value)]
    assert http11.check_headers([(b"x", "caf\u00e9")]) == [(b"x", b"caf\xe9")]


@pytest.mark.parametrize(
    "name",
    [b"", b"a b", b"a:", b"a\r\nb", b"a\nb", b"a\x00", b"(a)", b"a/b", b"a\x7f", b"\xe9", "\u20ac"],
    ids=repr,
)
def test_names_that_are_not_tokens_are_refused_by_name(name):
    with pytest.raises(RuntimeError, match="header name") as info:
        http11.check_headers([(name, b"v")])
    assert "header" in str(info.value)


@pytest.mark.parametrize(
    "value", [b"a\rb", b"a\nb", b"a\r\nx-i: 1", b"\x00", b"\x1b", b"\x7f", "\u20ac"], ids=repr
)
def test_values_with_controls_are_refused_naming_the_header(value):
    with pytest.raises(RuntimeError, match="x-name"):
        http11.check_headers([(b"X-Name", value)])


@pytest.mark.parametrize("pair", [(b"a",), (b"a", b"b", b"c"), b"ab", 5, (1, b"v"), (b"a", None)])
def test_malformed_pairs_are_refused(pair):
    with pytest.raises(RuntimeError, match="Invalid HTTP header"):
        http11.check_headers([pair])


def test_a_name_checked_once_is_remembered_but_the_cache_is_bounded():
    for i in range(http11._GOOD_NAMES_MAX + 50):
        http11.check_headers([(b"x-made-up-%d" % i, b"v")])
    assert len(http11._GOOD_NAMES) <= http11._GOOD_NAMES_MAX
    with pytest.raises(RuntimeError):  # a bad name is never cached
        http11.check_headers([(b"x made up", b"v")])


def test_with_defaults_keeps_the_app_header_of_the_same_name():
    app = [(b"server", b"mine"), (b"x-a", b"1")]
    assert http11.with_defaults(app, DEFAULTS) == [*app, DEFAULTS[0]]
    assert http11.with_defaults([], DEFAULTS) is DEFAULTS


@pytest.mark.parametrize("status", [99, 1000, "200", 200.0, None])
def test_check_status_refuses_what_is_not_three_digits(status):
    with pytest.raises(RuntimeError, match="Invalid HTTP status"):
        http11.check_status(status)


def test_status_lines_for_known_and_unknown_codes():
    assert http11.STATUS_LINES[505] == b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    assert http11.status_line(599) == b"HTTP/1.1 599 \r\n"


def test_simple_response_bytes():
    assert http11.simple_response(400, b"bad", DEFAULTS, [(b"x-extra", b"1")]) == (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"x-extra: 1\r\n"
        b"date: Tue, 01 Dec 2026 00:00:00 GMT\r\nserver: fastws\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: 3\r\nconnection: close\r\n"
        b"\r\nbad"
    )


def test_the_101_and_the_rejection_are_built_by_http11():
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    response = handshake.accept_response(key, "chat", None, DEFAULTS)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert response.endswith(b"server: fastws\r\n\r\n") and response.count(b"\r\n\r\n") == 1
    rejection = handshake.Rejection(426, "nope", [(b"sec-websocket-version", b"13")])
    assert handshake.rejection_response(rejection, DEFAULTS) == http11.simple_response(
        426, b"nope\n", DEFAULTS, rejection.headers
    )


def test_check_token_for_subprotocols():
    assert http11.check_token("graphql-ws") == "graphql-ws"
    for bad in ("", "a b", "a\r\n", "caf\u00e9", "a,b"):
        assert http11.check_token(bad) is None


# -- both builds (the compiled one checks names and values in C loops) ---------------------


def test_start_head_keeps_checked_pairs_and_lowercases_the_rest(http11_build):
    kept = (b"content-type", b"text/plain")
    listed = [b"x-list", b"1"]
    head, checked = http11_build.start_head(
        201, [kept, (b"X-Mixed", b"2"), ("x-str", "3"), listed], DEFAULTS
    )
    assert checked == [kept, (b"x-mixed", b"2"), (b"x-str", b"3"), (b"x-list", b"1")]
    assert checked[0] is kept  # already lowercase bytes in a tuple: not rebuilt
    assert all(type(pair) is tuple for pair in checked)
    assert b"".join(head) == (
        b"HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nx-mixed: 2\r\nx-str: 3\r\n"
        b"x-list: 1\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\nserver: fastws\r\n"
    )


def test_start_head_an_app_header_replaces_the_default_of_that_name(http11_build):
    head, _ = http11_build.start_head(200, [(b"Server", b"mine"), (b"x-a", b"1")], DEFAULTS)
    joined = b"".join(head)
    assert joined.count(b"server:") == 1 and b"server: mine\r\n" in joined
    assert b"date: Tue, 01 Dec 2026" in joined
    head, checked = http11_build.start_head(200, [], DEFAULTS)
    assert checked == [] and b"".join(head).endswith(b"server: fastws\r\n")


@pytest.mark.parametrize("name", [b"X-Ok", b"ALLCAPS", b"a-Z", b"z9-Q"])
def test_uppercase_anywhere_in_a_name_is_lowercased(http11_build, name):
    assert http11_build._checked([(name, b"v")], None) == [(name.lower(), b"v")]


@pytest.mark.parametrize("value", [b"a\rb", b"\x00", b"\x7f", b"ok\n"], ids=repr)
def test_both_builds_refuse_control_characters(http11_build, value):
    with pytest.raises(RuntimeError, match="x-v"):
        http11_build.start_head(200, [(b"X-V", value)], DEFAULTS)
