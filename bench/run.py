"""Load benchmarks: fastws against uvicorn (three WebSocket stacks), granian, aiohttp, picows.

Starts each server through its own command line on the same echo app (bench/apps/), drives
it with the compiled load generator (bench/load/wsload) or wrk, and writes every raw
measurement to bench/results/run-<stamp>.json (and latest.json). bench/report.py turns that
file into the Markdown report and the chart. See "Load benchmarks" in bench/README.md.

    python bench/run.py                  # the full comparison (`make bench`, ~15 min)
    python bench/run.py --quick          # ~1.5 min version, 4 servers (`make bench-quick`)
    python bench/run.py --profile        # py-spy profile of fastws under 32 B x 64 load

Method: rounds are interleaved (each round runs every server once, the server order
rotated by one each round), every measurement has its own warm-up, scenarios are never
averaged together, and the server is pinned to core 0 and the client to core 1 (except in
the same-core scenario). Every load loop is bounded in messages and in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
RESULTS = BENCH / "results"
WSLOAD = BENCH / "load" / "wsload"
HOST = "127.0.0.1"
PY = sys.executable
VENV_BIN = Path(PY).parent

# uvicorn's flags for every uvicorn variant; fastws takes the same command line (its
# --http/--ws are accepted and ignored), which is the drop-in claim being measured.
# `make bench-quick` runs the servers the targets are measured against
QUICK_SERVERS = ["fastws", "uvicorn-sansio", "granian", "picows"]

UVICORN_FLAGS = [
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--no-access-log",
    "--log-level",
    "warning",
]


@dataclass
class ServerSpec:
    name: str
    argv: list[str]  # "{port}" is replaced
    module: str | None = None  # importable module that must exist, else the server is skipped
    http: bool = True  # serves HTTP keep-alive (the wrk scenario)


def server_specs() -> list[ServerSpec]:
    uv = [PY, "-m", "uvicorn", "echo:app", "--host", HOST, "--port", "{port}"]
    return [
        ServerSpec(
            "fastws",
            [PY, "-m", "fastws", "echo:app", "--host", HOST, "--port", "{port}", *UVICORN_FLAGS],
            "fastws",
        ),
        ServerSpec("uvicorn-sansio", [*uv, "--ws", "websockets-sansio", *UVICORN_FLAGS], "uvicorn"),
        ServerSpec("uvicorn-websockets", [*uv, "--ws", "websockets", *UVICORN_FLAGS], "websockets"),
        ServerSpec("uvicorn-wsproto", [*uv, "--ws", "wsproto", *UVICORN_FLAGS], "wsproto"),
        ServerSpec(
            "granian",
            [
                str(VENV_BIN / "granian"),
                "--interface",
                "asgi",
                "--host",
                HOST,
                "--port",
                "{port}",
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--no-access-log",
                "--log-level",
                "warning",
                "echo:app",
            ],
            "granian",
        ),
        ServerSpec(
            "aiohttp", [PY, "aiohttp_echo.py", "--host", HOST, "--port", "{port}"], "aiohttp"
        ),
        ServerSpec(
            "picows",
            [PY, "picows_echo.py", "--host", HOST, "--port", "{port}"],
            "picows",
            http=False,
        ),
    ]


@dataclass
class Scenario:
    key: str
    title: str
    metric: str  # field of the client's JSON that is the result
    unit: str
    higher_is_better: bool = True
    kind: str = "wsload"  # wsload | idle | wrk
    args: list[str] = field(default_factory=list)
    same_core: bool = False


def scenarios(idle_conns: int) -> list[Scenario]:
    return [
        Scenario(
            "echo_32b_64c",
            "32 B text echo, 64 connections",
            "msgs_per_s",
            "msgs/s",
            args=["echo", "-c", "64", "-s", "32"],
        ),
        Scenario(
            "rtt_32b_1c",
            "32 B text, 1 connection, client on the other core",
            "msgs_per_s",
            "round trips/s",
            args=["echo", "-c", "1", "-s", "32"],
        ),
        Scenario(
            "rtt_32b_1c_samecore",
            "32 B text, 1 connection, client on the server's core",
            "msgs_per_s",
            "round trips/s",
            args=["echo", "-c", "1", "-s", "32"],
            same_core=True,
        ),
        Scenario(
            "echo_16k_4c",
            "16 KiB binary echo, 4 connections",
            "mb_per_s",
            "MB/s",
            args=["echo", "-c", "4", "-s", "16384", "-b"],
        ),
        Scenario(
            "echo_1m_4c",
            "1 MiB binary echo, 4 connections",
            "mb_per_s",
            "MB/s",
            args=["echo", "-c", "4", "-s", "1048576", "-b"],
        ),
        Scenario(
            "connect_16",
            "New connections/s (connect, upgrade, 1 message, close; 16 in flight)",
            "conns_per_s",
            "conns/s",
            args=["connect", "-c", "16", "-s", "32"],
        ),
        Scenario(
            "idle_mem",
            f"Memory per idle WebSocket ({idle_conns:,} connections)",
            "bytes_per_conn",
            "bytes/conn",
            higher_is_better=False,
            kind="idle",
        ),
        Scenario(
            "idle_mem_deflate",
            f"Memory per idle WebSocket, permessage-deflate offered ({idle_conns:,} connections)",
            "bytes_per_conn",
            "bytes/conn",
            higher_is_better=False,
            kind="idle",
            args=["--deflate"],
        ),
        Scenario(
            "http_wrk", "HTTP GET keep-alive, wrk -c64", "requests_per_s", "req/s", kind="wrk"
        ),
        Scenario(
            "http_wrk_pipelined",
            "HTTP GET pipelined, 16 requests per write, wrk -c64",
            "requests_per_s",
            "req/s",
            kind="wrk",
            args=["-s", str(ROOT / "bench" / "load" / "pipeline.lua"), "--", "16"],
        ),
    ]


# ------------------------------------------------------------------------ processes
def pin_to(cpu: int | None):  # type: ignore[no-untyped-def]
    def preexec() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def group_pids(pgid: int) -> list[int]:
    """Processes of the server's process group (a server may fork workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: process group
            pids.append(int(entry))
    return pids


