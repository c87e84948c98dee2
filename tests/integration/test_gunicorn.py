"""``gunicorn -k fastws.workers.FastWSWorker``: real gunicorn arbiter, real worker processes.

gunicorn binds the socket and forks the workers; each runs a fastws server on it. The
tests look at what an operator relies on: every worker serves HTTP and WebSocket, SIGTERM
closes open WebSockets with 1012 and gunicorn exits 0, the heartbeat keeps idle workers
alive past --timeout, --max-requests recycles workers, and gunicorn's settings reach the
fastws Config.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import (
    HOST,
    REPO_ROOT,
    ServerProcess,
    find_free_port,
    subprocess_env,
)
from .test_workers import (
    WORKERS_APP,
    echo_on_each,
    http_get,
    pids_through_recycling,
    serving_pids,
    stop_with_1012,
    write_module,
)

pytest.importorskip("gunicorn")
from gunicorn.config import KNOWN_SETTINGS  # noqa: E402

pytestmark = pytest.mark.timeout(60)

WORKER_CLASS = "fastws.workers.FastWSWorker"


def gunicorn_command(tmp_path: Path, port: int, *args: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        WORKER_CLASS,
        "--bind",
        f"{HOST}:{port}",
        "--pythonpath",
        f"{tmp_path},{REPO_ROOT}",
        "--worker-tmp-dir",
        str(tmp_path),
    ]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        # gunicorn >= 24 opens a control socket under $HOME by default; tests keep out of it.
        command.append("--no-control-socket")
    return [*command, *args]


@pytest.fixture
def gunicorn_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``gunicorn_process(*args)`` runs gunicorn on the pid app (workers_app:app) in
    its own process group, waits until it listens; killed at teardown (the whole group)."""
    started: list[ServerProcess] = []
    module = write_module(tmp_path, "workers_app", WORKERS_APP)

    def start(*args: str, app: str = f"{module}:app") -> ServerProcess:
        port = find_free_port()
        sp = ServerProcess(gunicorn_command(tmp_path, port, *args, app), subprocess_env(), port)
        started.append(sp)
        sp.start()
        sp.wait_listening()
        return sp

    try:
        yield start
    finally:
        for sp in started:
            sp.kill()


async def test_two_workers_serve_http_and_websocket(gunicorn_process):
    proc = gunicorn_process("--workers", "2")
    pids = serving_pids(proc.port, 2)
    assert proc.proc.pid not in pids
    await echo_on_each(proc.port, pids)
    for pid in pids:
        assert f"Started server process [{pid}]" in proc.output, proc.output


async def test_sigterm_closes_websockets_with_1012_and_exits_0(gunicorn_process):
    graceful_s = 5
    proc = gunicorn_process("--workers", "2", "--graceful-timeout", str(graceful_s))
    pids = serving_pids(proc.port, 2)
    code, elapsed = await stop_with_1012(proc, pids, signal.SIGTERM, graceful_s)
    assert code == 0, proc.output
    assert elapsed < graceful_s, elapsed
    assert "Application shutdown complete" in proc.output, proc.output


def test_heartbeat_keeps_idle_workers_past_the_timeout(gunicorn_process):
    # With --timeout 2 the arbiter kills any worker that has not notified for 2 s.
    proc = gunicorn_process("--workers", "2", "--timeout", "2")
    pids = serving_pids(proc.port, 2)
    time.sleep(4.5)
    assert serving_pids(proc.port, 2) == pids
    assert "WORKER TIMEOUT" not in proc.output, proc.output


def test_worker_with_a_blocked_loop_is_killed_by_the_arbiter(gunicorn_process):
    proc = gunicorn_process("--workers", "2", "--timeout", "2")
    pids = serving_pids(proc.port, 2)
    with pytest.raises(OSError):
        http_get(proc.port, "/hang", timeout_s=15)
    assert "WORKER TIMEOUT" in proc.output, proc.output
    now = serving_pids(proc.port, 2)
    assert len(now & pids) == 1, (pids, now)


def test_max_requests_recycles_workers(gunicorn_process):
    proc = gunicorn_process("--workers", "2", "--max-requests", "5")
    # Four at a time: more could use up a worker's five requests within the probe.
    first = serving_pids(proc.port, 2, path="/", at_once=4)
    seen = pids_through_recycling(proc, first, 4)
    assert seen - first
    assert "Maximum request limit of 5 exceeded" in proc.output, proc.output


