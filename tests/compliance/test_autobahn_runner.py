"""The Autobahn runner's verdict on synthetic kosoku reports (no server, no kosoku).

kosoku's own exit status passes NON-STRICT cases; fastws's bar is OK or INFORMATIONAL in both
``behavior`` and ``behaviorClose``, with every section complete. These tests pin that rule,
so that a "fix" to the runner cannot quietly lower it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conformance_doc import render
from run_autobahn import EXPECTED_CASES, RunError, judge, load_index, parse_sections

OK = {"behavior": "OK", "behaviorClose": "OK", "remoteCloseCode": 1000, "duration": 1}


def make_index(sections: list[int], agent: str = "fastws") -> dict[str, dict[str, Any]]:
    """A report in which every case of ``sections`` is OK, case ids ``S.1.N``."""
    cases = {
        f"{section}.1.{n}": dict(OK, reportfile=f"{agent}_case_{section}_1_{n}.json")
        for section in sections
        for n in range(1, EXPECTED_CASES[section] + 1)
    }
    return {agent: cases}


def test_all_ok_and_informational_passes() -> None:
    index = make_index([1, 7])
    index["fastws"]["7.1.3"].update(behavior="INFORMATIONAL", behaviorClose="INFORMATIONAL")
    verdict = judge(index, [1, 7])
    assert verdict.ok
    assert verdict.total == EXPECTED_CASES[1] + EXPECTED_CASES[7]
    assert verdict.by_section[7] == {"OK": EXPECTED_CASES[7] - 1, "INFORMATIONAL": 1}


def test_one_non_strict_case_fails_the_run() -> None:
    index = make_index([3])
    index["fastws"]["3.1.2"]["behavior"] = "NON-STRICT"
    verdict = judge(index, [3])
    assert not verdict.ok
    assert [case_id for case_id, _ in verdict.bad_cases] == ["3.1.2"]
    assert verdict.by_behavior["NON-STRICT"] == 1


@pytest.mark.parametrize("close", ["WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED"])
def test_closing_handshake_verdict_counts_too(close: str) -> None:
    index = make_index([7])
    index["fastws"]["7.1.1"]["behaviorClose"] = close
    verdict = judge(index, [7])
    assert [case_id for case_id, _ in verdict.bad_cases] == ["7.1.1"]
    assert verdict.by_section[7][f"OK / {close}"] == 1


def test_unimplemented_fails() -> None:
    index = make_index([12])
    index["fastws"]["12.1.1"]["behavior"] = "UNIMPLEMENTED"
    assert not judge(index, [12]).ok


def test_missing_case_fails_even_if_the_rest_is_ok() -> None:
    index = make_index([6])
    del index["fastws"]["6.1.1"]
    verdict = judge(index, [6])
    assert not verdict.ok and not verdict.bad_cases
    assert verdict.count_errors == [
        f"section 6: {EXPECTED_CASES[6] - 1} cases, expected {EXPECTED_CASES[6]}"
    ]


def test_cases_under_another_agent_are_pooled() -> None:
    # kosoku files a case that never got a handshake response under its target address.
    index = make_index([2])
    index["127.0.0.1:9001"] = {"2.1.1": index["fastws"].pop("2.1.1")}
    index["127.0.0.1:9001"]["2.1.1"].update(behavior="ERROR", behaviorClose="FAILED")
    verdict = judge(index, [2])
    assert verdict.total == EXPECTED_CASES[2] and not verdict.count_errors
    assert [case_id for case_id, _ in verdict.bad_cases] == ["2.1.1"]


def test_case_outside_selected_sections_is_a_count_error() -> None:
    verdict = judge(make_index([1, 2]), [1])
    assert not verdict.ok
    assert verdict.count_errors[0].startswith("case 2.1.1 is outside")


def test_missing_index_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError):
        load_index(tmp_path)


@pytest.mark.parametrize(
    ("spec", "sections"),
    [
        ("1-7", [1, 2, 3, 4, 5, 6, 7]),
        ("1-7,9,10,12,13", sorted(EXPECTED_CASES)),
        ("all", sorted(EXPECTED_CASES)),
        ("1-13", sorted(EXPECTED_CASES)),  # a range skips the numbers Autobahn lacks
        ("13, 12,12", [12, 13]),
    ],
)
def test_parse_sections(spec: str, sections: list[int]) -> None:
    assert parse_sections(spec) == sections


@pytest.mark.parametrize("spec", ["8", "11", "0", "14", "7-1", "x", "1-y"])
def test_parse_sections_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_sections(spec)


def test_doc_lists_the_failing_case_with_its_reason(tmp_path: Path) -> None:
    index = make_index([3])
    index["fastws"]["3.1.2"]["behavior"] = "NON-STRICT"
    case = {
        "behavior": "NON-STRICT",
        "behaviorClose": "OK",
        "result": "Actual events match at least one expected.",
        "expected": {"OK": [["message", "Hello, world!", False]], "NON-STRICT": []},
        "received": [],
        "remoteCloseCode": 1002,
    }
    (tmp_path / "fastws_case_3_1_2.json").write_text(json.dumps(case))
    meta = {"codec": "cython", "sections": [3], "started": "2026-01-01T00:00:00+00:00"}
    doc = render([(meta, judge(index, [3]), tmp_path)])
    assert "**fail**, 1 of 7 cases" in doc
    row = next(line for line in doc.splitlines() if line.startswith("| 3.1.2 "))
    assert "NON-STRICT" in row and "received nothing" in row and "1002" in row
