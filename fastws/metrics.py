"""--metrics: the server's figures in the Prometheus text format (docs/metrics.md).

Owns what is reported and how it is served; counts nothing itself. The connections count in
fields they already have (a WebSocket's message and byte counters are C integers of its
struct), the rare events (a close, a refusal, a response, a pong) are added to the loop's
fastws.transport.Stats, and read() adds up both when asked, so the per-message path never
calls into a metrics library.

- One server process: a listener of its own on --metrics-address:--metrics-port, served on
  the server's event loop, whose Collector reads the live connections at each scrape.
- --workers N: the supervisor sets PROMETHEUS_MULTIPROC_DIR for its workers; each worker
  pushes what read() finds into prometheus-client's multiprocess-mode metrics on its tick
  (Pusher, twice a second), and the supervisor serves them all with MultiProcessCollector
  (serve_multiprocess): figures up to one push (0.5 s) old.

Needs prometheus-client (the ``metrics`` extra); imported only when --metrics is on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from fastws.transport import DURATION_BUCKETS, RTT_BUCKETS, Histogram, ServerState
from fastws.ws.protocol import _WebSocket

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PUSH_ENV = "FASTWS_METRICS_PUSH"  # set by the supervisor: this worker pushes, it does not serve

# (name, type, help, label names). Counters are named without "_total" here: the text
# format adds it (prometheus-client's convention).
METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("fastws_connections", "gauge", "Open connections by protocol.", ("protocol",)),
    ("fastws_websocket_opened", "counter", "WebSockets accepted by the app.", ()),
    (
        "fastws_websocket_closed",
        "counter",
        "WebSockets that were open and have ended, by close code and the side that closed.",
        ("code", "side"),
    ),
    (
        "fastws_websocket_handshakes_refused",
        "counter",
        "WebSocket upgrades answered with an HTTP error instead of a 101, by reason.",
        ("reason",),
    ),
    (
        "fastws_websocket_messages_received",
        "counter",
        "WebSocket data messages received, by type (text or binary).",
        ("type",),
    ),
    (
        "fastws_websocket_messages_sent",
        "counter",
        "WebSocket data messages sent (pub/sub deliveries included), by type.",
        ("type",),
    ),
    (
        "fastws_websocket_received_bytes",
        "counter",
        "Bytes read from WebSocket connections after the handshake (frames, headers and "
        "control frames included).",
        (),
    ),
    (
        "fastws_websocket_sent_bytes",
        "counter",
        "Bytes of WebSocket data frames written (frame headers included).",
        (),
    ),
    (
        "fastws_websocket_ping_rtt_seconds",
        "histogram",
        "Round-trip time of keepalive pings: from the ping sent to its pong read.",
        (),
    ),
    (
        "fastws_websocket_write_buffer_bytes",
        "gauge",
        "Bytes waiting in the outgoing buffers of open WebSockets.",
        (),
    ),
    (
        "fastws_websocket_overflow_closes",
        "counter",
        "WebSockets closed with 1013 for going past --ws-max-write-buffer.",
        (),
    ),
    ("fastws_pubsub_published", "counter", "Pub/sub publishes (local and bridged).", ()),
    ("fastws_pubsub_delivered", "counter", "Pub/sub frames handed to subscribers.", ()),
    (
        "fastws_http_requests",
        "counter",
        "HTTP responses to requests the app answered, by status class.",
        ("status_class",),
    ),
    (
        "fastws_http_request_duration_seconds",
        "histogram",
        "HTTP requests from their head read to their response complete.",
        (),
    ),
)
_BUCKETS = {
    "fastws_websocket_ping_rtt_seconds": RTT_BUCKETS,
    "fastws_http_request_duration_seconds": DURATION_BUCKETS,
}

Values = dict[str, dict[tuple[str, ...], Any]]
"""read()'s result: metric name -> label values -> a number, or a Histogram."""


