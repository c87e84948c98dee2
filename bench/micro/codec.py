"""Codec micro-benchmark: compiled fastws._speedups vs the pure-Python twin vs a plain copy.

Measures, in one process pinned to one core:
  * unmasking while copying into a new bytes object (apply_mask), next to a plain copy of the
    same buffer (bytes(memoryview(buf))), from 16 B to 16 MiB, in GB/s (10^9 bytes per second);
  * unmasking in place (apply_mask_inplace) of a bytearray, same sizes;
  * small frames parsed per second: a buffer of 1000 masked 32-byte frames handed to
    FrameReader.feed() (and to get_buffer()/buffer_updated(), the server's path).

Each number is the median of several rounds; a round repeats the operation until it has run for
a minimum time, and the spread printed next to it is the min-max of the rounds. The cases of one
row are timed in interleaved rounds, and their ratios are taken round by round. The garbage
collector is off while timing. Run `python bench/micro/codec.py` (or `make bench-micro`); see
bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KIB = 1024
MIB = 1024 * 1024
SIZES = [16, KIB, 64 * KIB, MIB, 16 * MIB]
KEY = b"\x37\xfa\x21\x3d"
FRAMES_PER_BUFFER = 1000
FRAME_PAYLOAD = 32

# Targets from the issue that asked for the compiled codec.
TARGET_UNMASK_VS_COPY_1MIB = 0.5
TARGET_READER_SPEEDUP = 20.0


# -- environment ----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                "fastws/_speedups.pyx",
                "fastws/_mask.h",
                "fastws/_speedups_py.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' (codec sources modified)' if dirty else ''}" if rev else "unknown"


def load_average() -> str:
    """Other work on the machine shows up as spread: say how busy it was when we started."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def pin_to_one_core(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this platform)"
    allowed = sorted(os.sched_getaffinity(0))
    target = allowed[-1] if cpu is None else cpu
    try:
        os.sched_setaffinity(0, {target})
    except OSError as exc:
        return f"not pinned ({exc})"
    return f"pinned to CPU {target} (of {len(allowed)} allowed)"


def load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def build_note(cy: ModuleType | None) -> str:
    if cy is None:
        return "not built (run `make build`)"
    so = Path(cy.__file__)
    pyx = ROOT / "fastws" / "_speedups.pyx"
    stale = pyx.exists() and pyx.stat().st_mtime > so.stat().st_mtime
    return f"{so.name}{' -- OLDER THAN _speedups.pyx, rebuild' if stale else ''}"


