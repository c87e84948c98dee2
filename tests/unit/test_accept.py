"""fastws/accept.py's reading of a listening socket's accept queue (Linux TCP_INFO)."""

from __future__ import annotations

import socket
import sys

import pytest

from fastws.accept import _waiting

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the accept queue is read from Linux TCP_INFO"
)


def test_waiting_counts_the_connections_in_the_accept_queue():
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        port = listener.getsockname()[1]
        assert _waiting(listener) == 0
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            assert _waiting(listener) == 3
            conn, _ = listener.accept()
            conn.close()
            assert _waiting(listener) == 2
        finally:
            for client in clients:
                client.close()
