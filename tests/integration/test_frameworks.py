"""Real frameworks, unchanged, on the server under test: Starlette and FastAPI apps with HTTP
and WebSocket routes (see apps.starlette_app / apps.fastapi_app)."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from . import apps
from .conftest import HOST, within

pytestmark = pytest.mark.timeout(30)


def connect(url: str, **kwargs):
    return ws_connect(
        url, open_timeout=5, close_timeout=5, ping_interval=None, proxy=None, **kwargs
    )


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=5.0)


async def test_starlette_http_routes_and_lifespan_state(running_server):
    srv = running_server(apps.starlette_app(), lifespan="on")
    async with client() as http:
        home = await within(http.get(srv.url("/")))
        data = await within(http.get(srv.url("/json"), params={"name": "zoë"}))
        missing = await within(http.get(srv.url("/nope")))
    assert (home.status_code, home.text) == (200, "hello from starlette")
    assert data.json() == {"name": "zoë", "greeting": "hi"}
    assert missing.status_code == 404


async def test_starlette_websocket_text_and_json(running_server):
    srv = running_server(apps.starlette_app(), lifespan="on")
    async with connect(srv.ws_url("/ws")) as ws:
        for text in ("one", "two", "ünï"):
            await within(ws.send(text))
            assert await within(ws.recv()) == "echo:" + text
    async with connect(srv.ws_url("/ws-json"), subprotocols=["json.v1"]) as ws:
        assert ws.subprotocol == "json.v1"
        await within(ws.send('{"a": [1, 2]}'))
        assert await within(ws.recv()) == '{"a":[1,2],"seen_by":"starlette"}'


async def test_fastapi_http_routes(running_server):
    srv = running_server(apps.fastapi_app(), lifespan="on")
    async with client() as http:
        item = await within(http.get(srv.url("/items/42"), params={"q": "x y"}))
        invalid = await within(http.get(srv.url("/items/not-a-number")))
        posted = await within(http.post(srv.url("/items"), json={"name": "widget", "tags": ["a"]}))
        docs = await within(http.get(srv.url("/openapi.json")))
    assert item.json() == {"item_id": 42, "q": "x y"}
    assert invalid.status_code == 422
    assert posted.json()["received"] == {"name": "widget", "tags": ["a"]}
    assert docs.status_code == 200 and "/items/{item_id}" in docs.json()["paths"]


async def test_fastapi_websocket_json_and_rejection(running_server):
    srv = running_server(apps.fastapi_app(), lifespan="on")
    async with connect(srv.ws_url("/ws/lobby")) as ws:
        await within(ws.send('{"msg": "hi"}'))
        assert await within(ws.recv()) == '{"room":"lobby","data":{"msg":"hi"}}'
        await within(ws.send('{"msg": "again"}'))
        assert "again" in await within(ws.recv())
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.ws_url("/ws-reject")):
            pass
    assert info.value.response.status_code == 403


async def test_fastapi_app_through_the_cli_with_factory(server_process):
    proc = server_process("tests.integration.apps:fastapi_app", "--factory")
    async with client() as http:
        item = await within(http.get(f"http://{HOST}:{proc.port}/items/7"))
    assert item.json() == {"item_id": 7, "q": None}
    async with connect(f"ws://{HOST}:{proc.port}/ws/cli") as ws:
        await within(ws.send("[1]"))
        assert await within(ws.recv()) == '{"room":"cli","data":[1]}'
