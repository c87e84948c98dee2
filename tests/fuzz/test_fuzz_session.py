"""A bounded fuzz session as part of the normal suite, and replays of saved inputs.

Each ``test_fuzz_session`` case runs one target of tests/fuzz/targets.py under atheris/libFuzzer
in a subprocess (run_fuzzer.py) for a fixed time; a crash, uncaught exception (invariant
violations included), hang (--timeout-per-input) or RSS over the limit fails the test with the
input in hex and base64, a copy under build/fuzz/artifacts/, and the command that replays it.
The whole session takes about SESSION_S seconds (FASTWS_FUZZ_SECONDS overrides; `make fuzz`
runs the same sessions for 10 minutes with a corpus kept in build/fuzz/).

Under FASTWS_NO_EXTENSIONS (the `make test-pure` pass) the frames sessions are a short smoke
run: that target always compares both codec implementations whatever the server uses, so the
first pass has covered it; the http target, whose server then runs on the pure codec, keeps its
full time.

The replays run in-process without atheris: every seed and every file under
tests/fuzz/regressions/<target>/ (inputs that once failed: each stays here as a regression
test), and a memory check that replays the seeds many times and compares traced memory.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from fuzz import targets

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REGRESSIONS = HERE / "regressions"
ARTIFACTS = REPO / "build" / "fuzz" / "artifacts"
PURE = os.environ.get("FASTWS_NO_EXTENSIONS", "") not in ("", "0")

SESSION_S = float(os.environ.get("FASTWS_FUZZ_SECONDS", "130"))
# (target, runner options, share of the session)
SESSIONS = [
    ("frames", ("--asgi", "0", "--deflate", "0"), 2),
    ("frames", ("--asgi", "0", "--deflate", "1"), 2),
    ("frames", ("--asgi", "1", "--deflate", "0"), 2),
    ("frames", ("--asgi", "1", "--deflate", "1"), 2),
    ("http", (), 4),
    ("handshake", (), 1),
    ("response_headers", (), 1),
]
# FASTWS_FUZZ_CORPUS: keep each session's corpus in <dir>/<session id> (`make fuzz` does, so
# longer runs build on earlier ones); unset, every run starts from the seeds.
CORPUS = os.environ.get("FASTWS_FUZZ_CORPUS")
RSS_LIMIT_MB = 1024  # libFuzzer kills the run above this (an "oom-" artifact)
RSS_EXPECTED_MB = 400  # what a healthy run stays under (about 60-90 MB measured)


def session_seconds(target: str, share: int) -> float:
    seconds = SESSION_S * share / sum(s[2] for s in SESSIONS)
    if PURE and target == "frames":
        return min(seconds, 3.0)
    return max(seconds, 2.0)


SESSION_TIMEOUT_S = int(max(session_seconds(t, share) for t, _, share in SESSIONS)) + 120


def _id(session: tuple[str, tuple[str, ...], int]) -> str:
    target, options, _ = session
    return "-".join([target, *[o.lstrip("-") for o in options]])


@pytest.mark.slow
@pytest.mark.timeout(SESSION_TIMEOUT_S)
@pytest.mark.parametrize("session", SESSIONS, ids=[_id(s) for s in SESSIONS])
def test_fuzz_session(session, tmp_path):
    target, options, share = session
    seconds = session_seconds(target, share)
    artifacts = tmp_path / "artifacts"
    command = [
        sys.executable,
        str(HERE / "run_fuzzer.py"),
        target,
        *options,
        "--seconds",
        f"{seconds:.0f}",
        "--artifacts",
        str(artifacts),
        "--rss-limit-mb",
        str(RSS_LIMIT_MB),
        *(["--corpus", str(Path(CORPUS).resolve() / _id(session))] if CORPUS else []),
    ]
    env = dict(os.environ)
    env.pop("FASTWS_FUZZ_TOLERATE", None)  # the suite never steps over known bugs
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=seconds + 60,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"fuzzer still running {seconds + 60:.0f} s after start") from exc
    elapsed = time.monotonic() - started
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        pytest.fail(_failure_report(target, options, output, artifacts), pytrace=False)

    stats = _stats(output)
    stats.update(target=_id(session), seconds=round(elapsed, 1), codec_pure=PURE)
    _record(stats)
    assert stats.get("runs", 0) > 0, output[-3000:]
    if "peak_rss_mb" in stats:
        assert stats["peak_rss_mb"] < RSS_EXPECTED_MB, stats


def _stats(output: str) -> dict[str, object]:
    stats: dict[str, object] = {}
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    if done:
        stats["runs"] = int(done.group(1))
    for key in ("number_of_executed_units", "peak_rss_mb", "new_units_added"):
        match = re.search(rf"stat::{key}:\s+(\d+)", output)
        if match:
            stats["runs" if key == "number_of_executed_units" else key] = int(match.group(1))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", output)
    if cov:
        stats["cov"], stats["ft"] = int(cov[-1][0]), int(cov[-1][1])
    stats["engine"] = "atheris" if "libFuzzer" in output else "fallback"
    return stats


def _record(stats: dict[str, object]) -> None:
    """Append this session's figures to build/fuzz/sessions.jsonl (docs/robustness.md)."""
    path = REPO / "build" / "fuzz" / "sessions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **stats}) + "\n")


