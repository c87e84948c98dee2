"""Run the Autobahn TestSuite (through kosoku) against fastws and judge the result strictly.

Starts ``python -m fastws echo_app:app`` on a free loopback port in its own process group, with
the codec forced by environment (``--codec cython`` sets FASTWS_REQUIRE_EXTENSIONS=1, ``--codec
python`` sets FASTWS_NO_EXTENSIONS=1), waits for the port with a deadline, runs
``kosoku -p N -o REPORT_DIR -i S.* ... 127.0.0.1:PORT`` for the chosen sections, stops the
server in ``finally``, then reads kosoku's ``index.json``.

The verdict is stricter than kosoku's exit status: kosoku passes NON-STRICT cases, fastws does
not. Every case must have ``behavior`` and ``behaviorClose`` both ``OK`` or ``INFORMATIONAL``,
and every selected section must hold exactly the number of cases the pinned kosoku ships (a
section that silently ran fewer cases is a failure too). Exit status: 0 when that holds, 1 when
a case or a count is wrong, 2 when the run itself could not happen (server did not start,
kosoku missing or hung, no report).

Besides kosoku's files, the report directory gets ``run.json`` (codec, fastws commit, kosoku
version, command, duration) and ``server.log``/``kosoku.log``; ``conformance_doc.py`` turns
that into docs/CONFORMANCE.md. Usage (from the repository root; ``make compliance`` runs it):

    .venv/bin/python tests/compliance/run_autobahn.py --codec cython
    .venv/bin/python tests/compliance/run_autobahn.py --codec python --sections 1-7
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
HOST = "127.0.0.1"

# The kosoku release the counts below belong to; pyproject.toml's `compliance` extra pins it.
KOSOKU_VERSION = "0.1.0"
# Cases per Autobahn section in that release (517 in all; Autobahn has no sections 8 and 11).
# This is the shape of the suite, not a result: a section that reports fewer cases means cases
# were skipped or lost, and the run fails.
EXPECTED_CASES: dict[int, int] = {
    1: 16,
    2: 11,
    3: 7,
    4: 10,
    5: 20,
    6: 145,
    7: 37,
    9: 54,
    10: 1,
    12: 90,
    13: 126,
}
SECTION_NAMES: dict[int, str] = {  # Autobahn's category titles
    1: "Framing",
    2: "Pings/Pongs",
    3: "Reserved Bits",
    4: "Opcodes",
    5: "Fragmentation",
    6: "UTF-8 Handling",
    7: "Close Handling",
    9: "Limits/Performance",
    10: "Misc",
    12: "WebSocket Compression (different payloads)",
    13: "WebSocket Compression (different parameters)",
}
ALL_SECTIONS = "1-7,9,10,12,13"
# What fastws accepts. kosoku also passes NON-STRICT (a SHOULD-level divergence); fastws does not.
ACCEPTED = frozenset({"OK", "INFORMATIONAL"})

SERVER_START_TIMEOUT_S = 20.0
SERVER_STOP_TIMEOUT_S = 10.0
DEFAULT_RUN_TIMEOUT_S = 1800.0


class RunError(Exception):
    """The run could not produce a report (as opposed to a report with failing cases)."""


# --------------------------------------------------------------------------------------------
# verdict: pure functions over index.json, unit-tested in test_autobahn_runner.py
# --------------------------------------------------------------------------------------------


def parse_sections(spec: str) -> list[int]:
    """``"1-7,9,12"`` -> ``[1, 2, 3, 4, 5, 6, 7, 9, 12]``; ``"all"`` is every section.

    Raises:
        ValueError: on a malformed spec or a section Autobahn does not have.
    """
    spec = spec.strip()
    if spec in ("all", ""):
        spec = ALL_SECTIONS
    sections: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise ValueError(f"bad section {part!r} (expected e.g. 1-7,9,12)") from None
        if lo > hi:
            raise ValueError(f"bad section range {part!r}")
        # A range skips the numbers Autobahn lacks (1-13 means every section); a single
        # section that does not exist is an error.
        picked = {n for n in range(lo, hi + 1) if n in EXPECTED_CASES}
        if (not sep and lo not in EXPECTED_CASES) or not picked:
            known = ", ".join(map(str, EXPECTED_CASES))
            raise ValueError(f"no Autobahn section in {part!r} (sections: {known})")
        sections |= picked
    return sorted(sections)


def case_sort_key(case_id: str) -> list[int]:
    """Numeric order, so 1.2.10 comes after 1.2.9."""
    return [int(p) for p in case_id.split(".")]


def section_of(case_id: str) -> int:
    return int(case_id.split(".", 1)[0])


@dataclass
class Verdict:
    """What one kosoku index says about one agent, judged by fastws's rule."""

    # index.json is keyed by agent: the server's `Server` header, or kosoku's target address
    # for cases that never got a handshake response (behavior ERROR).
    agents: list[str]
    # section -> behaviour label -> number of cases (behaviour is `behavior`, or
    # `behavior/behaviorClose` when the closing verdict differs from OK)
    by_section: dict[int, collections.Counter[str]] = field(default_factory=dict)
    by_behavior: collections.Counter[str] = field(default_factory=collections.Counter)
    # (case id, index entry) of every case not OK/INFORMATIONAL in behavior or behaviorClose
    bad_cases: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # human-readable count problems: "section 6: 144 cases, expected 145"
    count_errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_behavior.values())

    @property
    def ok(self) -> bool:
        return not self.bad_cases and not self.count_errors