def read(states: Iterable[ServerState]) -> Values:
    """Every metric's values now: the totals of the loops' Stats plus what their live
    connections and hubs hold. Call it on the loop that owns ``states`` (or with it still)."""
    http = websockets = buffered = 0
    msgs_in = msgs_out = bytes_in = bytes_out = texts_in = texts_out = 0
    opened = overflows = published = delivered = 0
    closed: dict[tuple[str, ...], int] = {}
    refused: dict[tuple[str, ...], int] = {}
    classes = [0] * 6
    durations = Histogram(DURATION_BUCKETS)
    rtts = Histogram(RTT_BUCKETS)
    for state in states:
        stats = state.stats
        if stats is None:
            continue
        for conn in list(state.connections):
            if isinstance(conn, _WebSocket):
                if conn.opened_at:
                    websockets += 1
                    if not conn.transport.is_closing():
                        buffered += conn.transport.get_write_buffer_size()
                msgs_in += conn.msgs_in
                msgs_out += conn.msgs_out
                texts_in += conn.texts_in
                texts_out += conn.texts_out
                bytes_in += conn.bytes_in
                bytes_out += conn.bytes_out
            else:
                http += 1
        opened += stats.ws_opened
        overflows += stats.overflows
        msgs_in += stats.msgs_in
        msgs_out += stats.msgs_out
        texts_in += stats.texts_in
        texts_out += stats.texts_out
        bytes_in += stats.bytes_in
        bytes_out += stats.bytes_out
        for (code, side), n in stats.ws_closed.items():
            key = (str(code), side)
            closed[key] = closed.get(key, 0) + n
        for reason, n in stats.refused.items():
            refused[(reason,)] = refused.get((reason,), 0) + n
        for i, n in enumerate(stats.http_status):
            classes[i] += n
        for mine, theirs in ((durations, stats.http_duration), (rtts, stats.ping_rtt)):
            mine.counts = [a + b for a, b in zip(mine.counts, theirs.counts, strict=True)]
            mine.total += theirs.total
        hub = state.hub
        if hub is not None:
            published += hub.published
            delivered += hub.delivered
    return {
        "fastws_connections": {("http",): http, ("websocket",): websockets},
        "fastws_websocket_opened": {(): opened},
        "fastws_websocket_closed": closed,
        "fastws_websocket_handshakes_refused": refused,
        "fastws_websocket_messages_received": {
            ("text",): texts_in,
            ("binary",): msgs_in - texts_in,
        },
        "fastws_websocket_messages_sent": {("text",): texts_out, ("binary",): msgs_out - texts_out},
        "fastws_websocket_received_bytes": {(): bytes_in},
        "fastws_websocket_sent_bytes": {(): bytes_out},
        "fastws_websocket_ping_rtt_seconds": {(): rtts},
        "fastws_websocket_write_buffer_bytes": {(): buffered},
        "fastws_websocket_overflow_closes": {(): overflows},
        "fastws_pubsub_published": {(): published},
        "fastws_pubsub_delivered": {(): delivered},
        "fastws_http_requests": {(f"{i}xx",): classes[i] for i in range(1, 6)},
        "fastws_http_request_duration_seconds": {(): durations},
    }


class Collector:
    """prometheus-client collector of one process's servers: read() at every scrape."""

    def __init__(self) -> None:
        self.states: list[ServerState] = []

    def collect(self) -> Iterator[Metric]:
        values = read(self.states)
        for name, kind, doc, labels in METRICS:
            family: Any
            if kind == "histogram":
                family = HistogramMetricFamily(name, doc, labels=labels)
                for key, hist in values[name].items():
                    family.add_metric(list(key), _cumulative(hist), hist.total)
                yield family
                continue
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, doc, labels=labels
            )
            for key, value in sorted(values[name].items()):
                family.add_metric(list(key), value)
            yield family


