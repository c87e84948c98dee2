"""``--workers N`` as an operator runs it: a supervisor process and N worker processes on one
socket, driven with real signals (SIGKILL to a worker, SIGTERM, SIGHUP, SIGTTIN, SIGTTOU to
the supervisor) and observed through what clients see and through /proc.

The app is written to a temporary directory (``--app-dir``) and answers with the pid of the
worker that served it, so a test can tell the workers apart. ``/block`` and the WebSocket
handshake hold the worker's event loop for 50 ms, so that concurrent clients spread over
the workers instead of all landing on whichever one wakes first. While connections queue up,
a fastws worker accepts up to ``ACCEPTS_PER_PASS`` of them in one loop pass (fastws/accept.py),
so an HTTP probe for N workers sends N times that many requests at once: the first worker to
wake cannot take them all. A WebSocket probe holds the loops of the workers it has found
(``HOLD``), so that the next connections can only go to the others.

The helpers below are also used by test_gunicorn.py and test_reload.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fastws.accept import ACCEPTS_PER_PASS

from .conftest import (
    HOST,
    IS_FASTWS,
    OP_TEXT,
    RawConnection,
    ServerProcess,
    close_frame,
    frame,
    run_cli,
    wait_until,
    ws_connect_raw,
)

pytestmark = pytest.mark.timeout(60)

WORKERS_APP = """
import os
import time


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        if scope["path"] == "/block":
            time.sleep(0.05)
        elif scope["path"] == "/hang":
            time.sleep(60)
        body = str(os.getpid()).encode()
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        time.sleep(0.05)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": str(os.getpid())})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "hold":
                time.sleep(0.5)
            await send({"type": "websocket.send", "text": message.get("text") or ""})
"""
HOLD = "hold"  # a text message the WebSocket app echoes after holding its worker's loop 0.5 s

# --------------------------------------------------------------------------------------------
# helpers (shared with test_gunicorn.py and test_reload.py)
# --------------------------------------------------------------------------------------------


def write_module(directory: Path, name: str, source: str) -> str:
    """Write ``name.py`` into ``directory``; returns the module name."""
    (directory / f"{name}.py").write_text(source)
    return name


def http_get(port: int, path: str = "/", timeout_s: float = 5.0) -> tuple[int, str]:
    """One request on a new connection (``Connection: close``); returns (status, body).

    Raises ConnectionRefusedError when nothing listens, other OSErrors as they come.
    """
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response: {data!r}")
    return int(head.split(b" ", 2)[1]), body.decode()


def serving_pids(
    port: int, want: int, timeout_s: float = 20.0, path: str = "/block", at_once: int = 0
) -> set[int]:
    """Distinct pids answering ``path``, polled with ``at_once`` concurrent requests at a time
    (default: ``want`` x ACCEPTS_PER_PASS) until ``want`` of them answered (or fail at the
    deadline)."""
    at_once = at_once or want * ACCEPTS_PER_PASS
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        while len(seen) < want:
            if time.monotonic() > deadline:
                raise AssertionError(f"only pids {seen} answered within {timeout_s} s")
            futures = [pool.submit(http_get, port, path) for _ in range(at_once)]
            for future in futures:
                try:
                    status, body = future.result(timeout=10)
                except OSError:
                    continue
                if status == 200:
                    seen.add(int(body))
    return seen


async def echo_on_each(port: int, pids: Iterable[int]) -> None:
    """A WebSocket on each of ``pids`` (see websockets_on) echoes a message naming it."""
    conns = await websockets_on(port, pids)
    try:
        for pid, conn in conns.items():
            await conn.send(frame(OP_TEXT, f"hello {pid}"))
            echo = await conn.read_frame()
            assert (echo.opcode, echo.payload) == (OP_TEXT, f"hello {pid}".encode())
    finally:
        for conn in conns.values():
            await conn.close()


async def stop_with_1012(
    proc: ServerProcess, pids: Iterable[int], sig: int, graceful_s: float
) -> tuple[int, float]:
    """Open a WebSocket on each of ``pids``, send ``sig``: each must close with 1012. Returns
    the exit code and the seconds from the signal to the exit."""
    conns = await websockets_on(proc.port, pids)
    try:
        started = time.monotonic()
        proc.signal(sig)
        await asyncio.gather(*(expect_close_1012(conn) for conn in conns.values()))
        code = await asyncio.to_thread(proc.wait, graceful_s + 5)
        return code, time.monotonic() - started
    finally:
        for conn in conns.values():
            await conn.close()


def pids_through_recycling(proc: ServerProcess, first: set[int], want: int) -> set[int]:
    """Pids answering one request at a time until ``want`` distinct ones did, starting from
    ``first``: every request must succeed while workers retire and get replaced."""
    seen = set(first)
    deadline = time.monotonic() + 30
    while len(seen) < want:
        assert time.monotonic() < deadline, f"pids seen: {seen}"
        try:
            status, body = http_get(proc.port, "/")
        except OSError as exc:
            raise AssertionError(f"request failed after {seen}: {exc!r}\n{proc.output}") from exc
        assert status == 200, body
        seen.add(int(body))
        time.sleep(0.02)
    return seen


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid`` from /proc, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def worker_children(parent: int) -> set[int]:
    """Live worker processes of ``parent`` (multiprocessing spawn children; the resource
    tracker that multiprocessing also starts is not a worker)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is None or stat[1] != parent or stat[0] == "Z":
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if b"--multiprocessing-fork" in cmdline and b"resource_tracker" not in cmdline:
            pids.add(int(entry))
    return pids


