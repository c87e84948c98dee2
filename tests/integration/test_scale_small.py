"""bench/scale.py at 5,000 connections, so that `make scale` (100,000, docs/scale.md) cannot rot.

The same script, run as a subprocess: a throwaway redis-server, `fastws --workers 2 --pubsub
redis://...` on bench/apps/fanout_publish.py, 5,000 subscribers from `wsload subscribe` on two
source addresses, 5 broadcasts from a /pub connection, then a clean close. Every connection
must get every broadcast in order, and no worker may keep a descriptor.

Needs redis-server, the redis package and gcc (wsload is built with `make -C bench/load`);
FASTWS_SKIP_REDIS=1 turns a missing Redis into a skip, as in test_chat_redis.py. Runs in the
main pass and the pure-codec pass (FASTWS_NO_EXTENSIONS reaches the server), not in the uvloop
pass: the server is the CLI's, on uvloop, whatever FASTWS_TEST_LOOP says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import IS_FASTWS, REPO_ROOT

CONNS = 5_000
MESSAGES = 5
TIMEOUT_S = 120  # the run takes ~15-30 s on the 2-core development machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not IS_FASTWS, reason="fastws's --workers and --pubsub"),
    pytest.mark.skipif(
        bool(os.environ.get("FASTWS_TEST_LOOP")),
        reason="the CLI server runs on uvloop in every pass; once is enough",
    ),
]


def require_tools() -> None:
    problem = ""
    if not shutil.which("redis-server"):
        problem = "redis-server not found (apt-get install redis-server)"
    elif importlib.util.find_spec("redis") is None:
        problem = "the 'redis' package is missing: pip install -e '.[test]'"
    if problem:
        if os.environ.get("FASTWS_SKIP_REDIS"):
            pytest.skip(problem)
        pytest.fail(problem + " (or set FASTWS_SKIP_REDIS=1 to skip)")
    if not shutil.which("gcc") and not (REPO_ROOT / "bench" / "load" / "wsload").exists():
        pytest.fail("gcc not found: bench/load/wsload cannot be built")


def test_scale_5000_connections_broadcast_all_delivered(tmp_path):
    require_tools()
    build = subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT / "bench" / "load")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    out = tmp_path / "scale.json"
    argv = [
        sys.executable,
        str(REPO_ROOT / "bench" / "scale.py"),
        "--conns",
        str(CONNS),
        "--workers",
        "2",
        "--client-procs",
        "2",
        "--src-addrs",
        "127.0.0.2-127.0.0.3",
        "--messages",
        str(MESSAGES),
        "--settle-s",
        "0.5",
        "--timeout-s",
        str(TIMEOUT_S - 20),
        "--json",
        str(out),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert proc.returncode == 0, (result["failures"], proc.stdout[-3000:], proc.stderr[-2000:])
    client = result["client"]
    assert client["subs"] == CONNS
    assert client["received"] == CONNS * MESSAGES
    assert client["lost"] == 0 and client["out_of_order"] == 0
    assert client["broadcasts_complete"] == MESSAGES
    assert all(kept <= 0 for kept in result["fds_leaked_per_worker"])
    # every connection landed on a worker and cost it memory (sanity, not a budget)
    assert 0 < result["server_bytes_per_conn"] < 64 * 1024