def _cumulative(hist: Histogram) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip((*hist.bounds, float("inf")), hist.counts, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return out


# -- one process: served on its event loop ---------------------------------------------------


class _Scrape(asyncio.Protocol):
    """One scrape: any GET (or HEAD) gets the text format, then the connection closes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.head = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" not in self.head and len(self.head) < 8192:
            return
        method = self.head.split(b" ", 1)[0]
        if method in (b"GET", b"HEAD"):
            body = generate_latest(self.registry)
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: " + CONTENT_TYPE_LATEST.encode("ascii") + b"\r\n"
            )
        else:
            body = b"Method Not Allowed\n"
            head = b"HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\n"
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.transport.write(head if method == b"HEAD" else head + body)
        self.transport.close()
        self.head = b""


class Exporter:
    """The metrics listener of one server process, on its loop (start() / close())."""

    def __init__(self, state: ServerState) -> None:
        self.collector = Collector()
        self.collector.states.append(state)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the address bound (``port`` 0: the OS picks one)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Scrape(self.registry), host, port)
        name = self.server.sockets[0].getsockname()
        return name[0], name[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


# -- --workers: each worker pushes, the supervisor serves ------------------------------------


class Pusher:
    """A worker's figures into prometheus-client's multiprocess-mode metrics (files under
    PROMETHEUS_MULTIPROC_DIR): counters and histograms by what grew since the last push,
    gauges set (summed over the live workers at the scrape)."""

    def __init__(self, state: ServerState) -> None:
        from prometheus_client import Counter, Gauge
        from prometheus_client import Histogram as PromHistogram

        self.states = [state]
        self.registry = CollectorRegistry(auto_describe=False)  # not served: files are
        self.metrics: dict[str, Any] = {}
        for name, kind, doc, labels in METRICS:
            if kind == "counter":
                metric: Any = Counter(name, doc, labels, registry=self.registry)
            elif kind == "gauge":
                metric = Gauge(
                    name, doc, labels, registry=self.registry, multiprocess_mode="livesum"
                )
            else:
                metric = PromHistogram(
                    name, doc, labels, registry=self.registry, buckets=_BUCKETS[name]
                )
            self.metrics[name] = metric
        self.pushed: dict[tuple[str, tuple[str, ...]], Any] = {}

    def push(self) -> None:
        values = read(self.states)
        for name, kind, _doc, labels in METRICS:
            metric = self.metrics[name]
            for key, value in values[name].items():
                child = metric.labels(*key) if labels else metric
                if kind == "gauge":
                    child.set(value)
                    continue
                last = self.pushed.get((name, key))
                if kind == "counter":
                    if value != (last or 0):
                        child.inc(value - (last or 0))
                    self.pushed[(name, key)] = value
                    continue
                # Histogram: add each bucket's new observations and the sum's growth (the
                # child's per-bucket values are what its observe() would have added to).
                before = last or (0.0, [0] * len(value.counts))
                for i, (now, then) in enumerate(zip(value.counts, before[1], strict=True)):
                    if now != then:
                        child._buckets[i].inc(now - then)
                if value.total != before[0]:
                    child._sum.inc(value.total - before[0])
                self.pushed[(name, key)] = (value.total, list(value.counts))


class MultiprocessExporter:
    """The supervisor's side of --workers: the directory its workers push into, and the
    listener that serves them all (a thread: the supervisor's loop is a plain sleep loop)."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="fastws-metrics-")
        os.environ[MULTIPROC_ENV] = self.directory  # the workers inherit both
        os.environ[PUSH_ENV] = "1"
        self.httpd: Any = None
        self.thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> tuple[str, int]:
        from prometheus_client import start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=self.directory)
        self.httpd, self.thread = start_http_server(port, host, registry=registry)
        name = self.httpd.server_address
        return name[0], name[1]

    @staticmethod
    def worker_gone(pid: int) -> None:
        """A worker exited: its gauges no longer count (its counters still do)."""
        from prometheus_client.multiprocess import mark_process_dead

        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            mark_process_dead(pid, directory)

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None
        os.environ.pop(MULTIPROC_ENV, None)
        os.environ.pop(PUSH_ENV, None)
        shutil.rmtree(self.directory, ignore_errors=True)