def _failure_report(target: str, options: tuple[str, ...], output: str, artifacts: Path) -> str:
    lines = [f"fuzz target {target} {' '.join(options)} failed"]
    found = sorted(artifacts.glob("*")) if artifacts.exists() else []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for path in found:
        data = path.read_bytes()
        kept = ARTIFACTS / f"{target}-{path.name}"
        shutil.copyfile(path, kept)
        lines += [
            f"input {path.name} ({len(data)} bytes), kept as {kept.relative_to(REPO)}",
            f"  hex: {data.hex()}",
            f"  base64: {base64.b64encode(data).decode()}",
            f"  replay: .venv/bin/python tests/fuzz/run_fuzzer.py {target} "
            f"{' '.join(options)} {kept.relative_to(REPO)}",
            "  make it a regression: copy it to tests/fuzz/regressions/"
            f"{target}/<short-name> (replayed by test_regression_input)",
        ]
    # The interesting part of libFuzzer's output: the Python traceback and the summary.
    tail = [
        line
        for line in output.splitlines()
        if not re.match(r"#\d+\s+(NEW|REDUCE|pulse|RELOAD)", line)
    ]
    lines.append("\n".join(tail[-60:]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# replays (in-process, no atheris)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _close_http_world():
    yield
    world = targets._world
    if world is not None:
        targets._world = None
        world.loop.close()


def _regression_files() -> list[Path]:
    if not REGRESSIONS.exists():
        return []
    return sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_seeds_pass(target):
    func, seeds, _ = targets.TARGETS[target]
    for seed in seeds():
        func(seed)


@pytest.mark.parametrize(
    "path", _regression_files(), ids=[f"{p.parent.name}/{p.name}" for p in _regression_files()]
)
def test_regression_input(path):
    name = path.parent.name
    options = {}
    if name.startswith("frames-"):  # frames-<asgi><deflate>: a session's forced options
        name, forced = name.split("-", 1)
        options = {"asgi": forced[0] == "1", "deflate_on": forced[1] == "1"}
    targets.target(name, **options)(path.read_bytes())


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_no_memory_growth_over_repeated_inputs(target):
    """Replay the seeds 40 times after a warm-up: traced memory must not keep growing (no
    per-input leak in the codec, deflate, the protocols or their per-connection state)."""
    func, seeds_of, _ = targets.TARGETS[target]
    seeds = seeds_of()

    def one_round() -> None:
        for seed in seeds:
            try:
                func(seed)
            except targets.Violation:
                pass  # reported by test_seeds_pass; here only memory matters

    for _ in range(5):
        one_round()
    targets.settle(target)
    gc.collect()
    tracemalloc.start()
    try:
        one_round()
        targets.settle(target)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            one_round()
        targets.settle(target)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # A leak of one small object per input would be 40 x len(seeds) x ~100 B at least.
    assert grown < 64 * 1024, f"{grown} bytes more after 40 more rounds of {len(seeds)} inputs"