def test_app_that_fails_to_import_stops_gunicorn(tmp_path):
    (tmp_path / "broken_app_module.py").write_text(
        'async def app(scope, receive, send):\n    pass\nraise RuntimeError("boom at import")\n'
    )
    sp = ServerProcess(
        gunicorn_command(tmp_path, find_free_port(), "--workers", "2", "broken_app_module:app"),
        subprocess_env(),
        0,
    )
    sp.start()
    try:
        code = sp.wait(20)
        output = sp.output
    finally:
        sp.kill()
    assert code != 0, output
    assert "boom at import" in output, output


# --------------------------------------------------------------------------------------------
# settings mapping, in process (no fork): gunicorn's Config in, fastws Config kwargs out
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fastws_loggers() -> Iterator[None]:
    """The worker points fastws's loggers at gunicorn's handlers; put them back afterwards."""
    saved = []
    for name in ("fastws.error", "fastws.access"):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.level, logger.propagate = handlers, level, propagate


def make_worker(tmp_path: Path, **settings: object):
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.glogging import Logger

    from fastws.workers import FastWSWorker

    cfg = GunicornConfig()
    cfg.set("worker_tmp_dir", str(tmp_path))
    for name, value in settings.items():
        cfg.set(name, value)
    worker = FastWSWorker(1, os.getpid(), [], None, cfg.timeout, cfg, Logger(cfg))
    return worker


def test_gunicorn_settings_reach_the_fastws_config(tmp_path, fastws_loggers):
    from fastws.config import Config

    worker = make_worker(
        tmp_path,
        keepalive=7,
        graceful_timeout=12,
        forwarded_allow_ips="10.0.0.1,192.168.0.0/16",
        backlog=123,
        max_requests=50,
        limit_request_line=2048,
        limit_request_fields=20,
        limit_request_field_size=0,
        certfile="cert.pem",
        keyfile="key.pem",
        ca_certs="ca.pem",
        cert_reqs=2,
        ciphers="ECDHE+AESGCM",
        timeout=17,
    )
    try:
        kwargs = worker.config_kwargs()
    finally:
        worker.tmp.close()
    assert kwargs["timeout_keep_alive"] == 7
    assert kwargs["timeout_graceful_shutdown"] == 11  # a second before gunicorn's SIGKILL
    assert kwargs["forwarded_allow_ips"] == ["10.0.0.1", "192.168.0.0/16"]
    assert kwargs["backlog"] == 123
    assert 50 <= kwargs["limit_max_requests"] <= 50 + worker.cfg.max_requests_jitter
    assert kwargs["limit_request_line"] == 2048
    assert kwargs["limit_request_fields"] == 20
    assert "limit_request_field_size" not in kwargs  # gunicorn's 0: fastws keeps its bound
    assert (kwargs["ssl_certfile"], kwargs["ssl_keyfile"], kwargs["ssl_ca_certs"]) == (
        "cert.pem",
        "key.pem",
        "ca.pem",
    )
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ciphers"]) == (2, "ECDHE+AESGCM")
    assert kwargs["timeout_notify"] == 17
    assert kwargs["log_config"] is None
    config = Config(lambda scope, receive, send: None, **kwargs)  # every value is valid
    assert config.is_ssl


def test_defaults_leave_tls_and_max_requests_off(tmp_path, fastws_loggers):
    worker = make_worker(tmp_path)
    try:
        kwargs = worker.config_kwargs()
    finally:
        worker.tmp.close()
    assert kwargs["limit_max_requests"] is None
    assert not any(name.startswith("ssl_") for name in kwargs)


def test_config_kwargs_of_a_subclass_win(tmp_path, fastws_loggers):
    from fastws.workers import FastWSWorker

    class Tuned(FastWSWorker):
        CONFIG_KWARGS = {"ws_max_size": 1024, "timeout_keep_alive": 1}

    worker = make_worker(tmp_path, keepalive=9)
    worker.__class__ = Tuned
    try:
        kwargs = worker.config_kwargs()
    finally:
        worker.tmp.close()
    assert kwargs["ws_max_size"] == 1024
    assert kwargs["timeout_keep_alive"] == 1
