"""Logging through the command line, as a user runs it: ``--log-level`` (trace included),
``--log-config`` from real JSON, YAML and ini files, the access log for HTTP requests and for
WebSocket sessions (the 101 line and the close line), ``--no-access-log`` and ``--use-colors``.
Servers run as subprocesses so each gets a fresh logging setup; a file handler or the captured
output is read after a graceful stop."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from . import apps
from .conftest import HOST, IS_UVICORN, ServerProcess, close_frame, frame, within, ws_connect_raw

pytestmark = [
    pytest.mark.timeout(40),
    pytest.mark.skipif(IS_UVICORN, reason="fastws logger names and access-line formats"),
]

APP = "tests.integration.apps:hello"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The WebSocket close line:
# client - "WebSocket /path HTTP/1.1" <code> closed by client|server after ...
CLOSE_LINE = re.compile(
    r'"WebSocket (?P<path>\S+) HTTP/1\.1" (?P<code>\d+) closed by (?P<by>client|server) '
    r"after (?P<secs>[0-9.]+) s; "
    r"in (?P<msgs_in>\d+) msgs / (?P<bytes_in>[0-9.]+ \w+), "
    r"out (?P<msgs_out>\d+) msgs / (?P<bytes_out>[0-9.]+ \w+)"
)


async def exercise(port: int) -> None:
    """One HTTP request, then a WebSocket session: two messages each way, client closes 1000."""
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        assert (await within(client.get(f"http://{HOST}:{port}/page?q=1"))).status_code == 200
    conn = await ws_connect_raw(port, "/chat")
    try:
        for text in ("hello", "world"):
            await conn.send(frame(0x1, text))
            assert (await conn.read_frame_skipping_pings()).payload == text.encode()
        await conn.send(close_frame(1000))
        assert (await conn.read_close()).close_code == 1000
        await conn.read_to_eof(5.0)
    finally:
        await conn.close()


def stop(sp: ServerProcess) -> str:
    """Graceful stop (handlers flush), then the server's combined output."""
    sp.signal(signal.SIGINT)
    assert sp.wait(15.0) == 0, sp.output
    return sp.output


# --------------------------------------------------------------------------------------------
# access log
# --------------------------------------------------------------------------------------------


async def test_access_log_lines_for_http_and_websocket(server_process):
    sp = server_process(APP)
    await exercise(sp.port)
    output = stop(sp)
    assert re.search(r'INFO: +127\.0\.0\.1:\d+ - "GET /page\?q=1 HTTP/1\.1" 200 OK', output)
    assert re.search(
        r'INFO: +127\.0\.0\.1:\d+ - "WebSocket /chat HTTP/1\.1" 101 Switching Protocols', output
    )
    close = CLOSE_LINE.search(output)
    assert close is not None, output
    assert close["path"] == "/chat"
    assert (close["code"], close["by"]) == ("1000", "client")
    assert 0.0 <= float(close["secs"]) < 10.0
    assert (close["msgs_in"], close["msgs_out"]) == ("2", "2")
    # Wire bytes: two masked 5-byte text frames and the close frame in; two 7-byte frames out.
    assert close["bytes_in"] == "30 B", close.group(0)
    assert close["bytes_out"] == "14 B", close.group(0)


async def test_close_line_gives_the_servers_code_when_the_server_closes(server_process):
    # The app closes with 1013 and the client answers with a bare close (no status): the line
    # reports the code the server sent, not the client's reply.
    sp = server_process("tests.integration.apps:close_1013")
    conn = await ws_connect_raw(sp.port, "/x")
    try:
        assert (await conn.read_close()).close_code == 1013
        await conn.send(close_frame(None))
        await conn.read_to_eof(5.0)
    finally:
        await conn.close()
    close = CLOSE_LINE.search(stop(sp))
    assert close is not None
    assert (close["code"], close["by"]) == ("1013", "server")


