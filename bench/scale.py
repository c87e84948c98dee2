"""Scale test (issue #19): N concurrent WebSockets on one fastws deployment, a broadcast to all.

Starts a throwaway redis-server (loopback, free port, no persistence) and fastws with
``--workers W --pubsub redis://...`` serving bench/apps/fanout_publish.py (every ``/sub``
connection subscribes to the topic ``bench``, then gets the text "ok"; every message sent on
``/pub`` is published to ``bench``). Opens N subscriber connections with ``wsload subscribe``
(bench/load/wsload.c: P forked client processes, each under the per-process open-file limit,
bound round robin to several loopback source addresses so that no (source address, server
port) pair runs out of ephemeral ports), waits until every worker that has subscribers is
subscribed to the topic's Redis channel, then publishes M messages one at a time from a /pub
connection (one worker delivers locally and forwards to Redis, the others get it from Redis),
each once the previous one reached all N. wsload checks every receipt (content, sequence, in
order) and reports the broadcast completion time (publisher's send -> last of the N receipts).
Then the client closes every connection with a close handshake and the script checks that
every worker is back to the descriptors it had before the connections were opened.

    python bench/scale.py                       # 100,000 connections (`make scale`)
    python bench/scale.py --conns 5000 --workers 2 --client-procs 1 --messages 5

Reports (terminal, and bench/results/scale-STAMP.json): connections established, handshake
rate, RSS of every worker and bytes per connection, kernel socket memory (/proc/net/sockstat),
broadcast completion p50/p99/max, messages lost and out of order, descriptors per worker
before/during/after. Exit status 0 only if all N connected, every message reached every one
in order, and no worker kept a descriptor. Every wait is bounded (--timeout-s over all).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
RESULTS = BENCH / "results"
WSLOAD = BENCH / "load" / "wsload"
HOST = "127.0.0.1"
PY = sys.executable
TOPIC_CHANNEL = b"fastws:bench"  # fastws.ws.pubsub_redis: PREFIX + topic
FAN_HDR = 34  # wsload's payload header: "%016llx %016llx " (sequence, send time in ns)
PAGE = os.sysconf("SC_PAGE_SIZE")
PER_PROC_FDS = 16_000  # connections per wsload process (limit 20,000: room to spare)
PER_WORKER_CONNS = 12_500  # target per worker; a worker's share varies (shared accept queue)
PER_SRC_ADDR = 20_000  # connections per source address (of ~28,000 ephemeral ports)


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- /proc ------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def fd_kinds(pid: int) -> dict[str, int]:
    """What a process's descriptors are: 'socket', 'anon_inode:[eventpoll]', 'pipe', a path..."""
    kinds: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                kind = re.sub(r":\[\d+\]$", "", target)
                kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    out.add(target[8:-1])
    return out


TCP_STATES = {
    "01": "ESTABLISHED",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "0A": "LISTEN",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "09": "LAST_ACK",
}


def describe_sockets(inodes: set[str]) -> list[str]:
    """local -> remote (state) of the TCP sockets with these inodes (/proc/net/tcp)."""
    found: list[str] = []

    def addr(hexaddr: str) -> str:
        ip, port = hexaddr.split(":")
        if len(ip) == 8:
            return f"{socket.inet_ntoa(bytes.fromhex(ip)[::-1])}:{int(port, 16)}"
        return f"[v6]:{int(port, 16)}"

    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[9] in inodes:
                    found.append(
                        f"{addr(parts[1])} -> {addr(parts[2])} {TCP_STATES.get(parts[3], parts[3])}"
                    )
    return found or [f"{len(inodes)} non-TCP socket(s)"] if inodes else found