async def websockets_on(
    port: int, pids: Iterable[int], path: str = "/ws", limit: int = 60
) -> dict[int, RawConnection]:
    """Open WebSockets (in batches of ACCEPTS_PER_PASS) until one is open on each of ``pids``;
    the app sends its pid first. While a batch connects, the loop of every worker already
    found is held (``HOLD``), so only the others can accept it. Extra connections are closed;
    returns {pid: connection}."""
    wanted = set(pids)
    found: dict[int, RawConnection] = {}
    opened = 0
    while not wanted <= found.keys():
        if opened >= limit:
            for conn in found.values():
                await conn.close()
            raise AssertionError(f"{opened} WebSockets reached only workers {sorted(found)}")
        held = list(found.values())
        for conn in held:
            await conn.send(frame(OP_TEXT, HOLD))
        if held:
            await asyncio.sleep(0.05)  # the held workers are asleep by now
        batch = await asyncio.gather(*(ws_connect_raw(port, path) for _ in range(ACCEPTS_PER_PASS)))
        opened += len(batch)
        for conn in batch:
            first = await conn.read_frame()
            assert first.opcode == OP_TEXT
            pid = int(first.payload)
            if pid in found or pid not in wanted:
                await conn.close()
            else:
                found[pid] = conn
        for conn in held:  # the echo of HOLD, once the worker wakes up
            echo = await conn.read_frame()
            assert echo.payload == HOLD.encode()
    return found


async def expect_close_1012(conn: RawConnection, timeout_s: float = 5.0) -> None:
    """The server's close frame carries 1012 (Service Restart); we answer it, as a client must."""
    frame = await conn.read_close(timeout_s)
    assert frame.close_code == 1012, frame
    await conn.send(close_frame(1012))
    assert await conn.read_to_eof(timeout_s) == b""


def start_workers(server_process, tmp_path: Path, *args: str, workers: int = 2):
    """The CLI with ``--workers`` on the pid app; returns (process, worker pids) once every
    worker answers."""
    module = write_module(tmp_path, "workers_app", WORKERS_APP)
    proc = server_process(
        f"{module}:app", "--app-dir", str(tmp_path), "--workers", str(workers), *args
    )
    pids = serving_pids(proc.port, workers)
    wait_until(
        lambda: worker_children(proc.proc.pid) == pids,
        10,
        f"worker processes are exactly the {workers} that answered",
    )
    return proc, pids


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


async def test_every_worker_serves_http_and_websocket(server_process, tmp_path):
    proc, pids = start_workers(server_process, tmp_path)
    assert len(pids) == 2 and proc.proc.pid not in pids
    await echo_on_each(proc.port, pids)
    output = proc.output
    assert f"Started parent process [{proc.proc.pid}]" in output, output
    for pid in pids:
        assert f"Started server process [{pid}]" in output, output


def test_killed_worker_is_replaced(server_process, tmp_path):
    proc, pids = start_workers(server_process, tmp_path)
    parent = proc.proc.pid
    victim, survivor = sorted(pids)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int]:
        children = worker_children(parent)
        if len(children) == 2 and survivor in children and victim not in children:
            return children
        return set()

    wait_until(lambda: bool(replaced()), 15, lambda: f"a replacement runs:\n{proc.output}")
    assert len(serving_pids(proc.port, 2) - {survivor}) == 1, proc.output
    assert not alive(victim)
    if IS_FASTWS:
        assert f"Worker process [{victim}] died (killed by SIGKILL)" in proc.output, proc.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_signal_closes_websockets_on_every_worker_with_1012(
    server_process, tmp_path, sig
):
    graceful_s = 5
    proc, pids = start_workers(server_process, tmp_path, "--timeout-graceful-shutdown", "5")
    code, elapsed = await stop_with_1012(proc, pids, sig, graceful_s)
    assert code == 0, proc.output
    assert elapsed < graceful_s + 1, elapsed
    assert not any(alive(pid) for pid in pids)
    # The listening socket is gone with the supervisor.
    with pytest.raises(ConnectionRefusedError):
        http_get(proc.port)