def rss_bytes(pgid: int) -> int:
    total = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pgid: int) -> tuple[float, float]:
    """User and system CPU seconds of the server's processes (all their threads), from /proc."""
    user = system = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        user += int(fields[11])  # utime, stime (fields 14 and 15)
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of the server's processes (all their threads), from /proc."""
    return sum(cpu_times(pgid))


class CpuSampler:
    """Samples the server's CPU time every 50 ms while a client runs, so the harness can
    say whether the server's core was saturated during the measured window."""

    def __init__(self, pgid: int) -> None:
        import threading

        self.pgid = pgid
        self.samples: list[tuple[float, float, float]] = []  # time, user, system
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), *cpu_times(self.pgid)))
            self._stop.wait(0.05)

    def __enter__(self) -> CpuSampler:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def pcts(self, start_s: float, end_s: float) -> dict[str, float | None]:
        """Server CPU % between start_s and end_s after __enter__: in all, in user space and
        in the kernel (the result's server_cpu_pct, server_user_pct, server_sys_pct)."""
        window = [x for x in self.samples if self.t0 + start_s <= x[0] <= self.t0 + end_s]
        if len(window) < 2 or window[-1][0] - window[0][0] < 0.1:
            return {"server_cpu_pct": None, "server_user_pct": None, "server_sys_pct": None}
        (ta, ua, sa), (tb, ub, sb) = window[0], window[-1]
        user, system = 100 * (ub - ua) / (tb - ta), 100 * (sb - sa) / (tb - ta)
        return {
            "server_cpu_pct": round(user + system, 1),
            "server_user_pct": round(user, 1),
            "server_sys_pct": round(system, 1),
        }


def open_fds(pgid: int) -> int:
    total = 0
    for pid in group_pids(pgid):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


