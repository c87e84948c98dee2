"""Wakeups: how a message reaches the task of an app waiting in receive().

The task's wake-up runs either at once (inside the read callback that calls wake()) while the
loop's passes carry one read each, or in one batch after the pass's reads. These tests drive
Wakeups from plain loop callbacks, as the transport does, on the compiled and the pure-Python
build of fastws.ws.protocol.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

# `protocol` (both builds of fastws.ws.protocol) and `loop` come from conftest.py.


class App:
    """A task that awaits one future per message, as an app awaits receive()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: list[Any], name: str = "app"):
        self.loop = loop
        self.log = log
        self.name = name
        self.future: asyncio.Future[Any] | None = None
        self.task = loop.create_task(self.run())

    async def run(self) -> None:
        while True:
            self.future = self.loop.create_future()
            value = await self.future
            self.log.append((self.name, "resumed", value))
            if value == "exit":
                raise SystemExit(3)


def settle(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.01))


def deliver(loop, wakeups, *apps_and_values) -> None:  # type: ignore[no-untyped-def]
    """One loop pass's reads: wake() for each (app, value), from one plain callback."""

    def reads() -> None:
        for app, value in apps_and_values:
            wakeups.wake(app.future, value, loop)
            app.log.append((app.name, "wake returned", value))

    loop.call_soon(reads)
    settle(loop)


def test_one_read_per_pass_runs_the_app_inside_wake(protocol, loop):
    log: list[Any] = []
    app = App(loop, log)
    wakeups = protocol.Wakeups()
    settle(loop)

    deliver(loop, wakeups, (app, 0))  # no batch seen yet: batched, the app runs after
    assert log == [("app", "wake returned", 0), ("app", "resumed", 0)]
    assert wakeups.alone  # that batch held one wake-up

    log.clear()
    deliver(loop, wakeups, (app, 1))
    assert log == [("app", "resumed", 1), ("app", "wake returned", 1)]


def test_every_sixteenth_lone_read_is_batched_to_look_for_others(protocol, loop):
    log: list[Any] = []
    app = App(loop, log)
    wakeups = protocol.Wakeups()
    settle(loop)
    deliver(loop, wakeups, (app, "first"))
    order = []
    for i in range(32):
        log.clear()
        deliver(loop, wakeups, (app, i))
        order.append("now" if log[0][1] == "resumed" else "batched")
    assert order == (["now"] * 15 + ["batched"]) * 2
    assert wakeups.alone  # the sampled batches held one wake-up each


def test_reads_of_one_pass_are_batched_and_the_apps_run_after_all_of_them(protocol, loop):
    log: list[Any] = []
    a, b = App(loop, log, "a"), App(loop, log, "b")
    wakeups = protocol.Wakeups()
    settle(loop)
    deliver(loop, wakeups, (a, 0), (b, 0))
    assert log == [
        ("a", "wake returned", 0),
        ("b", "wake returned", 0),
        ("a", "resumed", 0),
        ("b", "resumed", 0),
    ]
    assert not wakeups.alone

    # Running at once after lone passes, the sampled read finds the others of its pass.
    deliver(loop, wakeups, (a, 1))
    assert wakeups.alone
    for i in range(2, 17):
        deliver(loop, wakeups, (a, i))  # the 15 run at once, then one batched with b's below
    log.clear()
    deliver(loop, wakeups, (a, 17), (b, 17))
    assert log[:2] == [("a", "wake returned", 17), ("b", "wake returned", 17)]
    assert not wakeups.alone


def test_the_app_resumes_as_its_task_in_its_context(protocol, loop):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[Any] = []
    futures: list[asyncio.Future[Any]] = []

    async def app() -> None:
        var.set("app's")
        me = asyncio.current_task()
        for _ in range(20):
            futures.append(loop.create_future())
            await futures[-1]
            seen.append((var.get(), asyncio.current_task() is me))

    wakeups = protocol.Wakeups()
    task = loop.create_task(app())
    settle(loop)
    for i in range(20):  # both ways: the first batched, then at once, one sampled batch
        loop.call_soon(wakeups.wake, futures[-1], i, loop)
        settle(loop)
    assert task.done() and task.exception() is None
    assert seen == [("app's", True)] * 20
    assert var.get() == "unset"  # nothing leaked into the context the callbacks ran in


def test_a_future_without_exactly_one_callback_is_completed_as_by_set_result(protocol, loop):
    wakeups = protocol.Wakeups()
    lone = loop.create_future()
    loop.call_soon(wakeups.wake, lone, "v", loop)
    settle(loop)
    assert lone.result() == "v"

    called: list[Any] = []
    two = loop.create_future()
    two.add_done_callback(lambda f: called.append(("one", f.result())))
    two.add_done_callback(lambda f: called.append(("two", f.result())))

    def read() -> None:
        wakeups.wake(two, "w", loop)
        called.append("wake returned")

    loop.call_soon(read)
    settle(loop)
    assert called == ["wake returned", ("one", "w"), ("two", "w")]


def test_a_task_cancelled_after_its_message_is_batched_gets_cancelled(protocol, loop):
    log: list[Any] = []
    app = App(loop, log)
    wakeups = protocol.Wakeups()
    settle(loop)

    def read_then_cancel() -> None:
        wakeups.wake(app.future, "late", loop)  # batched: no batch seen yet
        app.task.cancel()

    loop.call_soon(read_then_cancel)
    settle(loop)
    assert app.task.cancelled()
    assert log == []  # the app never resumed with the message


@pytest.mark.parametrize("lone", [False, True], ids=["batched", "at-once"])
def test_system_exit_from_the_app_still_leaves_the_loop(protocol, loop, lone):
    # As from a task woken through call_soon(): KeyboardInterrupt and SystemExit stop the loop.
    log: list[Any] = []
    app = App(loop, log)
    wakeups = protocol.Wakeups()
    settle(loop)
    if lone:
        deliver(loop, wakeups, (app, "warm-up"))  # a batch of one: the next runs at once
        assert wakeups.alone
    loop.call_soon(wakeups.wake, app.future, "exit", loop)
    with pytest.raises(SystemExit):
        loop.run_until_complete(asyncio.sleep(1))
    assert log[-1] == ("app", "resumed", "exit")
    assert isinstance(app.task.exception(), SystemExit)  # the task ended with it too
