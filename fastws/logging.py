"""Logger names, the TRACE level, the default formatters and ``--log-config`` loading.

Owns how fastws log records look and how a logging configuration (the built-in
``LOGGING_CONFIG`` dict, or a user's ``.json`` / ``.yaml`` / ``.ini`` file) is applied.
It does not decide *what* is logged: the server, protocols and supervisor do that,
through the two loggers named here.

Conventions the rest of the package relies on:

- ``fastws.error`` carries everything except the access log (startup lines, warnings,
  tracebacks, TRACE-level protocol detail); ``fastws.access`` carries one record per
  request. Both sit under the parent ``fastws``.
- Access records keep uvicorn's argument shape so that existing uvicorn log configs keep
  working: ``access_logger.info('%s - "%s %s HTTP/%s" %d', client_addr, method,
  full_path, http_version, status_code)``. ``AccessFormatter`` exposes them as
  ``%(client_addr)s``, ``%(request_line)s`` and ``%(status_code)s`` (code plus phrase).
  A sixth argument, a detail string, may follow (``... %d %s``): it is appended to
  ``%(status_code)s``. WebSocket sessions log their close that way (close code, duration,
  messages and bytes each way).
- A record may carry ``extra={"color_message": ...}``: a variant of ``msg`` with ANSI
  styling, used instead of ``msg`` when colours are on.
"""

from __future__ import annotations

import copy
import http
import importlib
import json
import logging
import logging.config
import os
import sys
from collections.abc import Callable
from typing import IO, Any, Literal

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

LOGGER_NAME = "fastws"
ERROR_LOGGER_NAME = "fastws.error"
ACCESS_LOGGER_NAME = "fastws.access"