def behavior_label(entry: Mapping[str, Any]) -> str:
    """One label per case: ``OK``, ``NON-STRICT``, ... or ``OK / WRONG CODE`` when only the
    closing handshake is off, so that a per-behaviour count never hides a closing failure."""
    behavior, close = entry.get("behavior"), entry.get("behaviorClose")
    if close in ACCEPTED or close == behavior:
        return str(behavior)
    return f"{behavior} / {close}"


def judge(index: Mapping[str, Any], sections: Iterable[int]) -> Verdict:
    """Judge a kosoku ``index.json`` (``{agent: {case id: entry}}``) for the given sections.

    The cases of every agent are pooled: a case that failed before the handshake completed is
    filed under kosoku's target address instead of the server's name, and still counts.
    """
    wanted = sorted(set(sections))
    verdict = Verdict(agents=sorted(index), by_section={s: collections.Counter() for s in wanted})
    cases: dict[str, dict[str, Any]] = {}
    for agent_cases in index.values():
        for case_id, entry in agent_cases.items():
            if case_id in cases:
                verdict.count_errors.append(f"case {case_id} is reported more than once")
            cases[case_id] = entry
    for case_id in sorted(cases, key=case_sort_key):
        entry = cases[case_id]
        section = section_of(case_id)
        if section not in verdict.by_section:
            verdict.count_errors.append(f"case {case_id} is outside the selected sections")
            continue
        label = behavior_label(entry)
        verdict.by_section[section][label] += 1
        verdict.by_behavior[label] += 1
        if entry.get("behavior") not in ACCEPTED or entry.get("behaviorClose") not in ACCEPTED:
            verdict.bad_cases.append((case_id, dict(entry)))
    for section in wanted:
        got, expected = sum(verdict.by_section[section].values()), EXPECTED_CASES[section]
        if got != expected:
            verdict.count_errors.append(f"section {section}: {got} cases, expected {expected}")
    return verdict