def print_environment(pin_note: str, py: ModuleType, cy: ModuleType | None) -> None:
    import fastws

    uname = platform.uname()
    selected = subprocess.run(
        [sys.executable, "-c", "import fastws.ws.frames as f; print(f.IMPLEMENTATION)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    print("# fastws codec micro-benchmark")
    print()
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; {pin_note}")
    print(f"- OS: {uname.system} {uname.release} ({uname.machine}); {load_average()}")
    print(f"- Python: {platform.python_implementation()} {platform.python_version()}")
    print(f"- fastws {fastws.__version__}, commit {git_commit()}")
    print(f"- compiled codec: {build_note(cy)}")
    print(f"- implementations: {py.IMPLEMENTATION}" + (f", {cy.IMPLEMENTATION}" if cy else ""))
    print(f"- fastws.ws.frames selects: {selected or 'unknown'}")


# -- timing ---------------------------------------------------------------------------------


class Result:
    """Per-operation times (ns) of each round; `rate(units)` turns them into units per second."""

    def __init__(self, round_ns: list[float]) -> None:
        self.round_ns = round_ns

    @property
    def median_ns(self) -> float:
        return statistics.median(self.round_ns)

    def rate(self, units: float) -> tuple[float, float, float]:
        """(median, slowest, fastest) in units per second."""
        rates = [units * 1e9 / ns for ns in self.round_ns]
        return statistics.median(rates), min(rates), max(rates)


def calibrate(fn: Callable[[], object], min_round_s: float) -> int:
    """How many calls of fn() make a round of at least min_round_s (after one warm-up call:
    first-touch page faults, caches, lazy allocations)."""
    fn()
    repeat = 1
    while True:
        t0 = time.perf_counter_ns()
        for _ in range(repeat):
            fn()
        elapsed = time.perf_counter_ns() - t0
        if elapsed >= min_round_s * 1e9 or repeat >= 1 << 24:
            return repeat
        repeat = max(repeat * 2, int(repeat * min_round_s * 1e9 / max(elapsed, 1) * 1.2))


def measure(
    fns: dict[str, Callable[[], object] | None], rounds: int, min_round_s: float
) -> dict[str, Result | None]:
    """Time the functions that are compared in one row, their rounds interleaved (round 1 of
    each, then round 2 of each...), so that a burst of other work on the machine hits all of
    them alike and their per-round ratios stay meaningful. None stands for "not available"."""
    live = {name: fn for name, fn in fns.items() if fn is not None}
    repeats = {name: calibrate(fn, min_round_s) for name, fn in live.items()}
    per_op: dict[str, list[float]] = {name: [] for name in live}
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in live.items():
                repeat = repeats[name]
                t0 = time.perf_counter_ns()
                for _ in range(repeat):
                    fn()
                per_op[name].append((time.perf_counter_ns() - t0) / repeat)
    finally:
        gc.enable()
    return {name: Result(per_op[name]) if name in live else None for name in fns}


def speedup(fast: Result | None, slow: Result | None) -> float | None:
    """Median over rounds of how many times faster `fast` ran than `slow` in the same round."""
    if fast is None or slow is None:
        return None
    return statistics.median(s / f for f, s in zip(fast.round_ns, slow.round_ns, strict=True))


def human_size(n: int) -> str:
    if n >= MIB:
        return f"{n // MIB} MiB"
    if n >= KIB:
        return f"{n // KIB} KiB"
    return f"{n} B"


def fmt_rate(result: Result | None, units: float, scale: float, digits: int = 2) -> str:
    if result is None:
        return "n/a"
    med, lo, hi = result.rate(units)
    return f"{med / scale:.{digits}f} [{lo / scale:.{digits}f}-{hi / scale:.{digits}f}]"


def ratio(fast: Result | None, slow: Result | None) -> str:
    """Per-round speed ratio fast/slow: median [min-max] over the interleaved rounds."""
    if fast is None or slow is None:
        return "n/a"
    ratios = [s / f for f, s in zip(fast.round_ns, slow.round_ns, strict=True)]
    med = statistics.median(ratios)
    return f"{med:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")


# -- cases ----------------------------------------------------------------------------------


def bench_masking(py: ModuleType, cy: ModuleType | None, rounds: int, min_s: float) -> dict:
    copy_rows, inplace_rows = [], []
    one_mib = {}
    gb = 1e9
    for n in SIZES:
        src = bytearray(os.urandom(n))
        buf_cy, buf_py = bytearray(src), bytearray(src)
        r = measure(
            {
                "copy": lambda src=src: bytes(memoryview(src)),
                "cython": (lambda src=src: cy.apply_mask(src, KEY)) if cy else None,
                "python": lambda src=src: py.apply_mask(src, KEY),
            },
            rounds,
            min_s,
        )
        copy_rows.append(
            [
                human_size(n),
                fmt_rate(r["copy"], n, gb),
                fmt_rate(r["cython"], n, gb),
                fmt_rate(r["python"], n, gb),
                ratio(r["cython"], r["copy"]),
                ratio(r["cython"], r["python"]),
            ]
        )
        if n == MIB:
            one_mib = r
        r = measure(
            {
                "copy": lambda src=src: bytes(memoryview(src)),
                "cython": (lambda b=buf_cy: cy.apply_mask_inplace(b, KEY)) if cy else None,
                "python": lambda b=buf_py: py.apply_mask_inplace(b, KEY),
            },
            rounds,
            min_s,
        )
        inplace_rows.append(
            [
                human_size(n),
                fmt_rate(r["copy"], n, gb),
                fmt_rate(r["cython"], n, gb),
                fmt_rate(r["python"], n, gb),
                ratio(r["cython"], r["copy"]),
                ratio(r["cython"], r["python"]),
            ]
        )
    head = ["size", "plain copy", "cython", "python", "cython speed / copy", "cython vs python"]
    print()
    print("## Unmask while copying: apply_mask(buf, key) -> bytes   [GB/s, median [min-max]]")
    print()
    table(head, copy_rows)
    print()
    print("## Unmask in place: apply_mask_inplace(bytearray, key)   [GB/s, median [min-max]]")
    print()
    table(head, inplace_rows)
    return one_mib


def frames_buffer(codec: ModuleType, binary: bool) -> bytes:
    text = "x" * FRAME_PAYLOAD
    opcode = 0x2 if binary else 0x1
    data = text.encode() if binary else text
    one = codec.encode_frame(opcode, data, mask=KEY)
    return one * FRAMES_PER_BUFFER


def bench_reader(py: ModuleType, cy: ModuleType | None, rounds: int, min_s: float) -> dict:
    rows = []
    speedups = {}
    for label, binary, path in [
        ("text, feed()", False, "feed"),
        ("binary, feed()", True, "feed"),
        ("text, get_buffer()/buffer_updated()", False, "buffer"),
    ]:
        buf = frames_buffer(py, binary)
        runs: dict[str, Callable[[], object] | None] = {"cython": None, "python": None}
        for codec in (cy, py):
            if codec is None:
                continue
            reader = codec.FrameReader()
            if path == "feed":

                def run(reader=reader, buf=buf) -> object:
                    return reader.feed(buf)

            else:

                def run(reader=reader, buf=buf) -> object:
                    out = []
                    pos = 0
                    while pos < len(buf):
                        view = reader.get_buffer(len(buf) - pos)
                        n = min(len(view), len(buf) - pos)
                        view[:n] = buf[pos : pos + n]
                        out += reader.buffer_updated(n)
                        pos += n
                    return out

            out = run()
            assert len(out) == FRAMES_PER_BUFFER and reader.close_code is None, reader.close_reason
            runs[codec.IMPLEMENTATION] = run
        results = measure(runs, rounds, min_s)
        cy_r, py_r = results["cython"], results["python"]
        speedups[label] = speedup(cy_r, py_r)
        rows.append(
            [
                label,
                fmt_rate(cy_r, FRAMES_PER_BUFFER, 1e6),
                fmt_rate(py_r, FRAMES_PER_BUFFER, 1e6, 3),
                ratio(cy_r, py_r),
                "n/a" if cy_r is None else f"{cy_r.median_ns / FRAMES_PER_BUFFER:.0f}",
            ]
        )
    print()
    print(
        f"## FrameReader: {FRAMES_PER_BUFFER} masked {FRAME_PAYLOAD}-byte frames per buffer"
        "   [million frames/s, median [min-max]]"
    )
    print()
    table(["input", "cython", "python", "cython vs python", "cython ns/frame"], rows)
    return speedups


def print_targets(one_mib: dict, speedups: dict) -> None:
    print()
    print("## Targets")
    print()
    copy, unmask = one_mib.get("copy"), one_mib.get("cython")
    if unmask is None:
        print("- compiled codec not built: targets not checked")
        return
    r = speedup(unmask, copy)
    ok = "met" if r >= TARGET_UNMASK_VS_COPY_1MIB else "MISSED"
    target = TARGET_UNMASK_VS_COPY_1MIB
    print(f"- unmask-while-copying 1 MiB at >= {target}x plain copy speed: {r:.2f}x ({ok})")
    s = speedups["text, feed()"]
    ok = "met" if s >= TARGET_READER_SPEEDUP else "MISSED"
    print(f"- compiled reader >= {TARGET_READER_SPEEDUP:.0f}x pure on 32 B frames: {s:.1f}x ({ok})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 short rounds per case (a smoke run)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="measured rounds per case (default 7)"
    )
    parser.add_argument(
        "--cpu", type=int, default=None, help="core to pin to (default: last allowed)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    min_s = 0.02 if args.quick else 0.2

    pin_note = "not pinned (--no-pin)" if args.no_pin else pin_to_one_core(args.cpu)
    py = importlib.import_module("fastws._speedups_py")
    cy = load("fastws._speedups")
    print_environment(pin_note, py, cy)
    print(
        f"- method: median of {rounds} rounds of >= {min_s * 1000:.0f} ms each, GC off while timing"
    )
    one_mib = bench_masking(py, cy, rounds, min_s)
    speedups = bench_reader(py, cy, rounds, min_s)
    print_targets(one_mib, speedups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
