"""Fan-out benchmark: one publisher, N subscribers, every server's own way of broadcasting.

Starts each server through its own command line on its fan-out app (bench/apps/fanout_*),
drives it with `wsload fanout` (bench/load/wsload.c: N subscriber connections on `/sub`, one
publisher on `/pub`, every receipt checked for order and content), reads the server's CPU
time from /proc at the moments the client opens and closes its measured window, and writes
every raw measurement to bench/results/fanout-<stamp>.json; `report` turns that into
Markdown (and a chart) for docs/BENCHMARKS.md. See "Fan-out" in bench/README.md.

    python bench/fanout.py                     # full matrix (`make bench-fanout`)
    python bench/fanout.py --quick             # 4 scenarios, 2 rounds
    python bench/fanout.py --servers fastws-loop,uvicorn-loop --scenarios n1000_64b_w16
    python bench/fanout.py report bench/results/fanout-STAMP.json [--docs]

Method: interleaved rounds (each round starts every server once, in an order rotated by one
each round, and runs every scenario against it), medians across rounds, ratios against the
peers of the same run, the server pinned to the first usable core and the client processes
to the others. Every load run is bounded in time (-d, --stall-s and a hard timeout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from run import (  # noqa: E402  (bench/run.py: process helpers shared with the echo bench)
    HOST,
    PY,
    RESULTS,
    UVICORN_FLAGS,
    VENV_BIN,
    WSLOAD,
    ServerProcess,
    ServerSpec,
    cpu_seconds,
    open_fds,
)

ROOT = BENCH.parent
DOCS = ROOT / "docs"
MARK_START = "<!-- fanout:start (bench/fanout.py report --docs) -->"
MARK_END = "<!-- fanout:end -->"


def server_specs() -> list[ServerSpec]:
    def fastws(app: str) -> list[str]:
        return [PY, "-m", "fastws", app, "--host", HOST, "--port", "{port}", *UVICORN_FLAGS]

    def uvicorn(app: str) -> list[str]:
        return [
            PY,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            "{port}",
            "--ws",
            "websockets-sansio",
            *UVICORN_FLAGS,
        ]

    granian = [
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
        "fanout_asgi:app",
    ]
    return [
        ServerSpec("fastws-publish", fastws("fanout_publish:app"), "fastws"),
        ServerSpec("fastws-loop", fastws("fanout_asgi:app"), "fastws"),
        ServerSpec("fastapi-fastws", fastws("fanout_fastapi:app"), "fastapi"),
        ServerSpec("fastapi-uvicorn", uvicorn("fanout_fastapi:app"), "fastapi"),
        ServerSpec("uvicorn-loop", uvicorn("fanout_asgi:app"), "uvicorn"),
        ServerSpec(
            "picows", [PY, "fanout_picows.py", "--host", HOST, "--port", "{port}"], "picows"
        ),
        ServerSpec(
            "socketify",
            [PY, "fanout_socketify.py", "--host", HOST, "--port", "{port}"],
            "socketify",
        ),
        ServerSpec("granian-loop", granian, "granian"),
    ]


DESCRIBE = {
    "fastws-publish": "fastws, `websocket.publish` (topic extension: the server fans out)",
    "fastws-loop": "fastws, raw ASGI loop: `for send in subscribers: await send(...)`",
    "fastapi-fastws": "FastAPI's `ConnectionManager.broadcast()` (the FastAPI guide) on fastws",
    "fastapi-uvicorn": "the same FastAPI app on uvicorn (websockets-sansio)",
    "uvicorn-loop": "uvicorn (websockets-sansio), the raw ASGI loop",
    "picows": "picows, native loop: `transport.send()` per subscriber from the frame callback",
    "socketify": "socketify (uWebSockets), native `app.publish(topic, ...)`",
    "granian-loop": "granian (ASGI), the raw ASGI loop",
}
# the targets: (server, reference, metric, at least)
TARGETS = [
    ("fastws-publish", "socketify", "per_cpu", 1.0),
    ("fastws-publish", "uvicorn-loop", "per_cpu", 10.0),
    ("fastws-loop", "uvicorn-loop", "per_cpu", 2.5),
    ("fastws-loop", "picows", "per_cpu", 1.0),
]


@dataclass
class Scenario:
    subs: int
    size: int
    window: int

    @property
    def key(self) -> str:
        return f"n{self.subs}_{self.size}b_w{self.window}"

    @property
    def title(self) -> str:
        size = "1 KiB" if self.size == 1024 else f"{self.size} B"
        plural = "s" if self.window > 1 else ""
        return f"{self.subs:,} subscribers, {size}, {self.window} broadcast{plural} in flight"


def all_scenarios() -> list[Scenario]:
    return [Scenario(n, s, w) for n in (100, 1000, 5000) for s in (64, 1024) for w in (1, 16)]


QUICK_KEYS = ["n100_64b_w16", "n1000_64b_w16", "n5000_64b_w16", "n5000_64b_w1"]


# ------------------------------------------------------------------------ measuring
def run_fanout(
    server: ServerProcess, sc: Scenario, a: argparse.Namespace, cpus: set[int] | None
) -> dict[str, Any]:
    """One wsload fanout run; server CPU is read when the client opens/closes its window."""
    argv = [
        str(WSLOAD),
        "fanout",
        "-p",
        str(server.port),
        "-c",
        str(sc.subs),
        "-s",
        str(sc.size),
        "-w",
        str(sc.window),
        "-W",
        str(a.warmup),
        "-d",
        str(a.duration),
        "-k",
        "128",
        "--procs",
        str(a.client_procs),
        "--stall-s",
        "5",
    ]
    if a.src_addrs:
        argv += ["--src-addrs", a.src_addrs]
    pgid = server.proc.pid
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    marks: dict[str, tuple[float, float]] = {}
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode().strip()
            if '"event": "measure_start"' in line or '"event": "measure_end"' in line:
                marks[json.loads(line)["event"]] = (time.monotonic(), cpu_seconds(pgid))
            lines.append(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    timeout = a.warmup + a.duration + 90
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    t.join(5)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"wsload fanout exit {proc.returncode}: {err.strip()[-400:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "measure_start" in marks and "measure_end" in marks:
        (t0, c0), (t1, c1) = marks["measure_start"], marks["measure_end"]
        cpu = c1 - c0
        result["server_cpu_s"] = round(cpu, 3)
        result["server_cpu_pct"] = round(100 * cpu / (t1 - t0), 1) if t1 > t0 else None
        # /proc's CPU times tick at 100 Hz: a window under ~0.2 s of CPU is too coarse
        result["per_cpu"] = result["deliveries"] / cpu if cpu >= 0.05 else None
    result["server_fds"] = open_fds(pgid)
    return result


def environment(
    a: argparse.Namespace, server_cpu: int | None, client_cpus: set[int] | None
) -> dict[str, Any]:
    def ver(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    def git(*args: str) -> str:
        try:
            return subprocess.check_output(["git", *args], cwd=ROOT, text=True).strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
                break
    except OSError:
        pass
    try:
        from fastws.ws import frames

        codec = getattr(frames, "IMPLEMENTATION", "?")
    except Exception:  # noqa: BLE001
        codec = "?"
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "fastws_commit": git("rev-parse", "--short=12", "HEAD"),
        "tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "fastws")),
        "codec": codec,
        "versions": {
            n: ver(n)
            for n in (
                "fastws",
                "uvicorn",
                "fastapi",
                "starlette",
                "granian",
                "picows",
                "socketify",
                "uvloop",
                "websockets",
            )
        },
        "server_cpu": server_cpu,
        "client_cpus": sorted(client_cpus) if client_cpus else None,
        "client_procs": a.client_procs,
        "loadavg_start": os.getloadavg(),
    }


def measure(a: argparse.Namespace) -> Path:
    specs = [s for s in server_specs() if a.servers == "all" or s.name in a.servers.split(",")]
    specs = [s for s in specs if s.module is None or _importable(s.module)]
    scs = [s for s in all_scenarios() if s.key in a.scenarios.split(",") or a.scenarios == "all"]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[0] if len(cpus) >= 2 else None
    client_cpus = set(cpus[1:]) if len(cpus) >= 2 else None
    if a.client_procs < 0:
        a.client_procs = 0 if len(cpus) <= 2 else min(len(cpus) - 1, 8)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / "logs" / f"fanout-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "settings": {
            "rounds": a.rounds,
            "warmup_s": a.warmup,
            "duration_s": a.duration,
            "src_addrs": a.src_addrs,
        },
        "environment": environment(a, server_cpu, client_cpus),
        "servers": [s.name for s in specs],
        "scenarios": [
            {"key": s.key, "title": s.title, "subs": s.subs, "size": s.size, "window": s.window}
            for s in scs
        ],
        "runs": [],
    }
    out = RESULTS / f"fanout-{stamp}.json"
    t_start = time.monotonic()
    for rnd in range(a.rounds):
        order = specs[rnd % len(specs) :] + specs[: rnd % len(specs)]
        for spec in order:
            server = ServerProcess(spec, server_cpu, logdir / f"{spec.name}.log")
            try:
                server.wait_ready()
                for sc in scs:
                    rec: dict[str, Any] = {"round": rnd, "server": spec.name, "scenario": sc.key}
                    try:
                        rec.update(run_fanout(server, sc, a, client_cpus))
                        print(
                            f"round {rnd + 1}/{a.rounds} {spec.name:16} {sc.key:15} "
                            f"{rec['deliveries_per_s']:>11,.0f} deliveries/s  "
                            f"{(rec.get('per_cpu') or 0):>11,.0f} per server CPU-s  "
                            f"p99 {rec['lat_p99_us'] / 1000:8.1f} ms  lost {rec['lost']} "
                            f"ooo {rec['out_of_order']}  client {rec['client_cpu_pct']:.0f}% "
                            f"server {rec.get('server_cpu_pct')}%",
                            flush=True,
                        )
                    except Exception as e:  # noqa: BLE001
                        rec["error"] = str(e)
                        print(
                            f"round {rnd + 1}/{a.rounds} {spec.name:16} {sc.key:15} ERROR {e}",
                            flush=True,
                        )
                        if not server.alive():
                            doc["runs"].append(rec)
                            break
                    doc["runs"].append(rec)
            except Exception as e:  # noqa: BLE001
                doc["runs"].append({"round": rnd, "server": spec.name, "error": f"start: {e}"})
                print(f"{spec.name}: {e}", flush=True)
            finally:
                server.stop()
            out.write_text(json.dumps(doc, indent=1))
    doc["elapsed_s"] = round(time.monotonic() - t_start, 1)
    doc["environment"]["loadavg_end"] = os.getloadavg()
    out.write_text(json.dumps(doc, indent=1))
    (RESULTS / "fanout-latest.json").write_text(json.dumps(doc, indent=1))
    print(f"wrote {out} ({doc['elapsed_s']:.0f} s)")
    return out


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ------------------------------------------------------------------------ reporting
def median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def summarize(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sc in doc["scenarios"]:
        for server in doc["servers"]:
            runs = [
                r for r in doc["runs"] if r.get("scenario") == sc["key"] and r["server"] == server
            ]
            ok = [r for r in runs if "error" not in r]
            if not runs:
                continue
            out.setdefault(sc["key"], {})[server] = {
                "n": len(ok),
                "errors": [r["error"] for r in runs if "error" in r],
                **{
                    k: median([r.get(k) for r in ok])
                    for k in (
                        "deliveries_per_s",
                        "broadcasts_per_s",
                        "per_cpu",
                        "lat_p50_us",
                        "lat_p99_us",
                        "client_cpu_pct",
                        "server_cpu_pct",
                    )
                },
                "lost": sum(r.get("lost", 0) for r in ok),
                "ooo": sum(r.get("out_of_order", 0) for r in ok),
                "stalled": sum(1 for r in ok if r.get("stalled")),
            }
    return out


def ratio_rounds(doc: dict[str, Any], key: str, a: str, b: str, metric: str) -> float | None:
    """Median of the per-round ratios a/b (same round: measured minutes apart, not hours)."""
    rs = []
    for rnd in {r["round"] for r in doc["runs"]}:
        ra = [
            r
            for r in doc["runs"]
            if r["round"] == rnd and r.get("scenario") == key and r["server"] == a
        ]
        rb = [
            r
            for r in doc["runs"]
            if r["round"] == rnd and r.get("scenario") == key and r["server"] == b
        ]
        if ra and rb and ra[0].get(metric) and rb[0].get(metric):
            rs.append(ra[0][metric] / rb[0][metric])
    return median(rs)


def fmt(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def render(doc: dict[str, Any], run_file: Path, png: str | None, note: str = "") -> str:
    s = summarize(doc)
    env = doc["environment"]
    st = doc["settings"]
    dirty = " (fastws/ modified in the tree)" if env["tree_dirty"] else ""
    shown = run_file.relative_to(ROOT) if run_file.is_relative_to(ROOT) else run_file
    L = [MARK_START, "## Fan-out (one publisher, N subscribers)", ""]
    L.append(
        f"Produced by `{' '.join(['python', 'bench/fanout.py', *doc['argv'][1:]])}` (started "
        f"{doc['started']}, {doc.get('elapsed_s', 0) / 60:.1f} min) at commit "
        f"`{env['fastws_commit']}`{dirty}, rendered by `python bench/fanout.py report {shown}`. "
        f"{st['rounds']} interleaved rounds, {st['warmup_s']} s warm-up + {st['duration_s']} s "
        f"measured per run; server on CPU {env['server_cpu']}, client ({env['client_procs']} "
        f"subscriber processes, 0 = one process) on CPUs {env['client_cpus']}; load average "
        f"{' '.join(f'{x:.2f}' for x in env['loadavg_start'])} at start. {env['cpu_model']}, "
        f"{env['cores']} cores, {env['python']}, codec {env['codec']}. How to run and read it: "
        "[bench/README.md](../bench/README.md#fan-out-benchmark)."
    )
    v = env["versions"]
    L += ["", "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".", ""]
    L += ["| Server | What it runs |", "|---|---|"]
    L += [f"| {n} | {DESCRIBE.get(n, n)} |" for n in doc["servers"]]
    L += ["", "### Targets (per-round ratios of deliveries per server CPU-second)", ""]
    L += ["| Target | " + " | ".join(sc["key"] for sc in doc["scenarios"]) + " |"]
    L += ["|---|" + "---|" * len(doc["scenarios"])]
    for a_, b_, metric, goal in TARGETS:
        if a_ not in doc["servers"] or b_ not in doc["servers"]:
            continue
        cells = []
        for sc in doc["scenarios"]:
            r = ratio_rounds(doc, sc["key"], a_, b_, metric)
            cells.append("n/a" if r is None else f"{r:.2f}x {'met' if r >= goal else 'MISSED'}")
        L.append(f"| {a_} >= {goal:g}x {b_} | " + " | ".join(cells) + " |")
    if "fastws-publish" in doc["servers"] and "socketify" in doc["servers"]:
        cells = []
        for sc in doc["scenarios"]:
            if sc["subs"] != 5000:
                cells.append("")
                continue
            a99 = s.get(sc["key"], {}).get("fastws-publish", {}).get("lat_p99_us")
            b99 = s.get(sc["key"], {}).get("socketify", {}).get("lat_p99_us")
            cells.append(
                "n/a"
                if not a99 or not b99
                else f"{a99 / 1000:.1f} vs {b99 / 1000:.1f} ms {'met' if a99 <= b99 else 'MISSED'}"
            )
        L.append(
            "| p99 latency at 5,000, fastws-publish <= socketify | " + " | ".join(cells) + " |"
        )
    L += ["", "### Results (medians over rounds)", ""]
    for sc in doc["scenarios"]:
        per = s.get(sc["key"], {})
        ref = per.get("uvicorn-loop", {}).get("per_cpu")
        L += [f"#### {sc['title']}", ""]
        L += [
            "| Server | deliveries/s | broadcasts/s | deliveries per server CPU-s | vs uvicorn "
            "| server CPU | latency p50 / p99 | client CPU | lost / out of order |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in doc["servers"]:
            x = per.get(name)
            if not x:
                continue
            if not x["n"]:
                L.append(f"| {name} | error: {x['errors'][0][:120]} | | | | | | | |")
                continue
            rr = ratio_rounds(doc, sc["key"], name, "uvicorn-loop", "per_cpu")
            stalled = f" (stalled {x['stalled']})" if x["stalled"] else ""
            L.append(
                f"| {name} | {fmt(x['deliveries_per_s'])} | {fmt(x['broadcasts_per_s'], 1)} | "
                f"{fmt(x['per_cpu'])} | {'n/a' if rr is None or not ref else f'{rr:.2f}x'} | "
                f"{fmt(x['server_cpu_pct'])}% | {fmt(x['lat_p50_us'] / 1000, 1)} / "
                f"{fmt(x['lat_p99_us'] / 1000, 1)} ms | {fmt(x['client_cpu_pct'])}% | "
                f"{x['lost']} / {x['ooo']}{stalled} |"
            )
        L.append("")
    if png:
        L += [f"![fan-out: deliveries per server CPU-second]({png})", ""]
    if note:
        L += [note, ""]
    L += [
        "Reading: *deliveries per server CPU-s* is what the server spends per subscriber "
        "message (user + system time of all its processes over the measured window, from "
        "/proc); it is the figure to compare, because on this 2-core machine the load client "
        "(one core) saturates long before a compiled fan-out does, so *deliveries/s* can be the "
        "client's limit (client CPU near 100%). Window 1 is latency (one broadcast at a time); "
        "window 16 is throughput. Lost / out of order must be 0: the client checks every receipt.",
        "",
        MARK_END,
    ]
    return "\n".join(L) + "\n"


def chart(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)
        return False
    s = summarize(doc)
    scs = doc["scenarios"]
    cols = min(4, len(scs))
    rows = (len(scs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    every = [x["per_cpu"] / 1000 for per in s.values() for x in per.values() if x.get("per_cpu")]
    span = (min(every) / 2, max(every) * 4) if every else (1, 10)
    for ax, sc in zip(axes.flat, scs, strict=False):
        per = s.get(sc["key"], {})
        names = [n for n in doc["servers"] if per.get(n, {}).get("per_cpu")]
        vals = [per[n]["per_cpu"] / 1000 for n in names]
        colors = [
            "#d62728"
            if n.startswith("fastws")
            else "#ff9896"
            if n == "fastapi-fastws"
            else "#7f7f7f"
            if "uvicorn" in n
            else "#1f77b4"
            for n in names
        ]
        y = list(range(len(names)))[::-1]
        ax.barh(y, vals, color=colors, height=0.7)
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xscale("log")
        for yi, v in zip(y, vals, strict=True):
            ax.text(v * 1.05, yi, f"{v:,.0f}k", va="center", fontsize=7)
        ax.set_title(sc["key"], fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(*span)  # one scale for every panel
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}k"))
    for ax in list(axes.flat)[len(scs) :]:
        ax.axis("off")
    env = doc["environment"]
    fig.suptitle(
        "Fan-out: 1000s of deliveries per server CPU-second (median of "
        f"{doc['settings']['rounds']} rounds, log scale). "
        f"fastws {env['fastws_commit']}, {env['python']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def report(a: argparse.Namespace) -> int:
    run_file = Path(a.run_file).resolve()
    doc = json.loads(run_file.read_text())
    stamp = run_file.stem.replace("fanout-", "")
    png = RESULTS / f"fanout-report-{stamp}.png"
    has_png = chart(doc, png)
    md = render(doc, run_file, png.name if has_png else None, a.note)
    (RESULTS / f"fanout-report-{stamp}.md").write_text(md)
    print(md)
    if a.docs:
        docs_png = DOCS / "benchmarks-fanout.png"
        if has_png:
            docs_png.write_bytes(png.read_bytes())
        md = render(doc, run_file, docs_png.name if has_png else None, a.note)
        bench_md = DOCS / "BENCHMARKS.md"
        text = bench_md.read_text() if bench_md.exists() else "# fastws load benchmarks\n"
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            text = head + md.rstrip("\n") + rest.split(MARK_END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + md
        bench_md.write_text(text)
        print(f"wrote {bench_md} (fan-out section)" + (f" and {docs_png}" if has_png else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        p = argparse.ArgumentParser(prog="fanout.py report")
        p.add_argument("run_file", nargs="?", default=str(RESULTS / "fanout-latest.json"))
        p.add_argument("--note", default="", help="a paragraph to add (conditions of the run)")
        p.add_argument(
            "--docs", action="store_true", help="write the Fan-out section of docs/BENCHMARKS.md"
        )
        return report(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"scenarios {','.join(QUICK_KEYS)}, 2 rounds, 0.3 + 1 s",
    )
    p.add_argument("--rounds", type=int)
    p.add_argument("--warmup", type=float)
    p.add_argument("--duration", type=float)
    p.add_argument(
        "--servers",
        default="all",
        help="comma list or all: " + ",".join(s.name for s in server_specs()),
    )
    p.add_argument("--scenarios", help="comma list of keys (n1000_64b_w16 ...) or all")
    p.add_argument(
        "--client-procs",
        type=int,
        default=-1,
        help="subscriber processes per client (default: 0 = one process on <= 2 cores)",
    )
    p.add_argument(
        "--src-addrs", default="127.0.0.1-127.0.0.4", help="wsload --src-addrs ('' = off)"
    )
    p.add_argument("--report", action="store_true", help="render the report when done")
    a = p.parse_args(argv)
    a.rounds = a.rounds or (2 if a.quick else 3)
    a.warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 0.5)
    a.duration = a.duration if a.duration is not None else (1.0 if a.quick else 2.0)
    a.scenarios = a.scenarios or (",".join(QUICK_KEYS) if a.quick else "all")
    if not WSLOAD.exists():
        print("bench/load/wsload is not built: make bench-load-client", file=sys.stderr)
        return 2
    out = measure(a)
    if a.report:
        report(argparse.Namespace(run_file=str(out), docs=False, note=""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
