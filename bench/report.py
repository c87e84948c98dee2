"""Renders a bench/run.py result file as a Markdown report and a PNG chart of the ratios.

    python bench/report.py                  # results/latest.json -> results/report-STAMP.md/png
    python bench/report.py RUN.json --docs  # also docs/BENCHMARKS.md and docs/benchmarks.png

Per scenario and server: the median over the measured rounds with its min-max spread, the
ratio of medians against uvicorn-sansio (uvicorn's default WebSocket stack) and against
picows, the server's and the client's CPU use, and the issue's targets next to what was
measured. Scenarios stay separate; nothing is averaged across them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
BASE = "uvicorn-sansio"
PEER = "picows"
SATURATED_PCT = 90.0  # a client above this share of its core may be the bottleneck
# what one unit of each rate is, for the server's CPU time per unit (us per message, ...)
PER_OP = {
    "msgs/s": "message",
    "round trips/s": "round trip",
    "MB/s": "MB",
    "conns/s": "connection",
    "req/s": "request",
}

# The product issues' targets for fastws: (scenario, reference server, op, ratio, figure).
# op ">=" / ">" for higher-is-better rates, "<=" for memory and latency; the figure is the
# scenario's rate ("median") unless named (a latency percentile of the runs).
# Issue #21 (the echo ceiling): at or above picows everywhere, HTTP at 2x uvicorn.
TARGETS: list[tuple[str, str, str, float, str]] = [
    ("echo_32b_64c", BASE, ">=", 1.8, "median"),
    ("echo_32b_64c", PEER, ">=", 1.0, "median"),
    ("rtt_32b_1c", PEER, "<=", 1.0, "lat_p50_us"),
    ("rtt_32b_1c", PEER, "<=", 1.0, "lat_p99_us"),
    ("rtt_32b_1c_samecore", BASE, ">=", 1.35, "median"),
    ("rtt_32b_1c_samecore", PEER, ">=", 1.0, "median"),
    ("echo_16k_4c", BASE, ">=", 1.6, "median"),
    ("echo_16k_4c", PEER, ">=", 1.0, "median"),
    ("echo_1m_4c", BASE, ">=", 1.4, "median"),
    ("echo_1m_4c", PEER, ">=", 1.1, "median"),
    ("connect_16", BASE, ">=", 2.5, "median"),
    ("connect_16", PEER, ">=", 1.0, "median"),
    ("connect_16", "granian", ">", 1.0, "median"),
    ("idle_mem", BASE, "<=", 0.5, "median"),
    ("idle_mem_deflate", BASE, "<=", 0.5, "median"),
    ("http_wrk", BASE, ">=", 2.0, "median"),
    ("http_wrk", "granian", ">=", 1.3, "median"),
    ("http_wrk_pipelined", BASE, ">=", 2.0, "median"),
]

SHORT = {
    "echo_32b_64c": "32 B x 64 conns",
    "rtt_32b_1c": "32 B x 1 conn, other core",
    "rtt_32b_1c_samecore": "32 B x 1 conn, same core",
    "echo_16k_4c": "16 KiB x 4 conns",
    "echo_1m_4c": "1 MiB x 4 conns",
    "connect_16": "new conns/s",
    "idle_mem": "idle memory",
    "idle_mem_deflate": "idle memory, deflate offered",
    "http_wrk": "HTTP req/s",
    "http_wrk_pipelined": "HTTP req/s, pipelined x16",
}


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes/conn":
        return f"{value / 1024:.1f}"
    if unit == "MB/s":
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    return f"{value:,.0f}"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> server -> {median, min, max, n, errors, cpu, latency...}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sc in doc["scenarios"]:
        per: dict[str, dict[str, Any]] = {}
        for server in doc["servers"]:
            runs = [r for r in doc["runs"] if r["scenario"] == sc["key"] and r["server"] == server]
            if not runs:
                continue
            ok = [r for r in runs if r["value"] is not None]
            vals = [r["value"] for r in ok]
            det = [r["detail"] for r in ok]

            def col(name: str, d: list[dict[str, Any]] = det) -> list[float]:
                return [x[name] for x in d if x.get(name) is not None]

            # throughput per second of server CPU: less sensitive than the raw rate to
            # other jobs taking the server's core on a shared machine
            eff = [
                r["value"] / (r["detail"]["server_cpu_pct"] / 100)
                for r in ok
                if (r["detail"].get("server_cpu_pct") or 0) > 5
            ]
            # server CPU per unit of the rate (us per message, request, MB...), user and kernel
            split = [
                (1e6 * d["server_user_pct"] / 100 / v, 1e6 * d["server_sys_pct"] / 100 / v)
                for v, d in zip(vals, det, strict=True)
                if d.get("server_user_pct") is not None and v
            ]
            per[server] = {
                "values": vals,
                "user_us": median([u for u, _ in split]),
                "sys_us": median([k for _, k in split]),
                "median": median(vals),
                "per_cpu_s": median(eff),
                "min": min(vals) if vals else None,
                "max": max(vals) if vals else None,
                "n": len(vals),
                "errors": [r["error"] for r in runs if r["error"]],
                "client_cpu_median": median(col("client_cpu_pct")),
                "client_cpu_max": max(col("client_cpu_pct"), default=None),
                "server_cpu_median": median(col("server_cpu_pct")),
                "lat_p50_us": median(col("lat_p50_us")),
                "lat_p99_us": median(col("lat_p99_us")),
                "deflate_accepted": max(col("deflate_accepted"), default=None),
            }
        for s in per.values():
            for ref, key in ((BASE, "vs_base"), (PEER, "vs_peer")):
                rm = per.get(ref, {}).get("median")
                s[key] = s["median"] / rm if s["median"] is not None and rm else None
        out[sc["key"]] = per
    return out


def target_rows(doc: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    titles = {sc["key"]: sc["title"] for sc in doc["scenarios"]}
    for key, ref, op, goal, figure in TARGETS:
        if key not in summary:
            continue
        fw = summary[key].get("fastws", {}).get(figure)
        rm = summary[key].get(ref, {}).get(figure)
        ratio = fw / rm if fw is not None and rm else None
        met = None
        if ratio is not None:
            met = {">=": ratio >= goal, ">": ratio > goal, "<=": ratio <= goal}[op]
        want = f"{'above' if op == '>' else op.replace('>=', '≥').replace('<=', '≤')} " + (
            ref if op == ">" else f"{goal:g}x {ref}"
        )
        if figure != "median":
            want = f"{figure.split('_')[1]} latency {want}"
        # the same comparison on work per second of server CPU (not for memory or latency)
        fe = summary[key].get("fastws", {}).get("per_cpu_s") if figure == "median" else None
        re_ = summary[key].get(ref, {}).get("per_cpu_s") if figure == "median" else None
        cpu_ratio = fe / re_ if fe is not None and re_ else None
        cpu_met = None
        if cpu_ratio is not None:
            cpu_met = {">=": cpu_ratio >= goal, ">": cpu_ratio > goal, "<=": cpu_ratio <= goal}[op]
        rows.append(
            {
                "scenario": key,
                "title": titles[key],
                "reference": ref,
                "target": want,
                "ratio": ratio,
                "met": met,
                "cpu_ratio": cpu_ratio,
                "cpu_met": cpu_met,
            }
        )
    return rows


def chart(doc: dict[str, Any], summary: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')", file=sys.stderr)
        return False
    scs = [sc for sc in doc["scenarios"] if sc["key"] in summary]
    servers = doc["servers"]
    cols = 3
    rows = (len(scs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.3 * rows), squeeze=False)
    goals = {k: g for k, ref, _, g, figure in TARGETS if ref == BASE and figure == "median"}
    for ax, sc in zip(axes.flat, scs, strict=False):
        per = summary[sc["key"]]
        base = per.get(BASE, {}).get("median")
        names, ratios, lo, hi, colors = [], [], [], [], []
        for server in servers:
            s = per.get(server)
            if not s or s["median"] is None or not base:
                continue
            names.append(server)
            r = s["median"] / base
            ratios.append(r)
            lo.append(r - s["min"] / base)
            hi.append(s["max"] / base - r)
            colors.append(
                "#d62728"
                if server == "fastws"
                else "#7f7f7f"
                if server.startswith("uvicorn")
                else "#1f77b4"
            )
        y = list(range(len(names)))[::-1]
        ax.barh(y, ratios, xerr=[lo, hi], color=colors, capsize=2, error_kw={"lw": 0.8}, height=0.7)
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=8)
        ax.axvline(1.0, color="black", lw=0.8)
        if sc["key"] in goals:
            ax.axvline(goals[sc["key"]], color="#d62728", lw=1, ls="--")
        right = max([r + h for r, h in zip(ratios, hi, strict=True)] + [goals.get(sc["key"], 1.0)])
        for yi, r, h in zip(y, ratios, hi, strict=True):
            ax.text(r + h + right * 0.02, yi, f"{r:.2f}", va="center", fontsize=7)
        better = "higher" if sc["higher_is_better"] else "lower"
        ax.set_title(f"{SHORT.get(sc['key'], sc['key'])} ({better} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(0, right * 1.15 if ratios else 2)
    for ax in list(axes.flat)[len(scs) :]:
        ax.axis("off")
    env = doc["environment"]
    fig.suptitle(
        f"Median over {doc['settings']['rounds']} rounds, relative to {BASE} (= 1.0); "
        f"bars: min-max; dashed: fastws target.  fastws {env['fastws_commit']} "
        f"(codec {env['codec']}), {env['cpu_model']}, {env['python']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render(
    doc: dict[str, Any], summary: dict[str, Any], chart_name: str | None, source: str
) -> str:
    env = doc["environment"]
    st = doc["settings"]
    v = env["versions"]
    idle_rounds = min(st.get("idle_rounds", st["rounds"]), st["rounds"])
    command = f"python bench/{st['command']}"
    make = {"run.py": "make bench", "run.py --quick": "make bench-quick"}.get(st["command"])
    made_by = f"`{make}`, i.e. `{command}`" if make else f"`{command}`"
    run_file = f"bench/results/run-{doc['stamp']}.json" if doc.get("stamp") else "RUN.json"
    publish = f"python bench/report.py {run_file}" + (" --docs" if source == "docs" else "")
    lines = [
        "# fastws load benchmarks",
        "",
        f"Produced by {made_by} (started {doc['started']}, "
        f"{doc.get('elapsed_s', 0) / 60:.1f} min), rendered by `{publish}`.",
        "How to run it and read it: "
        + (
            "[bench/README.md](../bench/README.md#load-benchmarks)."
            if source == "docs"
            else 'bench/README.md, "Load benchmarks".'
        ),
        "",
        "## Environment",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {env['cpu_model']}, {env['cpus']} cores ({env['cpus_usable']} usable) |",
        f"| Kernel / OS | {env['kernel']} / {env.get('os') or '?'} |",
        f"| Python | {env['python']} |",
        f"| fastws | {v.get('fastws')} at commit `{env['fastws_commit']}`, codec "
        f"**{env['codec']}** |",
        f"| uvicorn / uvloop / httptools | {v.get('uvicorn')} / {v.get('uvloop')} / "
        f"{v.get('httptools')} |",
        f"| websockets / wsproto | {v.get('websockets')} / {v.get('wsproto')} |",
        f"| granian / aiohttp / picows | {v.get('granian') or 'not installed'} / "
        f"{v.get('aiohttp') or 'not installed'} / {v.get('picows') or 'not installed'} |",
        f"| Load client | bench/load/wsload (C, epoll, gcc {env.get('gcc')}); {env.get('wrk')} |",
        f"| Rounds | {st['rounds']} measured, interleaved (server order rotated each round); "
        f"{st['warmup']} s warm-up + {st['duration']} s measured per run; idle memory: "
        f"{st['idle_conns']:,} connections, first {idle_rounds} rounds |",
        f"| Pinning | server on CPU {st['server_cpu']}, client on CPU {st['client_cpu']} "
        "(except the same-core scenario) |",
        f"| Load average | {' '.join(env.get('loadavg_start', []))} at start, "
        f"{' '.join(env.get('loadavg_end', []))} at the end |",
        "",
    ]
    if doc.get("skipped_servers"):
        lines += [
            "Skipped: " + "; ".join(f"{k} ({why})" for k, why in doc["skipped_servers"].items()),
            "",
        ]

    # targets
    rows = target_rows(doc, summary)
    if rows:
        met = sum(1 for r in rows if r["met"])
        lines += [
            "## The issue's targets for fastws",
            "",
            f"{met} of {len(rows)} met (ratio of the medians of the rates). The last two "
            "columns make the same comparison on the rate per second of server CPU, which "
            "holds up better when other jobs share the machine (see *Reading these numbers*).",
            "",
            "| Scenario | Target | Measured | Met | Per server CPU-second | Met |",
            "|---|---|---:|:---:|---:|:---:|",
        ]

        def mark(m: bool | None) -> str:
            return "-" if m is None else ("yes" if m else "**no**")

        for r in rows:
            lines.append(
                f"| {SHORT.get(r['scenario'], r['title'])} | {r['target']} | "
                f"{fmt_ratio(r['ratio'])} | {mark(r['met'])} | {fmt_ratio(r['cpu_ratio'])} | "
                f"{mark(r['cpu_met'])} |"
            )
        lines.append("")

    if chart_name:
        lines += [f"![fastws and peers relative to {BASE}]({chart_name})", ""]

    # per-scenario tables
    lines += ["## Results", ""]
    sat: list[str] = []
    cpu_max = (0.0, "")
    for sc in doc["scenarios"]:
        per = summary.get(sc["key"])
        if not per:
            continue
        lat = sc["key"].startswith("rtt") or sc["key"] == "connect_16"
        mem = sc["kind"] == "idle"
        unit = "KiB per connection" if sc["unit"] == "bytes/conn" else sc["unit"]
        head = f"| Server | {unit} (median) | min–max | vs {BASE} | vs {PEER} |"
        sep = "|---|---:|---:|---:|---:|"
        if lat:
            head += " p50 / p99 latency |"
            sep += "---:|"
        if mem:
            head += " deflate accepted |"
            sep += ":---:|"
        # the user/system split, where the run recorded it (runs before it did: no column)
        split = not mem and any(s.get("user_us") is not None for s in per.values())
        if not mem:
            op = PER_OP.get(sc["unit"], sc["unit"])
            head += " server CPU |" + (f" µs per {op}: user + system |" if split else "")
            head += " per server CPU-second | client CPU |"
            sep += "---:|---:|---:|" + ("---:|" if split else "")
        lines += [f"### {sc['title']}", "", head, sep]
        for server in doc["servers"]:
            s = per.get(server)
            if not s:
                continue
            name = f"**{server}**" if server == "fastws" else server
            if s["median"] is None:
                lines.append(
                    f"| {name} | failed: {s['errors'][0][:80] if s['errors'] else '?'} "
                    f"| | | |" + (" |" if lat or mem else " | |") + (" |" if split else "")
                )
                continue
            row = (
                f"| {name} | {fmt_value(s['median'], sc['unit'])} | "
                f"{fmt_value(s['min'], sc['unit'])}–{fmt_value(s['max'], sc['unit'])} | "
                f"{fmt_ratio(s['vs_base'])} | {fmt_ratio(s['vs_peer'])} |"
            )
            if lat:
                row += f" {s['lat_p50_us'] / 1000:.2f} / {s['lat_p99_us'] / 1000:.2f} ms |"
            if mem:
                da = s["deflate_accepted"]
                row += f" {'-' if not sc['args'] else ('yes' if da else 'no')} |"
            else:
                scpu, ccpu, cmax = (
                    s["server_cpu_median"],
                    s["client_cpu_median"],
                    s["client_cpu_max"],
                )
                hot = f" (max {cmax:.0f}%)" if cmax and cmax >= SATURATED_PCT else ""
                us = "-" if s["user_us"] is None else f"{s['user_us']:.2f} + {s['sys_us']:.2f}"
                us = f" {us} |" if split else ""
                row += (
                    f" {'-' if scpu is None else f'{scpu:.0f}%'} |{us}"
                    f" {fmt_value(s['per_cpu_s'], sc['unit'])} |"
                    f" {'-' if ccpu is None else f'{ccpu:.0f}%'}{hot} |"
                )
                if not sc.get("same_core") and s["client_cpu_max"] is not None:
                    if s["client_cpu_max"] > cpu_max[0]:
                        cpu_max = (s["client_cpu_max"], f"{server}, {SHORT.get(sc['key'])}")
                    if s["client_cpu_max"] >= SATURATED_PCT:
                        sat.append(
                            f"{server} / {SHORT.get(sc['key'])} ({s['client_cpu_max']:.0f}%)"
                        )
            if s["errors"]:
                row += f" <!-- {len(s['errors'])} failed round(s) -->"
            lines.append(row)
        lines.append("")

    lines += ["## Reading these numbers", ""]
    if sat:
        lines.append(
            f"- **Client near saturation** (≥ {SATURATED_PCT:.0f}% of its core) in: "
            + "; ".join(sat)
            + ". Those medians may understate the server."
        )
    else:
        lines.append(
            f"- The load client never reached {SATURATED_PCT:.0f}% of its core "
            f"(highest: {cpu_max[0]:.0f}%, {cpu_max[1]}); almost all of its time is "
            "the kernel's loopback TCP work, its own code is a few percent."
        )
    cpus = [
        s["server_cpu_median"]
        for k, per in summary.items()
        for s in per.values()
        if s.get("server_cpu_median") is not None
        and not next(sc for sc in doc["scenarios"] if sc["key"] == k).get("same_core")
    ]
    if cpus and statistics.median(cpus) < 80:
        lines.append(
            f"- **The machine was busy**: the servers got a median {statistics.median(cpus):.0f}% "
            "of their core during the measured windows (other jobs took the rest; see the load "
            "average). Rates are therefore low and noisy; the *per server CPU-second* column "
            "(rate divided by the server's CPU share) is the steadier comparison."
        )
    lines += [
        "- Server CPU is the server's process group (all threads) over the measured window; "
        "near 100% means the server's core was the limit. *Per server CPU-second* is the "
        "rate divided by that share: work done per second of server CPU. *µs per message "
        "(request, MB, ...)* splits the same CPU time into user space (the server's own code "
        "and its interpreter) and the kernel (system calls, loopback TCP), per unit of the "
        "rate (runs recorded before the harness measured the split have no such column).",
        "- Same-core scenario: client and server share one core, so neither CPU column is a "
        "saturation signal there; it measures per-message cost without cross-core wake-ups.",
        "- Idle memory is the server's RSS growth (all its processes) between a warmed-up "
        "server and the same server holding the connections, divided by their number. "
        '"deflate accepted" says whether the server agreed to permessage-deflate.',
        "- picows is a frame-level library with no ASGI layer: it neither checks UTF-8 nor "
        "reassembles messages, and it has no HTTP keep-alive (no HTTP row).",
        "",
        "## Server commands",
        "",
        "Each started from `bench/apps/` (`python` is the benchmark venv's interpreter):",
        "",
    ]
    for name, cmd in doc.get("server_commands", {}).items():
        lines.append(f"- {name}: `{cmd.replace('{port}', 'PORT')}`")
    failures = [r for r in doc["runs"] if r["error"]]
    if failures:
        lines += ["", "## Failed runs", ""]
        for r in failures[:30]:
            lines.append(
                f"- round {r['round'] + 1}, {r['server']}, {r['scenario']}: {r['error'][:200]}"
            )
    return "\n".join(lines) + "\n"


def keep_fanout_section(new: str) -> str:
    """The Fan-out section (bench/fanout.py report --docs, between its markers) survives a
    rewrite of docs/BENCHMARKS.md by this report."""
    start, end = "<!-- fanout:start", "<!-- fanout:end -->"
    try:
        old = (DOCS / "BENCHMARKS.md").read_text()
    except OSError:
        return new
    if start not in old or end not in old:
        return new
    section = start + old.split(start, 1)[1].split(end, 1)[0] + end
    return new.rstrip("\n") + "\n\n" + section + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("run", nargs="?", type=Path, default=RESULTS / "latest.json")
    p.add_argument(
        "--docs", action="store_true", help="also write docs/BENCHMARKS.md and docs/benchmarks.png"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    if not args.run.exists():
        print(f"{args.run} does not exist: run `make bench` first", file=sys.stderr)
        return 2
    doc = json.loads(args.run.read_text())
    summary = summarize(doc)
    if args.json:
        print(json.dumps({"summary": summary, "targets": target_rows(doc, summary)}, indent=1))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"report-{doc.get('stamp') or args.run.stem.replace('run-', '')}"
    png = RESULTS / f"{stem}.png"
    has_chart = chart(doc, summary, png)
    md = RESULTS / f"{stem}.md"
    md.write_text(render(doc, summary, png.name if has_chart else None, "results"))
    print(f"wrote {md}" + (f" and {png}" if has_chart else ""), file=sys.stderr)
    if args.docs:
        DOCS.mkdir(exist_ok=True)
        docs_png = DOCS / "benchmarks.png"
        has_chart = chart(doc, summary, docs_png)
        (DOCS / "BENCHMARKS.md").write_text(
            keep_fanout_section(render(doc, summary, docs_png.name if has_chart else None, "docs"))
        )
        print(
            f"wrote {DOCS / 'BENCHMARKS.md'}" + (f" and {docs_png}" if has_chart else ""),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