def port_socket_memory(port: int) -> dict[str, int]:
    """Kernel memory of the TCP sockets on `port` (either end), from `ss -tm`: receive queue
    (r), send queue (t), forward allocation (f), queued writes (w), options (o), summed."""
    totals = {"sockets": 0, "r": 0, "t": 0, "f": 0, "w": 0, "o": 0, "rb": 0, "tb": 0}
    try:
        out = subprocess.run(
            ["ss", "-tmnH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    for m in re.finditer(r"skmem:\(([^)]*)\)", out):
        totals["sockets"] += 1
        for field in m[1].split(","):
            key = field.rstrip("0123456789")
            if key in totals:
                totals[key] += int(field[len(key) :])
    totals["bytes"] = totals["r"] + totals["t"] + totals["f"] + totals["w"] + totals["o"]
    return totals


def sockstat() -> dict[str, int]:
    """/proc/net/sockstat: TCP sockets in use, orphans, TIME_WAIT, allocated, and the kernel's
    TCP buffer memory (`mem`, in pages) turned into bytes."""
    out: dict[str, int] = {}
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                for key, value in zip(parts[::2], parts[1::2], strict=False):
                    out["tcp_" + key] = int(value)
            elif line.startswith("sockets:"):
                out["sockets_used"] = int(line.split()[2])
    out["tcp_mem_bytes"] = out.get("tcp_mem", 0) * PAGE
    return out


def slab_kib(
    names: tuple[str, ...] = (
        "TCP",
        "tcp_bind_bucket",
        "sock_inode_cache",
        "dentry",
        "filp",
        "eventpoll_epi",
    ),
) -> dict[str, int]:
    """Kernel slab memory of the socket-related caches (needs root: /proc/slabinfo)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in names:
                    out[parts[0]] = int(parts[2]) * int(parts[3]) // 1024  # num_objs * objsize
    except OSError:
        pass
    return out


# --- processes --------------------------------------------------------------------------------


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM to the process group we started (start_new_session), SIGKILL after grace_s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    else:  # leader gone; members of its group may linger
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


class Redis:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise SystemExit("redis-server not found: apt-get install redis-server")
        self.port = free_port()
        self.log = open(workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--maxclients",
                "1000",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                if self.command(b"PING").startswith(b"+PONG"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (see {workdir}/redis.log)")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self, *args: bytes) -> bytes:
        """One RESP command on a fresh connection; the raw reply (enough for PING/NUMSUB/INFO)."""
        req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            s.sendall(req)
            time.sleep(0.01)
            data = s.recv(65536)
        return data

    def numsub(self, channel: bytes) -> int:
        reply = self.command(b"PUBSUB", b"NUMSUB", channel)
        nums = re.findall(rb":(\d+)\r\n", reply)
        return int(nums[-1]) if nums else 0

    def rss_kib(self) -> int:
        return status_kib(self.proc.pid, "VmRSS")

    def stop(self) -> None:
        stop_group(self.proc, 5)
        self.log.close()


class Server:
    def __init__(self, workdir: Path, workers: int, pubsub: str, backlog: int) -> None:
        self.port = free_port()
        self.workers_wanted = workers
        self.argv = [
            PY,
            "-m",
            "fastws",
            "fanout_publish:app",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--pubsub",
            pubsub,
            "--backlog",
            str(backlog),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        self.log_path = workdir / "fastws.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=APPS,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def workers(self) -> list[int]:
        """The serving processes: the supervisor's spawn children (not multiprocessing's
        resource tracker); the main process itself with one worker."""
        if self.workers_wanted <= 1:
            return [self.proc.pid]
        return [p for p in children(self.proc.pid) if "resource_tracker" not in cmdline(p)]

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fastws exited with {self.proc.returncode}: {self.tail()}")
            ok = False
            with contextlib.suppress(OSError):
                with socket.create_connection((HOST, self.port), timeout=1.0) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    ok = s.recv(16).startswith(b"HTTP/1.1 200")
            if ok and len(self.workers()) >= self.workers_wanted:
                # every worker answers only once its loop runs; give late ones a moment
                time.sleep(1.0)
                return
            time.sleep(0.1)
        raise RuntimeError(f"fastws not ready after {timeout_s:.0f} s: {self.tail()}")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        stop_group(self.proc, 15)
        self.log.close()


def snapshot(server: Server, kinds: bool = False) -> dict[str, Any]:
    pids = server.workers()
    workers = [
        {
            "pid": p,
            "rss_kib": status_kib(p, "VmRSS"),
            "fds": fd_count(p),
            "fd_kinds": fd_kinds(p) if kinds else {},
            "sockets": sorted(socket_inodes(p)) if kinds else [],
        }
        for p in pids
    ]
    return {
        "t": time.monotonic(),
        "workers": workers,
        "rss_kib": sum(w["rss_kib"] for w in workers),
        "supervisor_rss_kib": status_kib(server.proc.pid, "VmRSS")
        if len(pids) > 1 or pids[0] != server.proc.pid
        else 0,
        "sockstat": sockstat(),
        "slab_kib": slab_kib(),
    }


def stable_snapshot(server: Server, until: float) -> dict[str, Any]:
    """A snapshot once every worker's descriptor count held still for half a second (the
    readiness probe's connection, the Redis bridge connecting...)."""
    last = snapshot(server, kinds=True)
    while time.monotonic() < until:
        time.sleep(0.5)
        now = snapshot(server, kinds=True)
        if [w["fds"] for w in now["workers"]] == [w["fds"] for w in last["workers"]]:
            return now
        last = now
    return last


