"""Write docs/CONFORMANCE.md from the reports that run_autobahn.py left behind.

Reads each report directory's ``index.json`` (kosoku's verdicts) and ``run.json`` (codec,
fastws commit, date, command), judges it with the same rule as the runner (``behavior`` and
``behaviorClose`` both OK or INFORMATIONAL), and writes one Markdown page: counts per section
and behaviour for each codec, every case that is not OK/INFORMATIONAL with the reason from its
case report, and the commands that reproduce it. Nothing in the page is typed by hand, so it is
only as current as the last ``make compliance``. Usage (``make conformance-doc`` runs it):

    .venv/bin/python tests/compliance/conformance_doc.py [REPORT_DIR ...] [--output FILE]

Without REPORT_DIR it reads build/autobahn/cython and build/autobahn/python (those present).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from run_autobahn import (
    EXPECTED_CASES,
    KOSOKU_VERSION,
    REPO_ROOT,
    SECTION_NAMES,
    RunError,
    Verdict,
    case_reason,
    judge,
    load_index,
)

DEFAULT_REPORTS = [REPO_ROOT / "build" / "autobahn" / codec for codec in ("cython", "python")]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "CONFORMANCE.md"
# Column order of the count tables; labels not listed here follow, sorted.
LABEL_ORDER = ["OK", "INFORMATIONAL", "NON-STRICT", "UNIMPLEMENTED", "FAILED", "ERROR"]
CODEC_TITLES = {"cython": "Compiled codec (cython)", "python": "Pure-Python codec"}


def load_report(report_dir: Path) -> tuple[dict[str, Any], Verdict]:
    """The run metadata and the verdict of one report directory.

    Raises:
        RunError: the directory lacks run.json or index.json.
    """
    try:
        meta = json.loads((report_dir / "run.json").read_text())
    except FileNotFoundError:
        raise RunError(
            f"{report_dir} has no run.json (was it written by run_autobahn.py?)"
        ) from None
    return meta, judge(load_index(report_dir), meta["sections"])


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _columns(verdicts: Iterable[Verdict]) -> list[str]:
    seen = {label for verdict in verdicts for label in verdict.by_behavior}
    return [label for label in LABEL_ORDER if label in seen] + sorted(seen - set(LABEL_ORDER))


def render_report(meta: dict[str, Any], verdict: Verdict, report_dir: Path) -> list[str]:
    codec = meta["codec"]
    commit = meta.get("commit", "unknown")
    dirty = " with uncommitted changes under fastws/" if meta.get("fastws_dirty") else ""
    sections = meta["sections"]
    missing = [s for s in EXPECTED_CASES if s not in sections]
    lines = [
        f"## {CODEC_TITLES.get(codec, codec)}",
        "",
        f"- Run: {meta['started']}, fastws commit `{commit[:12]}`{dirty}",
        f"- Server: {meta.get('fastws_version', '?')}",
        f"- Runner: kosoku {meta.get('kosoku_version', '?')}, {meta.get('parallel', '?')} cases "
        f"in parallel, {meta.get('duration_s', '?')} s on {meta.get('cpus', '?')} CPUs "
        f"({meta.get('platform', '?')})",
        f"- Command: `{meta.get('command', '?')}`",
        f"- Sections: {', '.join(map(str, sections))}"
        + (f" (not run: {', '.join(map(str, missing))})" if missing else ""),
    ]
    if verdict.ok:
        lines.append(f"- Verdict: **pass**, all {verdict.total} cases OK or INFORMATIONAL")
    else:
        lines.append(
            f"- Verdict: **fail**, {len(verdict.bad_cases)} of {verdict.total} cases not OK or "
            f"INFORMATIONAL"
            + (f", {len(verdict.count_errors)} count problems" if verdict.count_errors else "")
        )
    columns = _columns([verdict])
    lines += [
        "",
        "| Section | Cases | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for section, counts in verdict.by_section.items():
        cells = [str(counts.get(label, 0) or "") for label in columns]
        name = f"{section} {SECTION_NAMES.get(section, '')}".strip()
        lines.append(f"| {name} | {sum(counts.values())} | " + " | ".join(cells) + " |")
    totals = [str(verdict.by_behavior.get(label, 0) or "") for label in columns]
    lines.append(f"| **Total** | **{verdict.total}** | " + " | ".join(totals) + " |")
    for problem in verdict.count_errors:
        lines += ["", f"Count problem: {problem}."]
    if verdict.bad_cases:
        lines += [
            "",
            "Cases not OK or INFORMATIONAL (reason from the case report):",
            "",
            "| Case | behavior | behaviorClose | Why |",
            "|---|---|---|---|",
        ]
        for case_id, entry in verdict.bad_cases:
            lines.append(
                f"| {case_id} | {entry.get('behavior')} | {entry.get('behaviorClose')} | "
                f"{_cell(case_reason(report_dir, entry))} |"
            )
    return lines


INTRO = """\
# WebSocket conformance: the Autobahn TestSuite