def test_sighup_replaces_every_worker_without_refusing_connections(server_process, tmp_path):
    proc, old = start_workers(server_process, tmp_path)
    results: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, body = http_get(proc.port, "/")
                results.append(body if status == 200 else f"status {status}")
            except ConnectionRefusedError:
                results.append("refused")
            except OSError as exc:
                results.append(f"error {exc!r}")

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(results) >= 5, 10, "the client is getting answers")
        proc.signal(signal.SIGHUP)
        wait_until(
            lambda: (
                len(worker_children(proc.proc.pid)) == 2
                and not worker_children(proc.proc.pid) & old
            ),
            30,
            "both workers replaced",
        )
        new = worker_children(proc.proc.pid)
        seen_before = len(results)
        wait_until(lambda: len(results) >= seen_before + 5, 10, "the client goes on")
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    failures = [r for r in results if not r.isdigit()]
    assert "refused" not in failures, failures
    if IS_FASTWS:
        # uvicorn closes a connection accepted just before a worker stops without reading
        # its request (the client gets no response); fastws workers read it first.
        assert failures == [], failures
    assert {int(r) for r in results if r.isdigit()} & new, "the new workers served the client"
    assert serving_pids(proc.port, 2) == new


def test_ttin_and_ttou_change_the_worker_count(server_process, tmp_path):
    proc, pids = start_workers(server_process, tmp_path)
    parent = proc.proc.pid

    def count_becomes(n: int) -> None:
        wait_until(lambda: len(worker_children(parent)) == n, 15, f"{n} worker processes")

    proc.signal(signal.SIGTTIN)
    count_becomes(3)
    assert pids < worker_children(parent)
    assert len(serving_pids(proc.port, 3)) == 3

    proc.signal(signal.SIGTTOU)
    count_becomes(2)
    proc.signal(signal.SIGTTOU)
    count_becomes(1)
    proc.signal(signal.SIGTTOU)  # one is the minimum
    time.sleep(1.0)
    assert len(worker_children(parent)) == 1
    (last,) = worker_children(parent)
    assert http_get(proc.port, "/") == (200, str(last))


@pytest.mark.skipif(
    not IS_FASTWS, reason="uvicorn: requests reaching a retiring worker time out or are reset"
)
def test_limit_max_requests_recycles_workers(server_process, tmp_path):
    # Not start_workers: its concurrent probing could itself use up a worker's five requests.
    module = write_module(tmp_path, "workers_app", WORKERS_APP)
    proc = server_process(
        f"{module}:app", "--app-dir", str(tmp_path), "--workers", "2", "--limit-max-requests", "5"
    )
    wait_until(lambda: len(worker_children(proc.proc.pid)) == 2, 15, "two worker processes")
    first = worker_children(proc.proc.pid)
    seen = pids_through_recycling(proc, set(), 4)
    assert seen - first, "new workers took over"
    wait_until(lambda: len(worker_children(proc.proc.pid)) == 2, 15, "back to two worker processes")
    assert "Maximum request limit of 5 exceeded" in proc.output


@pytest.mark.skipif(not IS_FASTWS, reason="fastws's health check")
def test_worker_with_a_blocked_event_loop_is_replaced(server_process, tmp_path):
    proc, pids = start_workers(server_process, tmp_path, "--timeout-worker-healthcheck", "1")
    with pytest.raises(OSError):  # reset or closed without an answer once it is killed
        http_get(proc.port, "/hang", timeout_s=15)
    wait_until(
        lambda: (
            len(worker_children(proc.proc.pid)) == 2
            and len(worker_children(proc.proc.pid) & pids) == 1
        ),
        15,
        "the hung worker replaced",
    )
    assert "missed its health check" in proc.output, proc.output
    assert len(serving_pids(proc.port, 2)) == 2


@pytest.mark.skipif(not IS_FASTWS, reason="uvicorn restarts workers that cannot import the app")
def test_app_that_fails_to_import_stops_the_supervisor(tmp_path):
    (tmp_path / "broken_app_module.py").write_text(
        'async def app(scope, receive, send):\n    pass\nraise RuntimeError("boom at import")\n'
    )
    started = time.monotonic()
    result = run_cli(
        "broken_app_module:app",
        "--app-dir",
        str(tmp_path),
        "--port",
        "0",
        "--workers",
        "2",
        timeout_s=30,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "RuntimeError: boom at import" in output, output
    # One traceback per initial worker at most: nothing was restarted.
    assert 1 <= output.count("Traceback") <= 2, output
    assert elapsed < 15, elapsed


@pytest.mark.skipif(not IS_FASTWS, reason="fastws.run")
def test_run_refuses_an_app_object_with_workers():
    import fastws

    async def app(scope, receive, send):  # pragma: no cover - never served
        pass

    with pytest.raises(SystemExit) as info:
        fastws.run(app, workers=2, log_config=None)
    assert info.value.code == 3
