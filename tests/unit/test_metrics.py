"""fastws.metrics without a server: the per-process totals (fastws.transport.Stats), their
histograms' buckets, and the Collector's text format for what they hold."""

from __future__ import annotations

import pytest

from fastws.transport import Histogram, ServerState, Stats

prometheus_client = pytest.importorskip("prometheus_client")
metrics = pytest.importorskip("fastws.metrics")
parser = pytest.importorskip("prometheus_client.parser")


class FakeWebSocket:
    msgs_in, msgs_out, bytes_in, bytes_out = 3, 2, 100, 50
    texts_in, texts_out = 1, 2  # of the messages


def test_histogram_buckets_are_upper_bounds():
    hist = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 2.0):
        hist.observe(seconds)
    assert hist.counts == [2, 2, 1]  # le 0.1, le 1.0, above
    assert hist.total == pytest.approx(3.65)


def test_stats_fold_a_closed_connection():
    stats = Stats()
    stats.ws_close(1000, "client", FakeWebSocket())
    stats.ws_close(1000, "client", FakeWebSocket())
    stats.ws_close(1006, "abnormal", FakeWebSocket())
    stats.refuse("origin")
    stats.http_response(204, 0.01)
    stats.http_response(599, 0.02)
    assert stats.ws_closed == {(1000, "client"): 2, (1006, "abnormal"): 1}
    assert (stats.msgs_in, stats.msgs_out, stats.bytes_in, stats.bytes_out) == (9, 6, 300, 150)
    assert (stats.texts_in, stats.texts_out) == (3, 6)
    assert stats.refused == {"origin": 1}
    assert stats.http_status == [0, 0, 1, 0, 0, 1]


def test_collector_text_format():
    state = ServerState(wakeups=None, stats=Stats())
    stats = state.stats
    assert stats is not None
    stats.ws_opened = 4
    stats.ws_close(4001, "server", FakeWebSocket())
    stats.http_response(404, 0.002)
    stats.ping_rtt.observe(0.003)
    state.connections.add(object())  # an HTTP connection, as far as the collector can tell
    collector = metrics.Collector()
    collector.states.append(state)
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = prometheus_client.generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("fastws_websocket_opened_total", ())] == 4
    assert samples[("fastws_websocket_closed_total", (("code", "4001"), ("side", "server")))] == 1
    assert samples[("fastws_websocket_messages_received_total", (("type", "text"),))] == 1
    assert samples[("fastws_websocket_messages_received_total", (("type", "binary"),))] == 2
    assert samples[("fastws_websocket_messages_sent_total", (("type", "text"),))] == 2
    assert samples[("fastws_websocket_messages_sent_total", (("type", "binary"),))] == 0
    assert samples[("fastws_connections", (("protocol", "http"),))] == 1
    assert samples[("fastws_connections", (("protocol", "websocket"),))] == 0
    assert samples[("fastws_http_requests_total", (("status_class", "4xx"),))] == 1
    assert samples[("fastws_http_request_duration_seconds_bucket", (("le", "0.001"),))] == 0
    assert samples[("fastws_http_request_duration_seconds_bucket", (("le", "0.0025"),))] == 1
    assert samples[("fastws_websocket_ping_rtt_seconds_count", ())] == 1
    assert samples[("fastws_websocket_ping_rtt_seconds_sum", ())] == pytest.approx(0.003)
