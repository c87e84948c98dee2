"""--metrics against a live server: a real load of WebSocket clients (websockets) and HTTP
requests (httpx), then a real scrape of the metrics port, parsed with prometheus_client's
parser, whose figures must be exactly what the test sent: in-process, through the CLI, and
with --workers 2 (one scrape, both workers). fastws-only."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from .conftest import HOST, IS_UVICORN, find_free_port, run_cli

prometheus_parser = pytest.importorskip("prometheus_client.parser")

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(IS_UVICORN, reason="uvicorn has no --metrics"),
]

ORIGIN = "https://ok.example"

APP_SOURCE = """
import os


async def app(scope, receive, send):
    if scope["type"] == "http":
        path = scope["path"]
        if path == "/pid":
            body = str(os.getpid()).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if path == "/raise":
            raise RuntimeError("the test asked for a 500")
        status = int(path.rsplit("/", 1)[-1]) if path.startswith("/status/") else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept", "headers": [(b"x-pid", str(os.getpid()).encode())]})
    if path == "/sub":
        await send({"type": "websocket.subscribe", "topic": "t"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close-me":
            await send({"type": "websocket.close", "code": 4001})
            continue
        if message.get("text") == "publish":
            await send({"type": "websocket.publish", "topic": "t", "text": "p" * 20})
            continue
        if path == "/sub":
            continue
        out = {"type": "websocket.send"}
        if message.get("text") is not None:
            out["text"] = message["text"]
        else:
            out["bytes"] = message["bytes"]
        await send(out)
"""


def _module(tmp_path: Path) -> str:
    (tmp_path / "metrics_app.py").write_text(APP_SOURCE)
    return "metrics_app"


def _app() -> Any:
    module = ModuleType("metrics_app")
    exec(compile(APP_SOURCE, "metrics_app", "exec"), module.__dict__)  # noqa: S102
    return module.app


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET the metrics port; every sample as (name, sorted labels) -> value."""
    response = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in prometheus_parser.text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(
    port: int, name: str, want: float, timeout_s: float = 10.0, settle_s: float = 0.0, **labels: str
):
    """Scrape until ``name`` (summed over the other labels when none are given) is ``want``:
    closes are counted when the server has seen them, a moment after the client did."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(port)
        if labels:
            got = value(samples, name, **labels)
        else:
            got = sum(v for (n, _), v in samples.items() if n == name)
        if got == want:
            if settle_s:
                # --workers: each worker pushes its figures on its own tick; let every worker
                # push once more, then read what they all pushed.
                time.sleep(settle_s)
                return scrape(port)
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} is {got}, want {want}")
        time.sleep(0.05)


# -- the load ---------------------------------------------------------------------------------

N_CLIENTS = 20
N_MESSAGES = 10  # per client: text and binary alternately, 32 B each, every one echoed
PAYLOAD = 32
CLIENT_FRAME = 2 + 4 + PAYLOAD  # header, mask key, payload (client frames are masked)
SERVER_FRAME = 2 + PAYLOAD
CLOSE_FRAME = 2 + 4 + 2  # a client's close frame with a code and no reason
CLOSE_ME_FRAME = 2 + 4 + len("close-me")


async def websocket_load(port: int) -> list[Any]:
    """N_CLIENTS clients each echo N_MESSAGES; returns them open."""

    async def one() -> Any:
        ws = await ws_connect(f"ws://{HOST}:{port}/echo", origin=ORIGIN, compression=None)
        for i in range(N_MESSAGES):
            data: str | bytes = "t" * PAYLOAD if i % 2 == 0 else b"b" * PAYLOAD
            await ws.send(data)
            assert await asyncio.wait_for(ws.recv(), 5) == data
        return ws

    return list(await asyncio.gather(*(one() for _ in range(N_CLIENTS))))


async def close_all(clients: list[Any]) -> None:
    """Clients 0-9 close with 1000, 10-14 with 4002, 15-17 ask the server to close (4001),
    18-19 drop the TCP connection without a close frame."""

    async def server_closes(ws: Any) -> None:
        await ws.send("close-me")
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4001

    jobs = []
    for i, ws in enumerate(clients):
        if i < 10:
            jobs.append(ws.close(1000))
        elif i < 15:
            jobs.append(ws.close(4002))
        elif i < 18:
            jobs.append(server_closes(ws))
        else:
            ws.transport.abort()
    await asyncio.gather(*jobs)


async def refusals(port: int) -> None:
    """3 by origin, 1 by version, 1 by key, 2 by the app (close before accept)."""
    for origin in ("https://evil.example", "https://other.example", "null"):
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(f"ws://{HOST}:{port}/echo", origin=origin, compression=None)
        assert refused.value.response.status_code == 403
    for _ in range(2):
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(f"ws://{HOST}:{port}/deny", origin=ORIGIN, compression=None)
        assert refused.value.response.status_code == 403
    headers = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "origin": ORIGIN,
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "8",
    }
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{HOST}:{port}/echo", headers=headers)
        assert response.status_code == 426
    headers["sec-websocket-version"] = "13"
    headers["sec-websocket-key"] = "short"
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{HOST}:{port}/echo", headers=headers)
        assert response.status_code == 400


# 5 x 200, 1 x 301, 3 x 404, 1 x 503, and 1 app exception (500).
HTTP_PATHS = ["/"] * 5 + ["/status/301"] + ["/status/404"] * 3 + ["/status/503", "/raise"]
HTTP_CLASSES = {"1xx": 0, "2xx": 5, "3xx": 1, "4xx": 3, "5xx": 2}


async def http_load(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for path in HTTP_PATHS:
            response = await client.get(f"http://{HOST}:{port}{path}")
            want = (
                500
                if path == "/raise"
                else int(path.rsplit("/", 1)[-1] or 200)
                if (path.startswith("/status/"))
                else 200
            )
            assert response.status_code == want


def check_totals(samples: dict[Any, float], times: int = 1) -> None:
    """The figures of ``times`` runs of the whole load (websocket_load, close_all,
    refusals, http_load)."""
    v = lambda name, **labels: value(samples, name, **labels)  # noqa: E731
    assert v("fastws_websocket_opened_total") == N_CLIENTS * times
    closed = {
        (dict(labels)["code"], dict(labels)["side"]): n
        for (name, labels), n in samples.items()
        if name == "fastws_websocket_closed_total"
    }
    assert closed == {
        ("1000", "client"): 10 * times,
        ("4002", "client"): 5 * times,
        ("4001", "server"): 3 * times,
        ("1006", "abnormal"): 2 * times,
    }
    refused = {
        dict(labels)["reason"]: n
        for (name, labels), n in samples.items()
        if name == "fastws_websocket_handshakes_refused_total"
    }
    assert refused == {"origin": 3 * times, "app": 2 * times, "version": times, "key": times}
    # Half the echoed messages are text, half binary; the three "close-me" are text.
    half = N_CLIENTS * N_MESSAGES // 2
    assert v("fastws_websocket_messages_received_total", type="text") == (half + 3) * times
    assert v("fastws_websocket_messages_received_total", type="binary") == half * times
    assert v("fastws_websocket_messages_sent_total", type="text") == half * times
    assert v("fastws_websocket_messages_sent_total", type="binary") == half * times
    assert v("fastws_websocket_received_bytes_total") == times * (
        N_CLIENTS * N_MESSAGES * CLIENT_FRAME + 3 * CLOSE_ME_FRAME + 18 * CLOSE_FRAME
    )
    assert v("fastws_websocket_sent_bytes_total") == times * N_CLIENTS * N_MESSAGES * SERVER_FRAME
    for status_class, n in HTTP_CLASSES.items():
        assert v("fastws_http_requests_total", status_class=status_class) == n * times
    assert v("fastws_http_request_duration_seconds_count") == len(HTTP_PATHS) * times
    assert v("fastws_http_request_duration_seconds_bucket", le="+Inf") == len(HTTP_PATHS) * times
    assert 0 < v("fastws_http_request_duration_seconds_sum") < 10 * times
    assert v("fastws_connections", protocol="websocket") == 0
    assert v("fastws_websocket_write_buffer_bytes") == 0


async def run_load(port: int, metrics_port: int) -> set[str]:
    """The whole load; returns the pids of the processes that accepted the WebSockets."""
    clients = await websocket_load(port)
    pids = {ws.response.headers["x-pid"] for ws in clients}
    # Live connections are read at the scrape (one process), or pushed on the tick.
    samples = scrape_until(metrics_port, "fastws_connections", N_CLIENTS, protocol="websocket")
    received = {
        dict(labels)["type"]: n
        for (name, labels), n in samples.items()
        if name == "fastws_websocket_messages_received_total"
    }
    assert received == {"text": N_CLIENTS * N_MESSAGES // 2, "binary": N_CLIENTS * N_MESSAGES // 2}
    assert value(samples, "fastws_websocket_opened_total") == N_CLIENTS
    await close_all(clients)
    await refusals(port)
    await http_load(port)
    return pids


# -- in process -------------------------------------------------------------------------------


async def test_scrape_counts_what_was_sent(running_server):
    metrics_port = find_free_port()
    server = running_server(
        _app(),
        metrics=True,
        metrics_port=metrics_port,
        ws_allowed_origins=[ORIGIN],
        ws_ping_interval=None,
    )
    await run_load(server.port, metrics_port)
    samples = scrape_until(metrics_port, "fastws_websocket_closed_total", N_CLIENTS)
    check_totals(samples)


async def test_ping_rtt_histogram(running_server):
    metrics_port = find_free_port()
    server = running_server(_app(), metrics=True, metrics_port=metrics_port, ws_ping_interval=0.2)
    async with ws_connect(f"ws://{HOST}:{server.port}/echo", compression=None) as ws:
        # The sweep sends a keepalive ping every 0.2 s (checked twice a second); the client
        # answers each: at least two round trips within this bounded wait.
        deadline = time.monotonic() + 10
        while True:
            samples = scrape(metrics_port)
            if value(samples, "fastws_websocket_ping_rtt_seconds_count") >= 2:
                break
            assert time.monotonic() < deadline, "no keepalive round trips counted"
            await asyncio.sleep(0.1)
        await ws.send("still here")
        assert await ws.recv() == "still here"
    count = value(samples, "fastws_websocket_ping_rtt_seconds_count")
    assert value(samples, "fastws_websocket_ping_rtt_seconds_bucket", le="+Inf") == count
    # Loopback round trips: well under a second each, and not nothing.
    assert 0 < value(samples, "fastws_websocket_ping_rtt_seconds_sum") < count
    assert value(samples, "fastws_websocket_ping_rtt_seconds_bucket", le="1.0") == count


async def test_pubsub_counts(running_server):
    metrics_port = find_free_port()
    server = running_server(_app(), metrics=True, metrics_port=metrics_port)
    subscribers = [
        await ws_connect(f"ws://{HOST}:{server.port}/sub", compression=None) for _ in range(3)
    ]
    async with ws_connect(f"ws://{HOST}:{server.port}/echo", compression=None) as publisher:
        for sub in subscribers:  # each has subscribed once its first publish reaches it
            await publisher.send("publish")
            assert await asyncio.wait_for(sub.recv(), 5) == "p" * 20
        for sub in subscribers:
            for _ in range(len(subscribers) - 1 - subscribers.index(sub)):
                assert await asyncio.wait_for(sub.recv(), 5) == "p" * 20
    samples = scrape(metrics_port)
    published = value(samples, "fastws_pubsub_published_total")
    delivered = value(samples, "fastws_pubsub_delivered_total")
    # The i-th publish reaches the subscribers connected so far that had subscribed: all three
    # subscribe before the first publish (their accept and subscribe come before any message).
    assert published == 3
    assert delivered == 9
    assert value(samples, "fastws_websocket_messages_sent_total", type="text") == 9
    assert value(samples, "fastws_websocket_messages_sent_total", type="binary") == 0
    for sub in subscribers:
        await sub.close()


async def test_compressed_messages_counted_by_type(running_server):
    """permessage-deflate: the reader hands compressed messages on undecoded, and the text
    ones are counted once inflated; what the server compresses is counted as it is sent."""
    metrics_port = find_free_port()
    server = running_server(_app(), metrics=True, metrics_port=metrics_port)
    sent = ["hello " * 50, b"\x00\x01" * 100, "short", b"b", "t" * 300]
    async with ws_connect(f"ws://{HOST}:{server.port}/echo") as ws:  # deflate offered
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        for data in sent:
            await ws.send(data)
            assert await asyncio.wait_for(ws.recv(), 5) == data
        samples = scrape(metrics_port)
    texts = sum(type(d) is str for d in sent)
    for name in (
        "fastws_websocket_messages_received_total",
        "fastws_websocket_messages_sent_total",
    ):
        assert value(samples, name, type="text") == texts
        assert value(samples, name, type="binary") == len(sent) - texts


def test_metrics_port_in_use_fails_startup(running_server):
    import socket

    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(running_server.ServerDidNotStart) as failed:
            running_server(_app(), metrics=True, metrics_port=port)
        assert failed.value.exit_code == 1


# -- through the CLI --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
async def test_cli_scrape(server_process, tmp_path, workers):
    metrics_port = find_free_port()
    args = [
        "--app-dir",
        str(tmp_path),
        "--metrics",
        "--metrics-port",
        str(metrics_port),
        "--ws-allowed-origins",
        ORIGIN,
        "--ws-ping-interval",
        "0",
        "--log-level",
        "warning",
    ]
    if workers > 1:
        args += ["--workers", str(workers)]
    # The supervisor's multiprocess directory goes under TMPDIR: checked for at the end.
    proc = server_process(f"{_module(tmp_path)}:app", *args, env={"TMPDIR": str(tmp_path)})
    if workers > 1:
        # Every worker must serve part of the load: wait until both answer.
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient() as client:
            while len(pids) < workers:
                assert time.monotonic() < deadline, f"only workers {pids} answered"
                response = await client.get(
                    f"http://{HOST}:{proc.port}/pid", headers={"connection": "close"}
                )
                pids.add(response.text)
        warmup = len(pids)  # not part of the load's figures below
    accepted_by = await run_load(proc.port, metrics_port)
    samples = scrape_until(
        metrics_port,
        "fastws_websocket_closed_total",
        N_CLIENTS,
        settle_s=1.5 if workers > 1 else 0.0,
    )
    if workers > 1:
        # Both workers answered the warm-up requests, so the HTTP figures below are a sum over
        # workers; the kernel deals the WebSockets, usually to both (then their exact totals
        # are a sum too), but on a busy machine one worker may accept them all.
        assert accepted_by and accepted_by <= pids
        assert value(samples, "fastws_http_requests_total", status_class="2xx") >= 5 + warmup
        samples = _without_warmup(samples)
    check_totals(samples)
    assert proc.proc is not None and proc.proc.poll() is None, proc.output
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.output
    assert not list(tmp_path.glob("fastws-metrics-*")), "the multiprocess directory is removed"


def _without_warmup(samples: dict[Any, float]) -> dict[Any, float]:
    """Take the /pid requests (2xx) of the warm-up out of the HTTP figures."""
    extra = value(samples, "fastws_http_requests_total", status_class="2xx") - 5
    out = dict(samples)
    for key in list(out):
        name, labels = key
        if name == "fastws_http_requests_total" and dict(labels) == {"status_class": "2xx"}:
            out[key] -= extra
        elif name in ("fastws_http_request_duration_seconds_count",) or (
            name == "fastws_http_request_duration_seconds_bucket" and dict(labels)["le"] == "+Inf"
        ):
            out[key] -= extra
    return out


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--metrics-port", "70000"], "--metrics-port"), (["--metrics-port", "x"], "--metrics-port")],
)
def test_cli_usage_errors_name_the_flag(args, flag):
    result = run_cli("tests.integration.apps:echo_websocket", "--metrics", *args)
    assert result.returncode == 2, result.stderr
    assert flag in result.stderr
