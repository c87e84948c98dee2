"""caused_by_disconnect(): which exceptions are the client going away (ASGI 2.4), not app errors."""

from __future__ import annotations

from fastws.transport import ClientDisconnected, caused_by_disconnect


class FrameworkDisconnect(Exception):
    """What Starlette raises from an OSError out of send() (ClientDisconnect and the like)."""


def raised_from(inner: BaseException, *, explicit: bool) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            if explicit:
                raise FrameworkDisconnect() from exc
            raise FrameworkDisconnect()  # noqa: B904 - the implicit __context__ is the point
    except FrameworkDisconnect as outer:
        return outer


def test_our_own_exception_and_ones_raised_while_handling_it():
    assert caused_by_disconnect(ClientDisconnected())
    assert caused_by_disconnect(raised_from(ClientDisconnected(), explicit=True))
    assert caused_by_disconnect(raised_from(ClientDisconnected(), explicit=False))
    assert caused_by_disconnect(
        raised_from(raised_from(ClientDisconnected(), explicit=False), explicit=True)
    )


def test_other_errors_are_app_errors():
    assert not caused_by_disconnect(None)
    assert not caused_by_disconnect(ValueError("bug"))
    assert not caused_by_disconnect(OSError("the app's own socket failed"))
    assert not caused_by_disconnect(raised_from(KeyError("x"), explicit=False))


def test_a_cycle_in_the_context_chain_ends():
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not caused_by_disconnect(a)