class ServerProcess:
    def __init__(self, spec: ServerSpec, cpu: int | None, log_path: Path) -> None:
        self.spec = spec
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)) for a in spec.argv]
        self.log = open(log_path, "ab")
        self.log.write(f"\n$ {' '.join(argv)}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            argv,
            cwd=APPS,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
            preexec_fn=pin_to(cpu),
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Ready once a plain GET gets any HTTP response (granian forks its worker late)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1."):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.spec.name} not ready after {timeout_s:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # workers of the group (granian) may outlive the leader for a moment
        deadline = time.monotonic() + 5
        while group_pids(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in group_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def run_client(argv: list[str], cpu: int | None, timeout_s: float) -> tuple[int, str, str]:
    """Runs a client (wsload, which reports its own CPU time) to completion."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=pin_to(cpu),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return 124, out.decode(), err.decode() + f"\nkilled after {timeout_s:.0f} s"
    return proc.returncode, out.decode(), err.decode()


def run_timed_client(argv: list[str], cpu: int | None, timeout_s: float) -> tuple[int, str, float]:
    """Like run_client but reaps with wait4 to read the child's own CPU time (for wrk)."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=pin_to(cpu),
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    chunks = []
    os.set_blocking(proc.stdout.fileno(), False)
    while True:
        try:
            chunk = proc.stdout.read()
            if chunk:
                chunks.append(chunk)
        except BlockingIOError:
            pass
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            rest = proc.stdout.read()
            if rest:
                chunks.append(rest)
            return proc.returncode, b"".join(chunks).decode(), usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return 124, b"".join(chunks).decode(), 0.0
        time.sleep(0.02)


# ------------------------------------------------------------------------ scenarios
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        ncpu = len(os.sched_getaffinity(0))
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpu = cpus[0] if ncpu >= 2 else None
        self.client_cpu = cpus[1] if ncpu >= 2 else None
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.logdir = RESULTS / "logs" / self.stamp
        self.logdir.mkdir(parents=True, exist_ok=True)

    def wsload(self, server: ServerProcess, sc: Scenario) -> dict[str, Any]:
        a = self.args
        argv = [
            str(WSLOAD),
            *sc.args,
            "-p",
            str(server.port),
            "-d",
            str(a.duration),
            "-W",
            str(a.warmup),
        ]
        cpu = self.server_cpu if sc.same_core else self.client_cpu
        with CpuSampler(server.proc.pid) as sampler:
            rc, out, err = run_client(argv, cpu, a.warmup + a.duration + 60)
        if rc != 0:
            raise RuntimeError(f"wsload exit {rc}: {err.strip()[-500:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result["value"] = result[sc.metric]
        # the measured window starts after connection setup (a few ms) and the warm-up
        result.update(sampler.pcts(a.warmup + 0.05, a.warmup + a.duration))
        return result

    def idle(self, server: ServerProcess, sc: Scenario) -> dict[str, Any]:
        a = self.args
        pgid = server.proc.pid
        # warm the server's code paths (handshake, echo, close) before the baseline
        rc, _, err = run_client(
            [
                str(WSLOAD),
                "echo",
                "-p",
                str(server.port),
                "-c",
                "8",
                "-n",
                "50",
                "-W",
                "0",
                "-d",
                "0",
            ],
            self.client_cpu,
            30,
        )
        if rc != 0:
            raise RuntimeError(f"warm-up failed: {err.strip()[-300:]}")
        time.sleep(a.settle)
        fds_before = open_fds(pgid)
        rss_before = rss_bytes(pgid)
        argv = [
            str(WSLOAD),
            "idle",
            *sc.args,
            "-p",
            str(server.port),
            "-c",
            str(a.idle_conns),
            "-k",
            "64",
            "--hold-s",
            "60",
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=pin_to(self.client_cpu),
            start_new_session=True,
        )
        assert proc.stdin and proc.stdout
        try:
            ready_line = _readline_with_timeout(proc, 60.0)
            if not ready_line:
                raise RuntimeError("idle client not ready within 60 s")
            ready = json.loads(ready_line)
            time.sleep(a.settle)  # let per-connection tasks reach their idle state
            rss_held = rss_bytes(pgid)
            fds_held = open_fds(pgid)
            proc.stdin.write(b"close\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=60)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"wsload idle exit {proc.returncode}: {err.decode()[-500:]}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        result.update(
            rss_before=rss_before,
            rss_held=rss_held,
            fds_before=fds_before,
            fds_held=fds_held,
            ready_open_s=ready["open_s"],
            bytes_per_conn=(rss_held - rss_before) / a.idle_conns,
        )
        result["value"] = result["bytes_per_conn"]
        # wait until the server has let go of the sockets before the next scenario
        deadline = time.monotonic() + 15
        while open_fds(pgid) > fds_before + 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        result["fds_after"] = open_fds(pgid)
        return result

    def wrk(self, server: ServerProcess, sc: Scenario) -> dict[str, Any]:
        a = self.args
        url = f"http://{HOST}:{server.port}/"
        base = ["wrk", "-t1", "-c64"]
        script = sc.args  # e.g. -s pipeline.lua -- 16: after the URL (wrk's script arguments)
        if a.warmup >= 0.5:  # wrk counts whole seconds
            warm = [*base, f"-d{max(1, round(a.warmup))}s", url, *script]
            run_timed_client(warm, self.client_cpu, 60)
        dur = max(1, round(a.duration))
        with CpuSampler(server.proc.pid) as sampler:
            argv = [*base, f"-d{dur}s", url, *script]
            rc, out, cpu = run_timed_client(argv, self.client_cpu, dur + 60)
        if rc != 0:
            raise RuntimeError(f"wrk exit {rc}: {out[-300:]}")
        rps = None
        errors = None
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                rps = float(line.split()[1])
            if "Non-2xx" in line or "Socket errors" in line:
                errors = line.strip()
        if rps is None:
            raise RuntimeError(f"no Requests/sec in wrk output: {out[-300:]}")
        return {
            "requests_per_s": rps,
            "value": rps,
            "duration_s": dur,
            "client_cpu_s": cpu,
            "client_cpu_pct": round(100 * cpu / dur, 1),
            "wrk_errors": errors,
            **sampler.pcts(0.1, dur),
        }


def _readline_with_timeout(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout_s):
            return ""
        return proc.stdout.readline().decode()
    finally:
        sel.close()


# ------------------------------------------------------------------------ environment
def environment() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def cmd(argv: list[str], cwd: Path = ROOT) -> str:
        try:
            return subprocess.run(
                argv, cwd=cwd, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    wrk_path = shutil.which("wrk")
    wrk_version = None
    if wrk_path:  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." (and exit status 1)
        r = subprocess.run([wrk_path, "-v"], capture_output=True, text=True)
        first = (r.stdout + r.stderr).strip().splitlines()
        wrk_version = " ".join(first[0].split()[:2]) if first else "wrk"
    commit = cmd(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = bool(cmd(["git", "status", "--porcelain", "--", "fastws"]))
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": cmd(["sh", "-c", ". /etc/os-release 2>/dev/null && echo $PRETTY_NAME"]),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "fastws_commit": commit + ("-dirty" if dirty else ""),
        "codec": cmd([PY, "-c", "import fastws.ws.frames as f; print(f.IMPLEMENTATION)"]),
        "versions": {
            d: version(d)
            for d in (
                "fastws",
                "uvicorn",
                "uvloop",
                "httptools",
                "websockets",
                "wsproto",
                "granian",
                "aiohttp",
                "picows",
            )
        },
        "wrk": wrk_version,
        "gcc": cmd(["gcc", "-dumpfullversion"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


# ------------------------------------------------------------------------ main loop
def available(
    specs: list[ServerSpec], wanted: list[str] | None
) -> tuple[list[ServerSpec], dict[str, str]]:
    import importlib.util

    keep, skipped = [], {}
    for s in specs:
        if wanted and s.name not in wanted:
            continue
        if s.module and importlib.util.find_spec(s.module) is None:
            skipped[s.name] = f"{s.module} is not installed (pip install -e '.[bench]')"
            continue
        keep.append(s)
    return keep, skipped


def fmt_s(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 rounds of short runs, 500 idle connections, 4 servers (~1.5 min)",
    )
    p.add_argument("--rounds", type=int, help="measured rounds (default 5; 3 with --quick)")
    p.add_argument(
        "--duration", type=float, help="seconds measured per run (1.5; 0.3 with --quick)"
    )
    p.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each run (0.5; 0.1 with --quick)"
    )
    p.add_argument("--idle-conns", type=int, help="idle connections (5000; 500 with --quick)")
    p.add_argument(
        "--idle-rounds",
        type=int,
        help="rounds that include the idle-memory scenarios (3): their spread is "
        "under 1%% and 5,000 handshakes on the slowest servers take 10 s",
    )
    p.add_argument(
        "--settle",
        type=float,
        help="seconds of quiet before each RSS reading (1.0; 0.3 with --quick)",
    )
    p.add_argument(
        "--servers",
        help="comma-separated subset, e.g. fastws,uvicorn-sansio, or "
        "'all' (default; with --quick: the servers the targets name, "
        f"{','.join(QUICK_SERVERS)})",
    )
    p.add_argument("--scenarios", help="comma-separated subset of scenario keys")
    p.add_argument("--out", type=Path, help="result JSON path (default results/run-STAMP.json)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile fastws with py-spy under the 32 B x 64 load, then exit",
    )
    args = p.parse_args(argv)
    if args.quick:
        defaults = {
            "rounds": 3,
            "duration": 0.3,
            "warmup": 0.1,
            "idle_conns": 500,
            "settle": 0.3,
            "idle_rounds": 3,
            "servers": ",".join(QUICK_SERVERS),
        }
    else:
        defaults = {
            "rounds": 5,
            "duration": 1.5,
            "warmup": 0.5,
            "idle_conns": 5000,
            "settle": 1.0,
            "idle_rounds": 3,
            "servers": "all",
        }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    if not WSLOAD.exists():
        print(f"{WSLOAD} is missing: run `make bench-load-client`", file=sys.stderr)
        return 2
    # 5,000 idle connections need 5,000 descriptors in the server and in the client
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.idle_conns * 2 + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < args.idle_conns + 256:
        print(
            f"RLIMIT_NOFILE hard limit {hard} is too low for {args.idle_conns} connections",
            file=sys.stderr,
        )
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)

    if args.profile:
        return profile(args)

    wanted = None if args.servers == "all" else args.servers.split(",")
    specs, skipped = available(server_specs(), wanted)
    scs = scenarios(args.idle_conns)
    if args.scenarios:
        keys = args.scenarios.split(",")
        scs = [s for s in scs if s.key in keys]
    if not shutil.which("wrk"):
        scs = [s for s in scs if s.kind != "wrk"]
        print("wrk not found (apt-get install wrk): skipping the HTTP scenario", file=sys.stderr)
    bench = Bench(args)
    env = environment()
    settings = {
        k: getattr(args, k)
        for k in ("rounds", "duration", "warmup", "idle_conns", "idle_rounds", "settle", "quick")
    }
    settings.update(
        server_cpu=bench.server_cpu,
        client_cpu=bench.client_cpu,
        command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    )
    out_path = args.out or RESULTS / f"run-{bench.stamp}.json"
    doc: dict[str, Any] = {
        "format": 1,
        "stamp": bench.stamp,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "environment": env,
        "settings": settings,
        "servers": [s.name for s in specs],
        "skipped_servers": skipped,
        "server_commands": {
            s.name: " ".join(s.argv).replace(PY, "python").replace(str(VENV_BIN) + "/", "")
            for s in specs
        },
        "scenarios": [vars(s) for s in scs],
        "runs": [],
    }

    ws_scs = [s for s in scs if s.kind in ("wsload", "wrk")]
    idle_plain = [s for s in scs if s.key == "idle_mem"]
    idle_deflate = [s for s in scs if s.key == "idle_mem_deflate"]

    def runs_in(rnd: int, sp: ServerSpec) -> list[Scenario]:
        return [
            s
            for s in scs
            if (sp.http or s.kind != "wrk") and (s.kind != "idle" or rnd < args.idle_rounds)
        ]

    total = sum(len(runs_in(rnd, sp)) for sp in specs for rnd in range(args.rounds))
    done = 0
    t0 = time.monotonic()

    def progress(rnd: int, server: str, sc: Scenario) -> None:
        elapsed = time.monotonic() - t0
        eta = elapsed / done * (total - done) if done else 0
        line = (
            f"[round {rnd + 1}/{args.rounds}  {done}/{total}  {fmt_s(elapsed)} elapsed"
            f"{f', ~{fmt_s(eta)} left' if done else ''}] {server}: {sc.title}"
        )
        if sys.stderr.isatty():
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def record(
        rnd: int,
        server: str,
        sc: Scenario,
        result: dict[str, Any] | None,
        error: str | None,
        wall_s: float = 0.0,
    ) -> None:
        nonlocal done
        done += 1
        doc["runs"].append(
            {
                "round": rnd,
                "server": server,
                "scenario": sc.key,
                "value": result["value"] if result else None,
                "error": error,
                "wall_s": round(wall_s, 2),
                "detail": result,
            }
        )
        if error:
            print(f"\n  {server} / {sc.key}: {error}", file=sys.stderr, flush=True)
        out_path.write_text(json.dumps(doc, indent=1))

    for rnd in range(args.rounds):
        order = specs[rnd % len(specs) :] + specs[: rnd % len(specs)] if specs else []
        for spec in order:
            # two fresh servers per round: idle memory needs an unused server each time
            for group in (idle_plain + ws_scs, idle_deflate):
                group = [s for s in group if s in runs_in(rnd, spec)]
                if not group:
                    continue
                log = bench.logdir / f"{spec.name}.log"
                server = None
                try:
                    server = ServerProcess(spec, bench.server_cpu, log)
                    server.wait_ready()
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    for sc in group:
                        record(rnd, spec.name, sc, None, f"server did not start: {exc} (see {log})")
                    if server:
                        server.stop()
                    continue
                try:
                    for sc in group:
                        progress(rnd, spec.name, sc)
                        if not server.alive():
                            record(rnd, spec.name, sc, None, f"server died (see {log})")
                            continue
                        t_run = time.monotonic()
                        try:
                            run = {"wsload": bench.wsload, "idle": bench.idle, "wrk": bench.wrk}[
                                sc.kind
                            ]
                            result = run(server, sc)
                            record(rnd, spec.name, sc, result, None, time.monotonic() - t_run)
                        except Exception as exc:  # noqa: BLE001
                            record(rnd, spec.name, sc, None, str(exc), time.monotonic() - t_run)
                finally:
                    server.stop()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    doc["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    doc["environment"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    out_path.write_text(json.dumps(doc, indent=1))
    latest = RESULTS / "latest.json"
    latest.write_text(json.dumps(doc, indent=1))
    print(
        f"wrote {out_path} ({fmt_s(doc['elapsed_s'])}); `python bench/report.py` renders it",
        file=sys.stderr,
    )
    return 0


# ------------------------------------------------------------------------ profiling
def profile(args: argparse.Namespace) -> int:
    """py-spy record of fastws while wsload runs the 32 B x 64 echo; prints the hot spots."""
    pyspy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    bench = Bench(args)
    spec = server_specs()[0]
    server = ServerProcess(spec, bench.server_cpu, bench.logdir / "fastws-profile.log")
    seconds = max(5, int(args.duration * 3))  # per recording; two recordings
    raw = RESULTS / f"profile-{bench.stamp}.txt"
    svg = RESULTS / f"profile-{bench.stamp}.svg"
    try:
        server.wait_ready()
        load = subprocess.Popen(
            [
                str(WSLOAD),
                "echo",
                "-c",
                "64",
                "-s",
                "32",
                "-p",
                str(server.port),
                "-W",
                "0.5",
                "-d",
                str(2 * seconds + 3),
            ],
            stdout=subprocess.PIPE,
            preexec_fn=pin_to(bench.client_cpu),
            start_new_session=True,
        )
        time.sleep(1.0)
        # Python-level stacks, sampled without pausing the server (--nonblocking); idle
        # samples are dropped. For the kernel/native split use `perf record -g -p PID`.
        for fmt, path in (("raw", raw), ("flamegraph", svg)):
            subprocess.run(
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(server.proc.pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--format",
                    fmt,
                    "-o",
                    str(path),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
            )
        out, _ = load.communicate(timeout=2 * seconds + 60)
        print(out.decode().strip())
    finally:
        server.stop()
    own: dict[str, int] = {}
    total_samples = 0
    inclusive: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = stack.split(";")
        total_samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + count
    print(f"\n{total_samples} samples; top functions by own time ({raw}, flame graph {svg}):")
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {100 * n / total_samples:5.1f}%  {name}")
    print("\ntop by inclusive time:")
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {100 * n / total_samples:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
