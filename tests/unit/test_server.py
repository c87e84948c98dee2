"""Server options that need no socket: the max-requests jitter."""

from __future__ import annotations

from fastws.config import Config
from fastws.server import Server


async def app(scope, receive, send):  # pragma: no cover - never called
    pass


def test_max_requests_jitter_is_drawn_once_within_its_range():
    drawn = {
        Server(
            Config(app, limit_max_requests=10, limit_max_requests_jitter=5, log_config=None)
        ).max_requests
        for _ in range(200)
    }
    assert drawn <= set(range(10, 16))
    assert len(drawn) > 1  # 200 draws over 6 values: all equal is (1/6)^199


def test_no_limit_means_no_max_requests():
    assert Server(Config(app, log_config=None)).max_requests is None
    assert Server(Config(app, limit_max_requests=7, log_config=None)).max_requests == 7