async def test_no_access_log_produces_no_access_records(server_process):
    sp = server_process(APP, "--no-access-log")
    await exercise(sp.port)
    output = stop(sp)
    assert "Started server process" in output  # the error logger still speaks
    assert '"GET' not in output
    assert "WebSocket /chat" not in output


class Collected:
    """Records reaching a handler on fastws.access (attach once the server has started)."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append  # type: ignore[method-assign]


@pytest.fixture
def access_handler() -> Iterator[Collected]:
    collected = Collected()
    try:
        yield collected
    finally:
        logging.getLogger("fastws.access").removeHandler(collected.handler)


async def test_access_log_false_emits_nothing_even_if_the_logger_is_re_enabled(
    running_server, access_handler
):
    # A user's logging setup may turn fastws.access back on after Config ran; the server's own
    # switch must still hold.
    srv = running_server(apps.hello, access_log=False, log_level="info")
    access = logging.getLogger("fastws.access")
    access.setLevel(logging.INFO)
    access.addHandler(access_handler.handler)
    await exercise(srv.port)
    await asyncio.sleep(0.3)  # the close line would be written just after the TCP close
    assert access_handler.records == []


async def test_access_records_keep_uvicorns_argument_shape(running_server, access_handler):
    srv = running_server(apps.hello, log_level="info")
    logging.getLogger("fastws.access").addHandler(access_handler.handler)
    await exercise(srv.port)
    deadline = time.monotonic() + 5.0
    while len(access_handler.records) < 3:  # the close line follows the TCP close
        assert time.monotonic() < deadline, access_handler.records
        await asyncio.sleep(0.01)
    shapes = [(len(r.args), r.args[1], r.args[4]) for r in access_handler.records]  # type: ignore[arg-type, index]
    assert shapes[:2] == [(5, "GET", 200), (5, "WebSocket", 101)]
    assert shapes[2][:2] == (6, "WebSocket") and shapes[2][2] == 1000


# --------------------------------------------------------------------------------------------
# --log-level
# --------------------------------------------------------------------------------------------


async def test_log_level_trace_shows_connection_lines(server_process):
    sp = server_process(APP, "--log-level", "trace")
    await exercise(sp.port)
    output = stop(sp)
    assert re.search(r"TRACE: +127\.0\.0\.1:\d+ - HTTP connection made", output), output
    assert re.search(r"TRACE: +127\.0\.0\.1:\d+ - HTTP connection lost", output), output


async def test_log_level_info_has_no_trace_lines(server_process):
    sp = server_process(APP)
    await exercise(sp.port)
    assert "TRACE" not in stop(sp)


async def test_log_level_warning_silences_info_and_access(server_process):
    sp = server_process(APP, "--log-level", "warning")
    await exercise(sp.port)
    output = stop(sp)
    assert "Started server process" not in output
    assert '"GET' not in output and "WebSocket" not in output


# --------------------------------------------------------------------------------------------
# --log-config
# --------------------------------------------------------------------------------------------

FILE_FORMAT = "%(levelname)s|%(name)s|%(message)s"
ACCESS_FORMAT = "ACCESS|%(client_addr)s|%(request_line)s|%(status_code)s"


def dict_config(log_file: Path) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": FILE_FORMAT},
            "access": {"()": "fastws.logging.AccessFormatter", "fmt": ACCESS_FORMAT},
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_file),
                "formatter": "plain",
            },
            "access_file": {
                "class": "logging.FileHandler",
                "filename": str(log_file),
                "formatter": "access",
            },
        },
        "loggers": {
            "fastws": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "fastws.access": {"handlers": ["access_file"], "level": "INFO", "propagate": False},
        },
    }


def write_json(path: Path, log_file: Path) -> Path:
    path = path / "log.json"
    path.write_text(json.dumps(dict_config(log_file)))
    return path


def write_yaml(path: Path, log_file: Path) -> Path:
    import yaml

    path = path / "log.yaml"
    path.write_text(yaml.safe_dump(dict_config(log_file)))
    return path


def write_ini(path: Path, log_file: Path) -> Path:
    path = path / "log.ini"
    text = textwrap.dedent(
        """
        [loggers]
        keys=root,fastws,access

        [handlers]
        keys=file,access_file

        [formatters]
        keys=plain,access

        [logger_root]
        level=WARNING
        handlers=

        [logger_fastws]
        level=INFO
        handlers=file
        propagate=0
        qualname=fastws

        [logger_access]
        level=INFO
        handlers=access_file
        propagate=0
        qualname=fastws.access

        [handler_file]
        class=FileHandler
        formatter=plain
        args=('{log_file}',)

        [handler_access_file]
        class=FileHandler
        formatter=access
        args=('{log_file}',)

        [formatter_plain]
        format={fmt}

        [formatter_access]
        class=fastws.logging.AccessFormatter
        format={access_fmt}
        """
    )
    # fileConfig reads format strings raw, so the %(...)s record fields need no escaping.
    path.write_text(text.format(log_file=str(log_file), fmt=FILE_FORMAT, access_fmt=ACCESS_FORMAT))
    return path


@pytest.mark.parametrize("writer", [write_json, write_yaml, write_ini], ids=["json", "yaml", "ini"])
async def test_log_config_file(server_process, tmp_path, writer):
    log_file = tmp_path / "server.log"
    config_file = writer(tmp_path, log_file)
    sp = server_process(APP, "--log-config", str(config_file))
    await exercise(sp.port)
    output = stop(sp)
    lines = log_file.read_text().splitlines()
    assert any(line.startswith("INFO|fastws.error|Started server process") for line in lines)
    assert any(
        re.fullmatch(r"ACCESS\|127\.0\.0\.1:\d+\|GET /page\?q=1 HTTP/1\.1\|200 OK", line)
        for line in lines
    ), lines
    assert any(
        re.fullmatch(
            r"ACCESS\|127\.0\.0\.1:\d+\|WebSocket /chat HTTP/1\.1\|101 Switching Protocols", line
        )
        for line in lines
    ), lines
    assert any(
        line.startswith("ACCESS|") and "1000 closed by client after" in line for line in lines
    )
    # The file config replaced the built-in one: nothing went to the default stream handlers.
    assert "Started server process" not in output
    assert '"GET' not in output


async def test_log_level_overrides_the_log_config_file(server_process, tmp_path):
    log_file = tmp_path / "server.log"
    sp = server_process(
        APP, "--log-config", str(write_json(tmp_path, log_file)), "--log-level", "warning"
    )
    await exercise(sp.port)
    stop(sp)
    text = log_file.read_text() if log_file.exists() else ""
    assert "Started server process" not in text
    assert "ACCESS|" not in text


def test_broken_log_config_file_fails_startup_naming_it(server_process, tmp_path):
    bad = tmp_path / "log.json"
    bad.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    sp = server_process(APP, "--log-config", str(bad), wait=False)
    assert sp.wait(15.0) != 0
    assert "log.json" in sp.output


# --------------------------------------------------------------------------------------------
# --use-colors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "coloured"),
    [(("--use-colors",), True), (("--no-use-colors",), False), ((), False)],
    ids=["use-colors", "no-use-colors", "default-not-a-tty"],
)
async def test_use_colors(server_process, args, coloured):
    sp = server_process(APP, *args)
    await exercise(sp.port)
    output = stop(sp)
    assert ("Started server process" in ANSI.sub("", output)) is True
    error_line = next(line for line in output.splitlines() if "Started server process" in line)
    access_line = next(line for line in output.splitlines() if "/page?q=1" in line)
    assert bool(ANSI.search(error_line)) is coloured, error_line
    assert bool(ANSI.search(access_line)) is coloured, access_line
    if coloured:
        assert "\x1b[32mINFO\x1b[0m:" in error_line  # level name in green
        assert "\x1b[32m200 OK\x1b[0m" in access_line  # 2xx status in green
