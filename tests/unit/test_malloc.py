"""fastws.malloc: glibc's thresholds set for large messages, unless the user set them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fastws import malloc

glibc_only = pytest.mark.skipif(not malloc.is_glibc(), reason="mallopt tuning is glibc-only")

# Four connections' worth of 1 MiB messages allocated, filled and freed, 30 times over: the
# minor page faults of the last 20 rounds, with or without fastws.malloc.tune() first.
CHURN = """
import json, resource, sys
from fastws import malloc
tuned = malloc.tune(16 * 1024 * 1024) if sys.argv[1] == "tune" else None
def churn(rounds):
    for _ in range(rounds):
        blocks = [bytes(1024 * 1024 + i) for i in range(8)]
        del blocks
churn(10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(20)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"tuned": tuned, "faults": after - before}))
"""


def run_churn(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out)


@glibc_only
def test_tuned_heap_keeps_large_messages_pages() -> None:
    default = run_churn("default")
    tuned = run_churn("tune")
    assert tuned["tuned"] == [16 * 1024 * 1024, 32 * 1024 * 1024]
    # Untuned, glibc trims the heap's free top and the next messages fault their pages in
    # again (thousands of faults); tuned, the pages stay and are reused.
    assert default["faults"] > 1000, default
    assert tuned["faults"] < default["faults"] // 20, (default, tuned)


@glibc_only
@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TOP_PAD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_the_users_own_settings_win(env: dict[str, str]) -> None:
    result = run_churn("tune", **env)
    assert result["tuned"] is None
    # The heap behaves as with the user's settings alone.
    untouched = run_churn("default", **env)
    assert result["faults"] == pytest.approx(untouched["faults"], rel=0.2, abs=50)


def test_unrelated_tunables_do_not_count_as_user_settings() -> None:
    assert not malloc.user_has_set({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
    assert malloc.user_has_set({"GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.arena_max=2"})


@pytest.mark.parametrize(
    ("max_message", "expected"),
    [
        (16 * 1024 * 1024, (16 * 1024 * 1024, 32 * 1024 * 1024)),
        (1024, (128 * 1024, 256 * 1024)),  # never below glibc's own starting threshold
        (1 << 30, (32 * 1024 * 1024, 64 * 1024 * 1024)),  # nor above what glibc accepts
    ],
)
def test_thresholds_follow_the_largest_message(max_message: int, expected: tuple) -> None:
    assert malloc.thresholds(max_message) == expected


def test_nothing_changes_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(name: str) -> str:
        raise ValueError("unrecognized configuration name")

    monkeypatch.setattr(os, "confstr", no_such_name)
    assert not malloc.is_glibc()
    assert malloc.tune(16 * 1024 * 1024, environ={}) is None
