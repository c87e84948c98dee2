"""The default request-head limits serve what real clients send, and still refuse what is past
them: httpx against a live server, with the sizes found in the wild (issue #16): a 12 KB
Cookie header, three 4 KB Cookie headers, a 10 KB query string, a 9 KB GraphQL GET and 120
headers. The over-the-limit cases read the limits from ``Config``'s defaults, so they follow
a change of default; the real-traffic cases are literal sizes, so lowering a default below
what they need fails here. Small-limit and hostile cases are in test_limits.py and
test_hostile.py."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from . import apps
from .conftest import IS_UVICORN

pytestmark = pytest.mark.timeout(30)

KB = 1024


async def describe_request(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
    """Answers with what arrived: path, query string and every header, as JSON."""
    if scope["type"] == "lifespan":
        await apps.run_lifespan(scope, receive, send)
        return
    seen = {
        "path": scope["path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
    }
    await apps.text_response(send, json.dumps(seen))


def cookie_of(size: int, prefix: str) -> str:
    """A Cookie header value of exactly ``size`` bytes: ``name=value`` pairs, as browsers send."""
    pairs, used = [], 0
    for i in range(size):
        pair = f"{prefix}{i}=" + "v" * 80
        if used + len(pair) + 2 > size:
            break
        pairs.append(pair)
        used += len(pair) + 2
    value = "; ".join(pairs)
    return value + "; pad=" + "p" * (size - len(value) - len("; pad="))


async def get(url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        return await client.get(url, **kwargs)  # type: ignore[arg-type]


def headers_named(seen: dict[str, object], name: str) -> list[str]:
    return [v for n, v in seen["headers"] if n == name]  # type: ignore[attr-defined, misc]


# --------------------------------------------------------------------------------------------
# served by default
# --------------------------------------------------------------------------------------------


async def test_a_12_kb_cookie_header_is_served(running_server):
    srv = running_server(describe_request)
    cookie = cookie_of(12 * KB, "session")
    assert len(cookie) == 12 * KB
    response = await get(srv.url("/"), headers={"Cookie": cookie})
    assert response.status_code == 200, response.text
    assert headers_named(response.json(), "cookie") == [cookie]


async def test_three_4_kb_cookie_headers_are_served(running_server):
    srv = running_server(describe_request)
    cookies = [cookie_of(4 * KB, f"c{n}_") for n in range(3)]
    response = await get(srv.url("/"), headers=[("Cookie", c) for c in cookies])
    assert response.status_code == 200, response.text
    assert headers_named(response.json(), "cookie") == cookies


async def test_a_10_kb_query_string_is_served(running_server):
    srv = running_server(describe_request)
    query = "ids=" + ",".join(str(n) for n in range(100_000, 102_100))
    query = query[: 10 * KB]
    assert len(query) == 10 * KB
    response = await get(srv.url("/items?" + query))
    assert response.status_code == 200, response.text
    seen = response.json()
    assert (seen["path"], seen["query_string"]) == ("/items", query)


async def test_a_9_kb_graphql_get_is_served(running_server):
    srv = running_server(describe_request)
    fields = " ".join(f"field{n} {{ id name createdAt }}" for n in range(263))
    document = f"query Dashboard($id: ID!) {{ node(id: $id) {{ ... on User {{ {fields} }} }} }}"
    variables = json.dumps({"id": "VXNlcjox"})
    url = httpx.URL(srv.url("/graphql"), params={"query": document, "variables": variables})
    target = url.raw_path  # path and query, percent-encoded, as sent on the request line
    assert 9 * KB <= len(target) < 10 * KB, len(target)
    response = await get(str(url))
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/graphql"
    assert parse_qs(seen["query_string"]) == {"query": [document], "variables": [variables]}


async def test_120_headers_are_served(running_server):
    srv = running_server(describe_request)
    sent = [(f"x-custom-{n}", f"value-{n}") for n in range(120)]
    response = await get(srv.url("/"), headers=sent)
    assert response.status_code == 200, response.text
    received = [tuple(h) for h in response.json()["headers"] if h[0].startswith("x-custom-")]
    assert received == sent


# --------------------------------------------------------------------------------------------
# one byte (or one field) past a default: refused with the status that names it
# --------------------------------------------------------------------------------------------

fastws_only = pytest.mark.skipif(IS_UVICORN, reason="uvicorn with httptools has no such limits")


def default(name: str) -> int:
    from fastws.config import option_default

    value = option_default(name)
    assert isinstance(value, int)
    return value


@fastws_only
async def test_request_target_one_byte_past_the_default_gets_414(running_server):
    srv = running_server(describe_request)
    limit = default("limit_request_line")
    at_limit = "/" + "a" * (limit - 1)
    assert (await get(srv.url(at_limit))).status_code == 200
    response = await get(srv.url(at_limit + "a"))
    assert response.status_code == 414


@fastws_only
async def test_header_field_one_byte_past_the_default_gets_431(running_server):
    srv = running_server(describe_request)
    limit = default("limit_request_field_size")
    name = "x-big"
    at_limit = {name: "v" * (limit - len(name))}  # the limit counts name and value
    response = await get(srv.url("/"), headers=at_limit)
    assert response.status_code == 200
    assert headers_named(response.json(), name) == [at_limit[name]]
    response = await get(srv.url("/"), headers={name: at_limit[name] + "v"})
    assert response.status_code == 431


@fastws_only
async def test_one_header_field_past_the_default_count_gets_431(running_server):
    srv = running_server(describe_request)
    limit = default("limit_request_fields")
    baseline = len((await get(srv.url("/"))).json()["headers"])  # what httpx always sends
    extra = [(f"x-h{n}", "v") for n in range(limit - baseline)]
    response = await get(srv.url("/"), headers=extra)
    assert response.status_code == 200
    assert len(response.json()["headers"]) == limit
    response = await get(srv.url("/"), headers=[*extra, ("x-one-more", "v")])
    assert response.status_code == 431
