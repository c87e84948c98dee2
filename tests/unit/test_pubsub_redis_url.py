"""The Redis URL as the pub/sub bridge logs it: never with its password."""

from __future__ import annotations

import pytest

from fastws.ws.pubsub_redis import redacted


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("rediss://user:s3cret@cache.example:6380/2", "rediss://***@cache.example:6380/2"),
        ("redis://user@host/1", "redis://***@host/1"),
        ("redis://:s3cret@[::1]:6379", "redis://***@[::1]:6379"),
    ],
)
def test_the_password_never_reaches_the_log(url, shown):
    assert redacted(url) == shown
    assert "s3cret" not in redacted(url)
