"""File download: Starlette's FileResponse of one large file, fastws against uvicorn.

fastws advertises ``http.response.pathsend``, so Starlette hands it the path and fastws moves the
bytes with os.sendfile(); uvicorn does not, so Starlette reads the file in 64 KiB chunks and sends
each through ``http.response.body``. Both servers run the same app (bench/apps/download.py)
through their CLI on uvloop + httptools, pinned to core 0; curl downloads to /dev/null from
core 1. Rounds are interleaved (fastws, uvicorn, fastws, ...); each round is ``--downloads``
downloads over one keep-alive connection. Reported: MB/s (median of rounds, with the spread) and
the server's CPU time per GiB served (user + system, from /proc/PID/stat), the ratio of fastws to
uvicorn in the same run.

    .venv/bin/python bench/download.py --size-mb 100 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(server: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    common = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if server == "fastws":
        cmd = [sys.executable, "-m", "fastws", "bench.apps.download:app", *common]
    else:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.apps.download:app",
            *common,
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{server} did not start") from None
            time.sleep(0.05)


def one_round(server: str, downloads: int, size: int, env: dict[str, str]) -> tuple[float, float]:
    port = free_port()
    proc = start(server, port, env)
    try:
        url = f"http://127.0.0.1:{port}/file"
        # warm-up: the page cache and the server's first request
        subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True, timeout=120)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "curl",
                "-s",
                "-w",
                "%{size_download}\n",
                *[arg for _ in range(downloads) for arg in ("-o", "/dev/null", url)],
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout.split()
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        assert [int(n) for n in out] == [size] * downloads, out
        return size * downloads / elapsed / 1e6, cpu / (size * downloads / 2**30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--downloads", type=int, default=5, help="per round, one connection")
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    with tempfile.NamedTemporaryFile(prefix="fastws-download-", suffix=".bin") as f:
        block = os.urandom(1 << 20)
        for _ in range(args.size_mb):
            f.write(block)
        f.flush()
        env = {**os.environ, "FASTWS_BENCH_FILE": f.name}
        results: dict[str, list[tuple[float, float]]] = {"fastws": [], "uvicorn": []}
        for r in range(args.rounds):
            for server in results:
                results[server].append(one_round(server, args.downloads, size, env))
                rate, cpu = results[server][-1]
                print(
                    f"round {r + 1} {server:8s} {rate:8.0f} MB/s  {cpu:6.3f} CPU-s/GiB", flush=True
                )
    print(f"\n{args.size_mb} MiB file, {args.downloads} downloads x {args.rounds} rounds (medians)")
    med = {}
    for server, rows in results.items():
        rates, cpus = [r for r, _ in rows], [c for _, c in rows]
        med[server] = (statistics.median(rates), statistics.median(cpus))
        print(
            f"{server:8s} {med[server][0]:8.0f} MB/s ({min(rates):.0f}-{max(rates):.0f})  "
            f"server CPU {med[server][1]:.3f} s/GiB ({min(cpus):.3f}-{max(cpus):.3f})"
        )
    print(
        f"fastws/uvicorn: rate {med['fastws'][0] / med['uvicorn'][0]:.2f}x, "
        f"server CPU per GiB {med['fastws'][1] / med['uvicorn'][1]:.2f}x"
    )


if __name__ == "__main__":
    main()
