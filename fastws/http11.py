# cython: annotation_typing=False
"""HTTP/1.1 response heads: the only code that joins response header bytes.

Owns status lines, the check of every header an application supplies (the name an RFC 9110
§5.6.2 token, the value field-vchar / obs-text with SP and HTAB only, RFC 9110 §5.5), the
merge with the server's default headers, and the plain responses the server writes itself
(errors and refusals). Every response fastws writes goes through here: HTTP responses, the
WebSocket 101, the ``websocket.http.response`` denial and the server's own 4xx/5xx.

Knows nothing of sockets, asyncio or ASGI events beyond the ``(name, value)`` pairs a
message carries; imports nothing from fastws. Compiled builds (Cython pure-Python mode, the
types in http11.pxd) check each value in a C loop instead of the regular expression.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from typing import Any

try:
    import cython  # type: ignore[import-untyped,import-not-found,unused-ignore]

    COMPILED: bool = cython.compiled
except ImportError:  # Cython is a build requirement only
    COMPILED = False

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §5.6.2: token = 1*tchar. Names arrive lowercased here.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
# What a field value must not contain: controls other than HTAB (CR, LF and NUL among them:
# any of those would end the header line early and let the app write a header of its own).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Names that passed the check once; most responses reuse a handful, and a set lookup costs a
# fraction of the regular expression. Bounded, so that names an app makes up cannot grow it.
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_MAX = 512


def status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {s.value: status_line(s.value) for s in http.HTTPStatus}


def check_status(status: Any) -> None:
    """RuntimeError unless ``status`` is a three-digit int (RFC 9110 §15)."""
    if type(status) is not int or not 100 <= status <= 999:
        raise RuntimeError(f"Invalid HTTP status {status!r}: expected an int from 100 to 999.")


def check_token(text: str) -> str | None:
    """``text`` if it is an RFC 9110 token (any case), else None."""
    return text if _TOKEN.fullmatch(text.lower().encode("latin-1", "replace")) else None


def _as_bytes(item: Any, what: str, name: Any) -> bytes:
    if type(item) is bytes:
        return item
    if isinstance(item, str):
        try:
            return item.encode("latin-1")
        except UnicodeEncodeError:
            raise RuntimeError(
                f"Invalid HTTP header {what} in {name!r}: not latin-1 (encode it, RFC 8187)."
            ) from None
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise RuntimeError(f"Invalid HTTP header {what} {item!r}: expected bytes or str.")


def check_headers(headers: Iterable[Any]) -> Headers:
    """The application's headers as ``(lowercased name, value)`` bytes, each one checked.

    Raises RuntimeError naming the first header that could not go on the wire as given (a
    name that is not a token, a value with CR, LF, NUL or another control, a pair that is not
    two items), before anything is written, so the caller can still answer 500.
    """
    return _checked(headers, None)


def _checked(headers: Iterable[Any], parts: list[bytes] | None) -> Headers:
    # One pass: check each header and, given ``parts``, append its line too. A pair that is
    # already a tuple of a lowercase name and a value in bytes is kept as it is: no lower()
    # (a new name whose hash is computed again), no new tuple.
    out = []
    good = _GOOD_NAMES
    for pair in headers:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise RuntimeError(
                f"Invalid HTTP header {pair!r}: expected a (name, value) pair."
            ) from None
        same = type(pair) is tuple
        if type(name) is not bytes:
            name = _as_bytes(name, "name", name)
            same = False
        if _has_upper(name):
            name = name.lower()
            same = False
        if name not in good:
            if _TOKEN.fullmatch(name) is None:
                raise RuntimeError(
                    f"Invalid HTTP header name {name!r}: not an RFC 9110 token "
                    "(no spaces, colons, separators or control characters)."
                )
            if len(good) < _GOOD_NAMES_MAX:
                good.add(name)
        if type(value) is not bytes:
            value = _as_bytes(value, "value", name)
            same = False
        if _bad_value(value):
            raise RuntimeError(
                f"Invalid HTTP header value for {name!r}: CR, LF, NUL or another control "
                "character (RFC 9110 §5.5)."
            )
        out.append(pair if same else (name, value))
        if parts is not None:
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
    return out


def _has_upper(name: bytes) -> bool:
    """Whether ``name`` has an uppercase ASCII letter (a C loop when compiled)."""
    if COMPILED:
        for c in name:
            if 0x41 <= c <= 0x5A:
                return True
        return False
    return not name.islower() and name != name.lower()


def _bad_value(value: bytes) -> bool:
    """Whether ``value`` holds a byte that _BAD_VALUE matches (the same set, in a C loop when
    compiled: a few instructions a byte instead of a regular expression's call)."""
    if COMPILED:
        for c in value:
            if (c < 0x20 and c != 0x09) or c == 0x7F:
                return True
        return False
    return _BAD_VALUE.search(value) is not None


def start_head(status: Any, headers: Any, defaults: Headers) -> tuple[list[bytes], Headers]:
    """An HTTP response head from an ``http.response.start``: its status and headers checked
    (RuntimeError naming what is wrong), then the server's defaults the app did not set.

    Returns the head as parts to join, without the blank line that ends it (the caller
    appends its framing headers first), and the app's headers as checked.
    """
    line = STATUS_LINES.get(status)
    if line is None:
        check_status(status)
        line = status_line(status)
    parts = [line]
    if not headers:
        for name, value in defaults:
            parts += (name, b": ", value, b"\r\n")
        return parts, []
    checked = _checked(headers, parts)
    for default in defaults:
        name = default[0]
        # A few defaults (date, server, --header) against a few app headers: comparing the
        # names costs less than a set of the app's names.
        for pair in checked:
            if pair[0] == name:
                break
        else:
            parts += (name, b": ", default[1], b"\r\n")
    return parts, checked


def with_defaults(headers: Headers, defaults: Headers) -> Headers:
    """Checked app headers, then the server's defaults (date, server, --header) not set by them.

    With no app headers this is ``defaults`` itself: read at once, never kept or changed.
    """
    if not headers:
        return defaults
    names = {name for name, _ in headers}
    return headers + [h for h in defaults if h[0] not in names]


def head(first_line: bytes, headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """A response head as parts to join: the status line and one line per header, without the
    blank line that ends it (callers append framing headers first). ``headers`` must come
    from check_headers() or from the server itself."""
    parts = [first_line]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    return parts


def response_head(status: int, headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    return head(STATUS_LINES.get(status) or status_line(status), headers)


def simple_response(
    status: int, body: bytes, defaults: Headers, extra: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """A complete plain-text response that ends the connection (errors and refusals)."""
    parts = response_head(status, [*extra, *defaults])
    parts.append(
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    parts.append(body)
    return b"".join(parts)
