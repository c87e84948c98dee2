"""Server memory per WebSocket connection, with permessage-deflate off, offered, and in use.

Starts fastws (its CLI, the bench echo app) and opens N raw connections in three modes:
  none    no extension offered
  offer   "permessage-deflate; client_max_window_bits" offered (what browsers send), idle
  active  as offer, then one compressed message each way (both zlib contexts now exist)
and prints the server's RSS growth divided by N, after a warm-up of 200 connections.

    .venv/bin/python bench/deflate_memory.py [--connections 3000] [--modes none,offer,active]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TEXT = b"the quick brown fox jumps over the lazy dog " * 8


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def masked_text_frame(payload: bytes, rsv1: bool) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81 | (0x40 if rsv1 else 0), 0x80 | len(payload)]) + key + masked


def open_connection(port: int, mode: str) -> socket.socket:
    offer = (
        b""
        if mode == "none"
        else (b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
    )
    sock = socket.create_connection((HOST, port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + offer
        + b"\r\n"
    )
    head = sock.recv(4096)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake failed: {head[:80]!r}")
    if mode == "active":
        c = zlib.compressobj(6, zlib.DEFLATED, -12)
        body = c.compress(TEXT) + c.flush(zlib.Z_SYNC_FLUSH)
        sock.sendall(masked_text_frame(body[:-4], rsv1=True))
        sock.recv(4096)  # the echo, compressed with the server's context
    return sock


def measure(mode: str, connections: int, port: int) -> float:
    server = subprocess.Popen(
        [sys.executable, "-m", "fastws", "bench.apps.echo:app", "--port", str(port)]
        + ["--log-level", "warning", "--no-access-log", "--lifespan", "off"],
        cwd=REPO,
        start_new_session=True,
    )
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        socks += [open_connection(port, mode) for _ in range(200)]  # warm-up
        time.sleep(0.5)
        before = rss_kib(server.pid)
        socks += [open_connection(port, mode) for _ in range(connections)]
        time.sleep(1.0)
        return (rss_kib(server.pid) - before) * 1024 / connections
    finally:
        for sock in socks:
            sock.close()
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--modes", default="none,offer,active")
    parser.add_argument("--port", type=int, default=8170)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server
    for mode in args.modes.split(","):
        per_conn = measure(mode, args.connections, args.port)
        print(
            f"{mode:7s} {per_conn / 1024:6.1f} KiB per connection ({args.connections} connections)"
        )


if __name__ == "__main__":
    main()