# --- the publisher: one /pub WebSocket, frames built here ---------------------------------------


class Publisher:
    def __init__(self, port: int, size: int) -> None:
        self.size = size
        self.pattern = bytes(ord("a") + i % 26 for i in range(size))
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /pub HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("publisher: connection closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"publisher: handshake refused: {head[:80]!r}")

    @staticmethod
    def _frame(opcode: int, payload: bytes) -> bytes:
        """A masked client frame (RFC 6455 section 5.3)."""
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        return head + mask + masked

    def publish(self, seq: int) -> int:
        """Sends message `seq` (wsload's format); returns its send time (CLOCK_MONOTONIC ns,
        the clock wsload reads)."""
        t = time.monotonic_ns()
        payload = b"%016x %016x " % (seq, t) + self.pattern[FAN_HDR:]
        self.sock.sendall(self._frame(0x1, payload))
        return t

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(self._frame(0x8, (1000).to_bytes(2, "big")))
            self.sock.settimeout(5)
            while self.sock.recv(4096):
                pass
        self.sock.close()


# --- the client: wsload subscribe -------------------------------------------------------------

PROGRESS = re.compile(
    r"wsload: ([\d.]+) s: (\d+)/(\d+) handshakes, (\d+) subscribed, (\d+) delivered"
)


class Client:
    def __init__(self, args: argparse.Namespace, port: int, src_addrs: str, hold_s: float) -> None:
        self.argv = [
            str(WSLOAD),
            "subscribe",
            "-p",
            str(port),
            "-h",
            HOST,
            "-c",
            str(args.conns),
            "-s",
            str(args.size),
            "-k",
            str(args.handshakes_in_flight),
            "--procs",
            str(args.client_procs),
            "--hold-s",
            str(hold_s),
            "--timeout-s",
            str(hold_s + 60),
            "--progress-s",
            str(args.progress_s),
        ]
        if src_addrs:
            self.argv += ["--src-addrs", src_addrs]
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.progress = (0.0, 0, 0, 0)  # (t, handshakes, subscribed, delivered)
        self.lock = threading.Condition()
        self.echo_every = args.echo_every_s
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            with contextlib.suppress(ValueError):
                with self.lock:
                    self.lines.append(json.loads(line))
                    self.lock.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        last_echo = 0.0
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            m = PROGRESS.match(line)
            if m:
                with self.lock:
                    self.progress = (float(m[1]), int(m[2]), int(m[4]), int(m[5]))
                    self.lock.notify_all()
                if time.monotonic() - last_echo >= self.echo_every:
                    last_echo = time.monotonic()
                    print(
                        f"  client {m[1]:>6} s: {int(m[2]):>7,}/{int(m[3]):,} handshakes, "
                        f"{int(m[4]):>7,} subscribed, {int(m[5]):>9,} delivered",
                        flush=True,
                    )
            else:
                with self.lock:
                    self.errors.append(line)
                print(f"  client: {line}", flush=True)

    def wait_event(self, name: str | None, timeout_s: float) -> dict[str, Any]:
        """The first stdout JSON line with event `name` (None: the final result line)."""
        deadline = time.monotonic() + timeout_s
        exited = 0.0
        with self.lock:
            while True:
                for line in self.lines:
                    if (name is None and "mode" in line) or (name and line.get("event") == name):
                        return line
                if self.proc.poll() is not None:
                    # the reader threads may still be draining the pipes: one more second
                    exited = exited or time.monotonic()
                    if time.monotonic() - exited > 1.0:
                        raise RuntimeError(
                            f"wsload exited with {self.proc.returncode}: "
                            f"{' | '.join(self.errors[-5:])}"
                        )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"wsload: no {name or 'result'} line in {timeout_s:.0f} s")
                self.lock.wait(min(left, 0.5))

    def wait_delivered(self, target: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while self.progress[3] < target:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.lock.wait(min(left, 0.5))
        return True

    def release(self) -> None:
        """A line on stdin: close every connection (close handshake) and report."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(b"\n")
            self.proc.stdin.flush()

    def stop(self) -> None:
        stop_group(self.proc, 5)


# --- main -------------------------------------------------------------------------------------


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "fastws"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + (" (fastws/ modified in the working tree)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def src_range(n_addrs: int) -> str:
    if n_addrs <= 0:
        return ""
    return f"127.0.0.2-127.0.0.{1 + n_addrs}"


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=100_000, help="subscriber connections (N)")
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help=f"fastws --workers (default: N/{PER_WORKER_CONNS:,}, at least 1)",
    )
    ap.add_argument(
        "--client-procs",
        type=int,
        default=0,
        help=f"wsload processes (default: N/{PER_PROC_FDS:,}, at least 1)",
    )
    ap.add_argument(
        "--src-addrs",
        default=None,
        help="client source addresses, e.g. 127.0.0.2-127.0.0.9 (default: one "
        f"per {PER_SRC_ADDR:,} connections; '' for none)",
    )
    ap.add_argument("--messages", type=int, default=20, help="broadcasts (M), one at a time")
    ap.add_argument("--size", type=int, default=64, help="message bytes (>= 40)")
    ap.add_argument(
        "--handshakes-in-flight", type=int, default=64, help="per client process (wsload -k)"
    )
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument(
        "--settle-s",
        type=float,
        default=2.0,
        help="pause after the last connection before measuring memory",
    )
    ap.add_argument(
        "--broadcast-timeout-s",
        type=float,
        default=60.0,
        help="per broadcast: give up waiting for all N receipts after this",
    )
    ap.add_argument("--timeout-s", type=float, default=900.0, help="bound on the whole run")
    ap.add_argument("--progress-s", type=float, default=0.25, help="wsload --progress-s")
    ap.add_argument(
        "--echo-every-s", type=float, default=2.0, help="print client progress at most this often"
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the result here (default bench/results/scale-STAMP.json)",
    )
    args = ap.parse_args(argv)

    n = args.conns
    args.workers = args.workers or max(1, math.ceil(n / PER_WORKER_CONNS))
    args.client_procs = args.client_procs or max(1, math.ceil(n / PER_PROC_FDS))
    src_addrs = (
        args.src_addrs
        if args.src_addrs is not None
        else src_range(math.ceil(n / PER_SRC_ADDR) if n > PER_SRC_ADDR else 0)
    )
    if args.size < FAN_HDR + 6:
        ap.error(f"--size must be at least {FAN_HDR + 6}")
    if not WSLOAD.exists():
        ap.error(f"{WSLOAD} missing: make bench-load-client")
    if args.messages > 4096:
        ap.error("--messages: at most 4096 (wsload's completion slots)")
    hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1]
    if n / args.client_procs + 64 > hard:
        ap.error(f"{n / args.client_procs:.0f} connections per client process > {hard} files")

    started = time.monotonic()
    deadline = started + args.timeout_s
    workdir = Path(tempfile.mkdtemp(prefix="fastws-scale-"))
    result: dict[str, Any] = {
        "commit": git_commit(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "conns": n,
        "workers": args.workers,
        "client_procs": args.client_procs,
        "src_addrs": src_addrs,
        "messages": args.messages,
        "size": args.size,
        "nofile_hard": hard,
        "ip_local_port_range": Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split(),
        "somaxconn": int(Path("/proc/sys/net/core/somaxconn").read_text()),
        "load_avg_start": os.getloadavg(),
    }
    log(
        f"{n:,} connections, {args.workers} workers, {args.client_procs} client processes, "
        f"source addresses {src_addrs or HOST}, {args.messages} broadcasts of {args.size} B"
    )
    redis = server = client = None
    failures: list[str] = []
    try:
        redis = Redis(workdir)
        server = Server(workdir, args.workers, redis.url, args.backlog)
        result["server_argv"] = server.argv[1:]
        server.wait_ready(min(60.0, deadline - time.monotonic()))
        before = stable_snapshot(server, min(deadline, time.monotonic() + 10))
        log(
            f"fastws up on port {server.port}: workers {[w['pid'] for w in before['workers']]}, "
            f"RSS {before['rss_kib'] / 1024:,.1f} MiB, redis on {redis.port}"
        )

        hold_s = max(10.0, deadline - time.monotonic() - 30)
        client = Client(args, server.port, src_addrs, hold_s)
        result["client_argv"] = client.argv[1:]
        ready = client.wait_event("ready", deadline - time.monotonic())
        log(
            f"all {n:,} connected and subscribed in {ready['open_s']:.1f} s "
            f"({ready['handshakes_per_s']:,.0f} handshakes/s)"
        )
        result["open_s"] = ready["open_s"]
        result["handshakes_per_s"] = ready["handshakes_per_s"]

        # every worker with a subscriber must be on the topic's channel before a publish
        during = snapshot(server)
        expect = sum(
            1
            for w, b in zip(during["workers"], before["workers"], strict=False)
            if w["fds"] > b["fds"]
        )
        wait_until = min(deadline, time.monotonic() + 30)
        while redis.numsub(TOPIC_CHANNEL) < expect and time.monotonic() < wait_until:
            time.sleep(0.1)
        result["redis_channel_subscribers"] = redis.numsub(TOPIC_CHANNEL)
        time.sleep(args.settle_s)
        during = snapshot(server)
        shares = [
            w["fds"] - b["fds"] for w, b in zip(during["workers"], before["workers"], strict=False)
        ]
        log(f"connections per worker (descriptors gained): {shares}")
        skmem = port_socket_memory(server.port)
        result["port_socket_memory"] = skmem
        rss_delta = (during["rss_kib"] - before["rss_kib"]) * 1024
        # system-wide figures: the delta is this test's (other work on the machine aside)
        sock_mem = during["sockstat"]["tcp_mem_bytes"] - before["sockstat"]["tcp_mem_bytes"]
        tcp_inuse = during["sockstat"]["tcp_inuse"] - before["sockstat"]["tcp_inuse"]
        slab = {k: v - before["slab_kib"].get(k, 0) for k, v in during["slab_kib"].items()}
        log(
            f"server RSS {during['rss_kib'] / 1024:,.1f} MiB (+{rss_delta / 2**20:,.1f} MiB, "
            f"{kib(rss_delta / n)} per connection); kernel TCP buffer memory "
            f"+{sock_mem / 2**20:,.1f} MiB, +{tcp_inuse:,} TCP sockets in use (both ends)"
        )

        pub = Publisher(server.port, args.size)
        time.sleep(0.2)
        sends: list[int] = []
        t_pub = time.monotonic()
        for seq in range(args.messages):
            if time.monotonic() > deadline:
                failures.append("run deadline reached while publishing")
                break
            sends.append(pub.publish(seq))
            if not client.wait_delivered(
                (seq + 1) * n, min(args.broadcast_timeout_s, deadline - time.monotonic())
            ):
                failures.append(
                    f"broadcast {seq} did not reach all {n:,} in {args.broadcast_timeout_s:.0f} s"
                )
                break
        t_pub = time.monotonic() - t_pub
        log(f"{len(sends)} broadcasts published and delivered in {t_pub:.1f} s")
        pub.close()
        time.sleep(0.5)

        client.release()
        final = client.wait_event(None, max(30.0, deadline - time.monotonic()))
        client.proc.wait(timeout=30)
        result["client"] = final

        # descriptors back to where they were (close handshakes finish asynchronously); a
        # worker's Redis connection pool may open a connection on its first PUBLISH: those
        # are the bridge's, not the clients'
        wait_until = min(deadline, time.monotonic() + 30)
        while True:
            after = snapshot(server, kinds=True)
            to_redis = [
                sum(
                    1
                    for d in describe_sockets(set(a["sockets"]) - set(b["sockets"]))
                    if d.split(" -> ")[-1].startswith(f"{HOST}:{redis.port} ")
                )
                for a, b in zip(after["workers"], before["workers"], strict=False)
            ]
            leaked = [
                a["fds"] - b["fds"] - r
                for a, b, r in zip(after["workers"], before["workers"], to_redis, strict=False)
            ]
            if all(x <= 0 for x in leaked) or time.monotonic() > wait_until:
                break
            time.sleep(0.5)
        result["snapshots"] = {"before": before, "connected": during, "after": after}
        if [w["pid"] for w in after["workers"]] != [w["pid"] for w in before["workers"]]:
            failures.append(
                f"workers changed during the run: {[w['pid'] for w in before['workers']]}"
                f" -> {[w['pid'] for w in after['workers']]} (see the server log)"
            )
        result["fds_leaked_per_worker"] = leaked
        result["new_redis_connections_per_worker"] = to_redis
        result["server_rss_delta_bytes"] = rss_delta
        result["server_bytes_per_conn"] = rss_delta / n
        result["kernel_tcp_mem_bytes"] = sock_mem
        result["kernel_tcp_inuse_delta"] = tcp_inuse
        result["kernel_slab_kib_delta"] = slab
        result["redis_rss_kib"] = redis.rss_kib()

        if final["received"] != n * len(sends):
            failures.append(f"received {final['received']:,}, expected {n * len(sends):,}")
        if final["lost"] or final["out_of_order"]:
            failures.append(f"lost {final['lost']}, out of order {final['out_of_order']}")
        if final["broadcasts_complete"] != len(sends):
            failures.append(f"{final['broadcasts_complete']} broadcasts complete of {len(sends)}")
        if any(x > 0 for x in leaked):
            kept = [
                {
                    k: v - b["fd_kinds"].get(k, 0)
                    for k, v in a["fd_kinds"].items()
                    if v > b["fd_kinds"].get(k, 0)
                }
                for a, b in zip(after["workers"], before["workers"], strict=False)
            ]
            new = [
                describe_sockets(set(a["sockets"]) - set(b["sockets"]))
                for a, b in zip(after["workers"], before["workers"], strict=False)
            ]
            failures.append(f"descriptors kept per worker: {leaked} ({kept}; new sockets: {new})")
        if client.proc.returncode != 0:
            failures.append(f"wsload exit status {client.proc.returncode}")

        nsock = max(1, skmem.get("sockets", 1))
        print()
        print(f"## fastws scale test: {n:,} connections ({result['commit']})")
        print()
        rows = [
            ("connections established", f"{n:,} of {n:,} (all subscribed)"),
            ("handshake rate", f"{ready['handshakes_per_s']:,.0f}/s ({ready['open_s']:.1f} s)"),
            ("workers / client processes", f"{args.workers} / {args.client_procs}"),
            (
                "server RSS (all workers)",
                f"{before['rss_kib'] / 1024:,.1f} MiB idle -> "
                f"{during['rss_kib'] / 1024:,.1f} MiB connected",
            ),
            ("server RSS per connection", kib(rss_delta / n)),
            (
                "kernel TCP buffers (sockstat)",
                f"+{sock_mem / 2**20:,.1f} MiB for +{tcp_inuse:,} sockets (server and client ends)",
            ),
            (
                "kernel memory, sockets on the port",
                f"{skmem.get('bytes', 0) / 2**20:,.1f} MiB "
                f"queued/allocated over {skmem.get('sockets', 0):,} sockets (ss -tm: r+t+f+w+o; "
                f"buffer limits rb {skmem.get('rb', 0) / nsock / 1024:,.0f} KiB, "
                f"tb {skmem.get('tb', 0) / nsock / 1024:,.0f} KiB each)",
            ),
            (
                "kernel slab growth",
                ", ".join(f"{k} {v / 1024:+,.1f} MiB" for k, v in slab.items())
                or "n/a (no /proc/slabinfo)",
            ),
            ("broadcasts", f"{len(sends)} of {args.size} B, one at a time"),
            (
                "broadcast completion p50 / p99",
                f"{final['lat_p50_us'] / 1000:,.1f} ms / "
                f"{final['lat_p99_us'] / 1000:,.1f} ms (publish -> last of {n:,})",
            ),
            (
                "deliveries",
                f"{final['received']:,} (lost {final['lost']}, out of order "
                f"{final['out_of_order']})",
            ),
            (
                "descriptors per worker",
                f"before {[w['fds'] for w in before['workers']]}, after "
                f"{[w['fds'] for w in after['workers']]} (new Redis connections {to_redis}, "
                f"kept {leaked})",
            ),
            ("client CPU (all processes)", f"{final['client_cpu_total_s']:.1f} s"),
        ]
        width = max(len(r[0]) for r in rows)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")
        print()
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            client.stop()
        if server is not None:
            result["server_log_tail"] = server.tail()[-1000:]
            server.stop()
        if redis is not None:
            redis.stop()
        result["failures"] = failures
        result["elapsed_s"] = time.monotonic() - started
        out = args.json
        if out is None:
            RESULTS.mkdir(exist_ok=True)
            out = RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        for f in failures:
            log(f"FAILED: {f}")
        log(f"result: {out}")
        return 1
    log(f"OK in {result['elapsed_s']:.0f} s; result: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
