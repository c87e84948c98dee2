"""Starlette FileResponse of the file named by FASTWS_BENCH_FILE, at /file (bench/download.py)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

PATH = os.environ["FASTWS_BENCH_FILE"]


async def file(request: object) -> FileResponse:
    return FileResponse(PATH)


app = Starlette(routes=[Route("/file", file)])