<!-- Generated by tests/compliance/conformance_doc.py from the reports of
     tests/compliance/run_autobahn.py: `make compliance conformance-doc` rewrites it. -->

fastws is checked with the
[Autobahn TestSuite](https://github.com/crossbario/autobahn-testsuite), the conformance suite
WebSocket implementations are judged by: its {total} server cases (sections 1-7, 9, 10, 12
and 13) run on Python 3 by [kosoku](https://pypi.org/project/kosoku/) {kosoku} against fastws
serving `tests/compliance/echo_app.py`, a raw ASGI app that echoes every message back.

The bar is stricter than kosoku's own exit status: every case's `behavior` and `behaviorClose`
must be `OK` or `INFORMATIONAL`. `NON-STRICT` (a SHOULD-level divergence, which kosoku counts
as a pass), `UNIMPLEMENTED`, `FAILED` and `ERROR` all fail, and so does a section that reports
fewer cases than the suite has.

## Reproduce

```
make compliance        # compiled codec, every section; then sections 1-7, pure-Python codec
make compliance-quick  # compiled codec, sections 1-7 only (seconds)
make conformance-doc   # rewrite this page from the last `make compliance` reports
```

Case-by-case reports (kosoku's `index.html`, a JSON and an HTML file per case, the server log)
are left in `build/autobahn/<codec>/`; `tests/compliance/README.md` explains the options.

The server runs with its defaults except two flags, both for limits of the test harness, not
of fastws (details in `tests/compliance/README.md`): `--ws-ping-interval 0` (an Autobahn case
fails on any unsolicited frame, and a keepalive ping is one) and `--ws-deflate-min-size 0`
(kosoku 0.1.0 crashes on the uncompressed short echoes RFC 7692 allows, which fastws sends
below 128 bytes by default).
"""


def render(reports: Sequence[tuple[dict[str, Any], Verdict, Path]]) -> str:
    lines = [INTRO.format(total=sum(EXPECTED_CASES.values()), kosoku=KOSOKU_VERSION).rstrip()]
    for meta, verdict, report_dir in reports:
        lines += ["", *render_report(meta, verdict, report_dir)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "report_dirs",
        nargs="*",
        type=Path,
        help="run_autobahn.py report directories (default: build/autobahn/{cython,python})",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to write"
    )
    args = parser.parse_args(argv)
    report_dirs = args.report_dirs or [d for d in DEFAULT_REPORTS if (d / "run.json").exists()]
    if not report_dirs:
        print("ERROR: no reports: run `make compliance` first", file=sys.stderr)
        return 2
    try:
        reports = [(*load_report(d), d) for d in report_dirs]
    except RunError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(reports))
    for meta, verdict, _ in reports:
        state = "pass" if verdict.ok else f"{len(verdict.bad_cases)} cases not OK"
        print(f"{meta['codec']}: {verdict.total} cases, {state}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
