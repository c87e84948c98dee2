"""``fastws.run()``: one server process, a supervisor of workers, or a reloader.

Picks the process model from the options and nothing else: ``fastws.server.Server`` serves in
this process; with ``workers > 1`` a ``fastws.supervisor.Supervisor`` runs that many worker
processes; with ``reload`` a ``fastws.reload.ChangeReload`` runs one server process restarted on
code changes. The CLI (fastws.cli) and ``fastws.run`` both end here.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from fastws.config import STARTUP_FAILURE, Config
from fastws.server import Server

logger = logging.getLogger("fastws.error")


def run(app: Any, **kwargs: Any) -> None:
    """Serve ``app`` (an ASGI app or an "module:attr" string) with the options of Config.

    One server process; with ``workers > 1`` a supervisor and that many worker processes
    (``fastws.supervisor``); with ``reload`` a reloader and one server process restarted on
    code changes (``fastws.reload``). Both need ``app`` as an import string, since each
    process imports it anew. Exits the process with status 3 when startup fails (as uvicorn
    does).
    """
    config = Config(app, **kwargs)
    if (config.reload or config.workers > 1) and not isinstance(app, str):
        logger.error(
            "You must pass the application as an import string to enable 'reload' or "
            "'workers' (each process imports it anew), e.g. fastws.run('main:app', workers=4)."
        )
        sys.exit(STARTUP_FAILURE)
    if config.reload or config.workers > 1:
        try:
            if config.reload:
                from fastws.reload import ChangeReload

                if config.workers > 1:
                    logger.warning("--reload runs a single server process; --workers is ignored.")
                status = ChangeReload(config, [config.bind_socket()]).run()
            else:
                from fastws.supervisor import Supervisor

                status = Supervisor(config, [config.bind_socket()]).run()
        finally:
            if config.uds and os.path.exists(config.uds):
                os.remove(config.uds)
        if status:
            sys.exit(status)
        return
    server = Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
