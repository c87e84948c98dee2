"""The command line as a user runs it: ``python -m fastws module:app`` in a real process.

Flag parsing details are unit-tested with CliRunner; here the process itself is the subject:
it serves, reports what it runs, and fails with the right status and message."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.client import unix_connect

from .conftest import HOST, IS_FASTWS, SERVER_IMPL, run_cli, within

pytestmark = pytest.mark.timeout(30)


async def test_cli_serves_http_and_websocket(server_process):
    proc = server_process("tests.integration.apps:hello")
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        response = await within(client.get(f"http://{HOST}:{proc.port}/"))
    assert (response.status_code, response.text) == (200, "hello")
    async with ws_connect(
        f"ws://{HOST}:{proc.port}/ws", open_timeout=5, ping_interval=None, proxy=None
    ) as ws:
        await within(ws.send("cli"))
        assert await within(ws.recv()) == "cli"


async def test_cli_serves_websocket_on_a_unix_socket(server_process, tmp_path):
    # Not only TCP: fastws writes frames with send() on the connection's own socket.
    path = str(tmp_path / "fastws.sock")
    proc = server_process("tests.integration.apps:hello", "--uds", path, wait=False)
    deadline = time.monotonic() + 15
    while True:
        assert proc.proc.poll() is None, proc.output
        try:
            ws = await unix_connect(path, "ws://localhost/ws", open_timeout=5, ping_interval=None)
            break
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {path}:\n{proc.output}"
            await asyncio.sleep(0.05)
    async with ws:
        for text in ("over", "a unix socket", "x" * 70_000):
            await within(ws.send(text))
            assert await within(ws.recv()) == text


def test_startup_log_names_the_address(server_process):
    proc = server_process("tests.integration.apps:hello")
    # The port accepts as soon as it listens; the line naming it is logged just after.
    address = f"http://{HOST}:{proc.port}"
    deadline = time.monotonic() + 10
    while address not in proc.output and time.monotonic() < deadline:
        time.sleep(0.05)
    output = proc.output
    assert address in output, output
    if IS_FASTWS:
        # fastws also says which codec and event loop it runs, so that every benchmark and
        # bug report carries them (uvicorn has no codec to report).
        from fastws.ws.frames import IMPLEMENTATION

        assert re.search(rf"\b{IMPLEMENTATION}\b", output), output
        expected_loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        assert expected_loop in output, output


def test_version_flag(tmp_path):
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    if IS_FASTWS:
        import fastws
        from fastws.ws.frames import IMPLEMENTATION

        assert fastws.__version__ in output
        assert re.search(rf"\b{IMPLEMENTATION}\b", output), output
    else:
        assert SERVER_IMPL in output.lower()


def test_unknown_flag_exits_2_naming_it():
    result = run_cli("tests.integration.apps:hello", "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr


def test_non_numeric_port_exits_2_naming_the_option():
    result = run_cli("tests.integration.apps:hello", "--port", "notanumber")
    assert result.returncode == 2
    assert "--port" in result.stderr
    assert "notanumber" in result.stderr


def test_missing_app_argument_exits_2():
    result = run_cli()
    assert result.returncode == 2
    assert "APP" in result.stderr


@pytest.mark.parametrize(
    "body,message",
    [
        ('raise RuntimeError("boom at import time")\n', "boom at import time"),
        ("import fastws_no_such_dependency_xyz\n", "fastws_no_such_dependency_xyz"),
    ],
    ids=["raises", "missing-dependency"],
)
def test_app_module_failing_to_import_exits_non_zero_with_traceback(tmp_path, body, message):
    (tmp_path / "broken_app_module.py").write_text(
        "async def app(scope, receive, send):\n    pass\n" + body
    )
    result = run_cli(
        "broken_app_module:app",
        "--port",
        "0",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" in output, output
    assert message in output, output


def test_missing_attribute_exits_non_zero_with_message():
    result = run_cli("tests.integration.apps:no_such_app", "--port", "0")
    assert result.returncode != 0
    assert "no_such_app" in result.stdout + result.stderr


def _glibc() -> bool:
    from fastws import malloc

    return malloc.is_glibc()


@pytest.mark.skipif(
    not IS_FASTWS or not _glibc(), reason="fastws's malloc tuning (docs/deployment.md), glibc only"
)
def test_each_server_sets_malloc_thresholds_for_its_largest_message(server_process):
    proc = server_process(
        "tests.integration.apps:hello", "--log-level", "debug", "--ws-max-size", "4194304"
    )
    assert "malloc thresholds: mmap 4194304, trim 8388608 bytes" in proc.output, proc.output
    # A user who tunes malloc through the environment keeps their settings.
    own = server_process(
        "tests.integration.apps:hello",
        "--log-level",
        "debug",
        env={"MALLOC_TRIM_THRESHOLD_": "131072"},
    )
    assert "Started server process" in own.output, own.output
    assert "malloc thresholds" not in own.output, own.output