def case_reason(report_dir: Path, entry: Mapping[str, Any]) -> str:
    """One line on why a case was judged as it was, from its per-case report: kosoku's result
    text (unless it is the generic "events match"), what arrived against what OK expects, and
    how the connection ended."""
    try:
        case = json.loads((report_dir / str(entry["reportfile"])).read_text())
    except (KeyError, OSError, ValueError):
        return "(no case report)"
    parts = []
    result = str(case.get("result") or "").strip()
    if result and not result.startswith("Actual events match"):
        parts.append(result)
    ok_events = (case.get("expected") or {}).get("OK")
    received = case.get("received")
    if case.get("behavior") != "OK" and ok_events and received != ok_events:
        parts.append(f"received {_short(received) if received else 'nothing'}")
        parts.append(f"OK expects {_short(ok_events)}")
    if case.get("behaviorClose") not in ACCEPTED and case.get("resultClose"):
        parts.append(str(case["resultClose"]).strip())
    if case.get("remoteCloseCode") is not None:
        parts.append(f"server closed with {case['remoteCloseCode']}")
    return "; ".join(parts) or "(no reason given)"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_verdict(verdict: Verdict, report_dir: Path, codec: str) -> str:
    """The console summary: counts per section and per behaviour, then every problem."""
    agents = ", ".join(verdict.agents) or "none"
    lines = [f"Autobahn via kosoku: codec {codec}, {verdict.total} cases (agents: {agents})"]
    width = max(len(name) for name in SECTION_NAMES.values())
    for section, counts in verdict.by_section.items():
        name = SECTION_NAMES.get(section, "?")
        detail = ", ".join(f"{label} {n}" for label, n in sorted(counts.items())) or "no cases"
        lines.append(f"  {section:>2} {name:<{width}}  {sum(counts.values()):>3}  {detail}")
    lines.append(
        "  by behaviour: "
        + ", ".join(f"{label} {n}" for label, n in sorted(verdict.by_behavior.items()))
    )
    for problem in verdict.count_errors:
        lines.append(f"COUNT  {problem}")
    for case_id, entry in verdict.bad_cases:
        lines.append(
            f"NOT OK {case_id}: behavior={entry.get('behavior')} "
            f"behaviorClose={entry.get('behaviorClose')} -- {case_reason(report_dir, entry)}"
        )
    if verdict.ok:
        lines.append(f"PASS: every case OK or INFORMATIONAL ({codec} codec)")
    else:
        lines.append(
            f"FAIL: {len(verdict.bad_cases)} case(s) not OK/INFORMATIONAL, "
            f"{len(verdict.count_errors)} count problem(s) ({codec} codec); "
            f"case reports: {report_dir}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# running the server and kosoku
# --------------------------------------------------------------------------------------------


def codec_env(codec: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FASTWS_NO_EXTENSIONS", None)
    env.pop("FASTWS_REQUIRE_EXTENSIONS", None)
    if codec == "python":
        env["FASTWS_NO_EXTENSIONS"] = "1"
    else:
        env["FASTWS_REQUIRE_EXTENSIONS"] = "1"
    # The server imports fastws from this checkout, whatever the current directory is.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def fastws_version(env: Mapping[str, str]) -> str:
    """``fastws --version`` under the codec's environment: names the codec that will run."""
    out = subprocess.run(
        [sys.executable, "-m", "fastws", "--version"],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise RunError(f"fastws --version failed ({out.returncode}):\n{out.stderr.strip()}")
    return out.stdout.strip()


def git_state() -> dict[str, Any]:
    """The fastws commit, and whether fastws/ differs from it (the tree being measured)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "fastws", "setup.py")) if commit else False
    return {"commit": commit or "unknown", "fastws_dirty": dirty}


def find_kosoku() -> list[str]:
    """The kosoku console script installed next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "kosoku"
    found = str(beside) if beside.exists() else shutil.which("kosoku")
    if found is None:
        raise RunError(
            "kosoku is not installed: pip install -e '.[compliance]' (make compliance does it)"
        )
    try:
        version = importlib.metadata.version("kosoku")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is not None and version != KOSOKU_VERSION:
        raise RunError(
            f"kosoku {version} is installed, this runner expects {KOSOKU_VERSION} "
            "(its case counts are per release): pip install -e '.[compliance]'"
        )
    return [found]


def clear_report_dir(report_dir: Path) -> None:
    """Remove what an earlier run left, so a stale index.json is never read as this run's.
    Only kosoku's and this script's own files are removed."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for path in report_dir.iterdir():
        name = path.name
        if path.is_file() and (
            name in ("index.json", "index.html", "run.json", "server.log", "kosoku.log")
            or "_case_" in name
            and name.endswith((".json", ".html"))
        ):
            path.unlink()


def wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RunError(f"fastws exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RunError(f"fastws did not listen on {HOST}:{port} within {timeout_s:.0f} s")
        time.sleep(0.05)


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the server's process group (a graceful stop), SIGKILL it after ``timeout_s``."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout=timeout_s)


def run_suite(args: argparse.Namespace, sections: Sequence[int]) -> tuple[Path, dict[str, Any]]:
    """Start fastws, run kosoku, stop fastws; return the report dir and the run metadata."""
    report_dir: Path = args.report_dir.resolve()
    clear_report_dir(report_dir)
    kosoku = find_kosoku()
    env = codec_env(args.codec)
    version = fastws_version(env)
    if f"codec: {args.codec}" not in version:
        raise RunError(f"asked for the {args.codec} codec, but fastws reports: {version}")

    port = args.port or free_port()
    server_cmd = [
        sys.executable,
        "-m",
        "fastws",
        "echo_app:app",
        "--app-dir",
        str(HERE),
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        # No keepalive pings: the Autobahn cases do not expect unsolicited frames. A 9.x/12.x/13.x
        # case that receives a ping closes at once (Case.finishWhenDone: the received events
        # match its empty `expected`) and is judged FAILED, so a case running past the 20 s
        # default interval would fail for a frame RFC 6455 allows. --server-arg can re-enable it.
        "--ws-ping-interval",
        "0",
        # Compress every message when deflate is negotiated. By default fastws sends messages
        # under 128 bytes uncompressed (RFC 7692 allows it), but kosoku 0.1.0 then hands the
        # 12.x.1/12.x.2/13.x.1/13.x.2 case code a str it cannot hash ("Strings must be encoded
        # before hashing") and reports ERROR; the original Python 2 suite got bytes there.
        "--ws-deflate-min-size",
        "0",
        *args.server_arg,
    ]
    includes = [arg for section in sections for arg in ("-i", f"{section}.*")]
    kosoku_cmd = [*kosoku, "-p", str(args.parallel), "-o", str(report_dir), *includes]
    kosoku_cmd.append(f"{HOST}:{port}")

    started = datetime.datetime.now(datetime.timezone.utc)
    with open(report_dir / "server.log", "wb") as server_log:
        proc = subprocess.Popen(
            server_cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the whole tree is stopped in finally
        )
        try:
            wait_for_port(proc, port, SERVER_START_TIMEOUT_S)
            print(f"fastws ({version}) on {HOST}:{port}; running: {shlex.join(kosoku_cmd)}")
            sys.stdout.flush()
            t0 = time.monotonic()
            with open(report_dir / "kosoku.log", "wb") as kosoku_log:
                try:
                    kosoku_rc = subprocess.run(
                        kosoku_cmd,
                        cwd=REPO_ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=kosoku_log,
                        stderr=subprocess.STDOUT,
                        timeout=args.timeout_s,
                    ).returncode
                except subprocess.TimeoutExpired:
                    raise RunError(f"kosoku did not finish within {args.timeout_s:.0f} s") from None
            duration_s = time.monotonic() - t0
            if proc.poll() is not None:
                raise RunError(
                    f"fastws exited with status {proc.returncode} during the run; "
                    f"see {report_dir / 'server.log'}"
                )
        finally:
            stop_process_group(proc, SERVER_STOP_TIMEOUT_S)

    meta: dict[str, Any] = {
        "codec": args.codec,
        "sections": list(sections),
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
        "parallel": args.parallel,
        "fastws_version": version,
        **git_state(),
        "kosoku_version": KOSOKU_VERSION,
        "kosoku_exit_status": kosoku_rc,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "server_command": shlex.join(["python", *server_cmd[1:]]),
        "kosoku_command": shlex.join(["kosoku", *kosoku_cmd[1:]]),
        "command": shlex.join(["python", "tests/compliance/run_autobahn.py", *args.argv]),
    }
    (report_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return report_dir, meta


def load_index(report_dir: Path) -> dict[str, Any]:
    path = report_dir / "index.json"
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"kosoku wrote no {path}; see {report_dir / 'kosoku.log'}") from None
    except ValueError as exc:
        raise RunError(f"{path} is not JSON: {exc}") from None
    if not isinstance(index, dict):
        raise RunError(f"{path} is not an object")
    return index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite (kosoku) against fastws with the echo app.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sections",
        default=ALL_SECTIONS,
        help="Autobahn sections: numbers and ranges (1-7,9,10,12,13), or 'all'",
    )
    parser.add_argument(
        "--codec",
        choices=("cython", "python"),
        default="cython",
        help="cython: FASTWS_REQUIRE_EXTENSIONS=1; python: FASTWS_NO_EXTENSIONS=1",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="kosoku's report directory (default: build/autobahn/CODEC)",
    )
    parser.add_argument("--parallel", type=int, default=4, help="cases kosoku runs at once")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=DEFAULT_RUN_TIMEOUT_S,
        help="give up on kosoku after this many seconds",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra fastws flag, repeatable (e.g. --server-arg=--ws-per-message-deflate=false)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        sections = parse_sections(args.sections)
    except ValueError as exc:
        parser.error(str(exc))
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if args.report_dir is None:
        args.report_dir = REPO_ROOT / "build" / "autobahn" / args.codec
    try:
        report_dir, meta = run_suite(args, sections)
        verdict = judge(load_index(report_dir), sections)
    except RunError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(format_verdict(verdict, report_dir, args.codec))
    print(f"kosoku ran {verdict.total} cases in {meta['duration_s']} s; report: {report_dir}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
