"""``--reload``: a reloader process restarts the server process when a watched .py file changes.

The app module lives in a temporary directory that is both ``--app-dir`` and
``--reload-dir``; the tests edit it and watch the served text change, with a deadline.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .conftest import IS_FASTWS, run_cli
from .test_workers import alive, http_get, wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not IS_FASTWS, reason="fastws's reloader and its messages"),
]

RELOAD_APP = """
import os

MESSAGE = "{message}"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{{MESSAGE}} {{os.getpid()}}".encode()
    await send({{
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-length", str(len(body)).encode())],
    }})
    await send({{"type": "http.response.body", "body": body}})
"""

CHANGE_TIMEOUT_S = 20.0


def write_app(directory: Path, message: str) -> None:
    (directory / "reload_app.py").write_text(RELOAD_APP.format(message=message))


def answer(port: int) -> tuple[str, int]:
    status, body = http_get(port, "/", timeout_s=10)
    assert status == 200, body
    message, pid = body.split()
    return message, int(pid)


def start_reloader(server_process, tmp_path: Path, *args: str):
    pytest.importorskip("watchfiles")
    return server_process(
        "reload_app:app",
        "--app-dir",
        str(tmp_path),
        "--reload",
        "--reload-dir",
        str(tmp_path),
        "--lifespan",
        "off",
        *args,
    )


def wait_for_message(port: int, message: str) -> int:
    """Poll until the server answers ``message``; returns the pid that did."""
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    while True:
        got, pid = answer(port)
        if got == message:
            return pid
        assert time.monotonic() < deadline, f"still {got!r} after {CHANGE_TIMEOUT_S} s"
        time.sleep(0.1)


def test_editing_a_module_restarts_the_server(server_process, tmp_path):
    write_app(tmp_path, "one")
    proc = start_reloader(server_process, tmp_path)
    message, first_pid = answer(proc.port)
    assert message == "one"
    assert first_pid != proc.proc.pid

    write_app(tmp_path, "two")
    second_pid = wait_for_message(proc.port, "two")
    assert second_pid != first_pid
    wait_until(lambda: not alive(first_pid), 10, "the old server process exited")
    output = proc.output
    assert f"Started reloader process [{proc.proc.pid}] using WatchFiles" in output, output
    assert "reload_app.py" in output and "Reloading..." in output, output

    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.output
    assert not alive(second_pid)


def test_other_files_do_not_restart_the_server(server_process, tmp_path):
    write_app(tmp_path, "one")
    proc = start_reloader(server_process, tmp_path)
    _, pid = answer(proc.port)
    (tmp_path / "notes.txt").write_text("not python")
    (tmp_path / "reload_app.pyc").write_bytes(b"")
    time.sleep(2.0)  # well past the watcher's debounce and --reload-delay
    assert answer(proc.port) == ("one", pid)
    assert "Reloading" not in proc.output, proc.output


def test_a_broken_edit_waits_for_the_fix(server_process, tmp_path):
    write_app(tmp_path, "one")
    proc = start_reloader(server_process, tmp_path)
    assert answer(proc.port)[0] == "one"

    (tmp_path / "reload_app.py").write_text("def broken(:\n")
    wait_until(
        lambda: "waiting for file changes" in proc.output,
        CHANGE_TIMEOUT_S,
        "the reloader reports the failed server and waits",
    )
    assert "SyntaxError" in proc.output, proc.output
    assert proc.proc.poll() is None  # the reloader itself keeps running

    write_app(tmp_path, "fixed")
    wait_for_message(proc.port, "fixed")


def test_missing_watchfiles_is_a_clear_startup_error(tmp_path):
    write_app(tmp_path, "one")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "watchfiles.py").write_text('raise ImportError("No module named watchfiles")\n')
    result = run_cli(
        "reload_app:app",
        "--app-dir",
        str(tmp_path),
        "--port",
        "0",
        "--reload",
        env={"PYTHONPATH": str(shadow)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "watchfiles" in output and "pip install 'fastws[reload]'" in output, output