LogLevelName = Literal["critical", "error", "warning", "info", "debug", "trace"]
LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "fastws.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "fastws.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            "use_colors": None,
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        LOGGER_NAME: {"handlers": ["default"], "level": "INFO", "propagate": False},
        ERROR_LOGGER_NAME: {"level": "INFO"},
        ACCESS_LOGGER_NAME: {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

_ANSI_CODES = {
    "bold": 1,
    "red": 31,
    "green": 32,
    "yellow": 33,
    "blue": 34,
    "cyan": 36,
    "bright_red": 91,
    "bright_white": 97,
}


def style(text: str, *styles: str) -> str:
    """Wrap ``text`` in ANSI escape codes.

    Args:
        text: the text to style.
        styles: names from ``bold``, ``red``, ``green``, ``yellow``, ``blue``, ``cyan``,
            ``bright_red``, ``bright_white``.

    Returns:
        ``text`` between the escape sequences, ending with a reset.
    """
    codes = ";".join(str(_ANSI_CODES[name]) for name in styles)
    return f"\x1b[{codes}m{text}\x1b[0m"


_LEVEL_COLOURS = {
    TRACE_LOG_LEVEL: "blue",
    logging.DEBUG: "cyan",
    logging.INFO: "green",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "bright_red",
}

# Width of the level column: "CRITICAL" is the longest name, plus its colon.
_LEVEL_WIDTH = 9


class ColourizedFormatter(logging.Formatter):
    """Formatter adding ``%(levelprefix)s``: the level name and a colon, padded to one width.

    With colours on, the level name is coloured by level and a record's ``color_message``
    extra, when present, replaces its ``msg``. ``use_colors=None`` turns colours on when
    the stream this formatter usually writes to is a terminal.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = self.default_use_colors() if use_colors is None else bool(use_colors)
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def default_use_colors(self) -> bool:
        """Whether to colour when the caller did not say; the stream is a guess at the handler's."""
        stream = self._tty_stream()
        isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
        return bool(isatty and isatty())

    def _tty_stream(self) -> IO[str] | None:
        return sys.stderr

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (stdlib name)
        # Work on a copy: other handlers of the same record must see it unchanged.
        record = copy.copy(record)
        levelname = record.levelname
        padding = " " * max(_LEVEL_WIDTH - 1 - len(levelname), 0)
        if self.use_colors:
            colour = _LEVEL_COLOURS.get(record.levelno)
            if colour is not None:
                levelname = style(levelname, colour)
            color_message = record.__dict__.get("color_message")
            if color_message is not None:
                record.msg = color_message
                record.message = record.getMessage()
        record.levelprefix = f"{levelname}:{padding}"
        return super().formatMessage(record)


class DefaultFormatter(ColourizedFormatter):
    """Formatter for ``fastws`` and ``fastws.error``; the default config writes to stderr."""


_STATUS_COLOURS = {1: "bright_white", 2: "green", 3: "yellow", 4: "red", 5: "bright_red"}


class AccessFormatter(ColourizedFormatter):
    """Formatter for ``fastws.access`` records (see the module docstring for their arguments).

    Adds ``%(client_addr)s``, ``%(request_line)s`` (``GET /path HTTP/1.1``) and
    ``%(status_code)s`` (``200 OK``). Records with other argument shapes are formatted as
    plain messages, with the three fields empty.
    """

    def _tty_stream(self) -> IO[str] | None:
        return sys.stdout

    def status_text(self, status_code: int) -> str:
        """Return ``"<code> <phrase>"``, coloured by status class when colours are on."""
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            phrase = ""
        text = f"{status_code} {phrase}".rstrip()
        if self.use_colors:
            colour = _STATUS_COLOURS.get(status_code // 100)
            if colour is not None:
                text = style(text, colour)
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (stdlib name)
        args = record.args
        if isinstance(args, tuple) and len(args) in (5, 6):
            client_addr, method, full_path, http_version, status_code = args[:5]
            request_line = f"{method} {full_path} HTTP/{http_version}"
            if self.use_colors:
                request_line = style(request_line, "bold")
            try:
                status = self.status_text(int(status_code))  # type: ignore[call-overload]
            except (TypeError, ValueError):
                status = str(status_code)
            if len(args) == 6:
                status = f"{status} {args[5]}"
        else:
            client_addr, request_line, status = "", "", ""
        record = copy.copy(record)
        record.client_addr = client_addr
        record.request_line = request_line
        record.status_code = status
        return super().formatMessage(record)


def resolve_log_level(log_level: str | int) -> int:
    """Turn a ``--log-level`` name (any case) or a numeric level into a number.

    Raises:
        ValueError: the name is not one of ``LOG_LEVELS``.
    """
    if isinstance(log_level, int):
        return log_level
    try:
        return LOG_LEVELS[log_level.lower()]
    except KeyError:
        choices = ", ".join(LOG_LEVELS)
        raise ValueError(f"unknown log level {log_level!r}; choose one of {choices}") from None


def _load_yaml(path: str) -> Any:
    try:
        # Optional dependency, looked up by name so type checking does not require it.
        yaml = importlib.import_module("yaml")
    except ImportError as exc:
        raise ImportError(
            f"--log-config {path!r} is a YAML file, but PyYAML is not installed; "
            "install it with `pip install PyYAML`, or use a .json or .ini file"
        ) from exc
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def configure_logging(
    log_config: dict[str, Any] | str | os.PathLike[str] | None,
    *,
    log_level: str | int | None = None,
    access_log: bool = True,
    use_colors: bool | None = None,
) -> None:
    """Apply a logging configuration, then the level and access-log switches on top of it.

    Args:
        log_config: a ``logging.config.dictConfig`` dict; or the path of a ``.json`` or
            ``.yaml``/``.yml`` file holding one; or any other path, read with
            ``logging.config.fileConfig`` (the ``.ini`` format); or ``None`` to leave the
            logging setup alone. A dict is never modified.
        log_level: a ``LOG_LEVELS`` name or a number; sets ``fastws``, ``fastws.error``
            and ``fastws.access``. ``None`` keeps the configured levels.
        access_log: ``False`` silences ``fastws.access`` whatever the config says.
        use_colors: forced on or off for the ``default`` and ``access`` formatters of a
            dict config; ``None`` lets each formatter decide from its stream.

    Raises:
        ValueError: ``log_level`` is not a known name, or the configuration is invalid.
        ImportError: a YAML file was given and PyYAML is missing.
        OSError: the file cannot be read.
    """
    if isinstance(log_config, os.PathLike):
        log_config = os.fspath(log_config)
    if isinstance(log_config, dict):
        if use_colors is not None:
            log_config = copy.deepcopy(log_config)
            for name in ("default", "access"):
                formatter = log_config.get("formatters", {}).get(name)
                if isinstance(formatter, dict) and "()" in formatter:
                    formatter["use_colors"] = use_colors
        logging.config.dictConfig(log_config)
    elif isinstance(log_config, str):
        if log_config.endswith(".json"):
            with open(log_config, encoding="utf-8") as file:
                logging.config.dictConfig(json.load(file))
        elif log_config.endswith((".yaml", ".yml")):
            logging.config.dictConfig(_load_yaml(log_config))
        else:
            # fileConfig disables every logger it does not name unless told otherwise,
            # which would silence loggers the application created at import time.
            logging.config.fileConfig(log_config, disable_existing_loggers=False)

    if log_level is not None:
        level = resolve_log_level(log_level)
        for name in (LOGGER_NAME, ERROR_LOGGER_NAME, ACCESS_LOGGER_NAME):
            logging.getLogger(name).setLevel(level)
    if not access_log:
        access = logging.getLogger(ACCESS_LOGGER_NAME)
        access.handlers = []
        access.propagate = False
        # Above CRITICAL, so `isEnabledFor` is False and callers can skip building records.
        access.setLevel(logging.CRITICAL + 1)
