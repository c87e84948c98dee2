"""fastws.cli: flags reach Config with the right types, bad values are usage errors naming
the flag, --version, parity with uvicorn's flag names, and `python -m fastws` failures."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from uvicorn.main import main as uvicorn_main  # a declared test dependency

from fastws import __version__, cli
from fastws.config import Config, option_default

FASTWS_LOGGERS = ("fastws", "fastws.error", "fastws.access")
Calls = list[tuple[Any, dict[str, Any]]]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what the CLI and Config do to process state."""
    for name in list(os.environ):
        if name.startswith(("FASTWS_", "UVICORN_")) and name not in (
            "FASTWS_NO_EXTENSIONS",
            "FASTWS_REQUIRE_EXTENSIONS",
        ):
            monkeypatch.delenv(name)
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    environ_before = dict(os.environ)
    yield
    for name in FASTWS_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for key in set(os.environ) - set(environ_before):
        del os.environ[key]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Replace the server: record what `run` would have been called with."""
    recorded: Calls = []

    def fake_run(app: Any, **options: Any) -> None:
        recorded.append((app, options))

    monkeypatch.setattr(cli, "run", fake_run)
    return recorded


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, args, env=env)


def only_call(result: Result, calls: Calls) -> tuple[Any, dict[str, Any]]:
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    return calls[0]


# ------------------------------------------------------------------------------------
# defaults and plumbing


def test_defaults_come_from_config(calls: Calls) -> None:
    app, options = only_call(invoke(["main:app"]), calls)
    assert app == "main:app"
    # The built-in logging config applies when --log-config is not given.
    assert "log_config" not in options
    for name, value in options.items():
        if name in ("reload_dirs", "reload_includes", "reload_excludes", "headers"):
            assert value is None
        else:
            assert value == option_default(name), name


def test_every_flag_reaches_config_with_the_right_type(calls: Calls, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("FASTWS_TEST_CLI_ENV=1\n")
    log_config = tmp_path / "log.json"
    log_config.write_text(json.dumps({"version": 1, "disable_existing_loggers": False}))
    reload_dir = tmp_path / "src"
    reload_dir.mkdir()
    args = [
        "pkg.main:app",
        "--host", "0.0.0.0",
        "--port", "9001",
        "--loop", "asyncio",
        "--ws-max-size", "1024",
        "--ws-max-queue", "7",
        "--ws-ping-interval", "2.5",
        "--ws-ping-timeout", "3.5",
        "--ws-per-message-deflate", "false",
        "--ws-close-timeout", "1.5",
        "--lifespan", "off",
        "--interface", "asgi2",
        "--env-file", str(env_file),
        "--log-config", str(log_config),
        "--log-level", "debug",
        "--no-access-log",
        "--use-colors",
        "--no-proxy-headers",
        "--no-server-header",
        "--no-date-header",
        "--forwarded-allow-ips", "10.0.0.1,10.0.1.0/24",
        "--root-path", "/api",
        "--limit-concurrency", "50",
        "--limit-max-requests", "1000",
        "--limit-max-requests-jitter", "10",
        "--backlog", "128",
        "--timeout-keep-alive", "7",
        "--timeout-graceful-shutdown", "9",
        "--timeout-worker-healthcheck", "11",
        "--timeout-handshake", "2.5",
        "--ssl-keyfile", "key.pem",
        "--ssl-certfile", "cert.pem",
        "--ssl-keyfile-password", "pw",
        "--ssl-version", "17",
        "--ssl-cert-reqs", "2",
        "--ssl-ca-certs", "ca.pem",
        "--ssl-ciphers", "ECDHE+AESGCM",
        "--header", "X-One: 1",
        "--header", "X-Two:two:parts",
        "--workers", "3",
        "--reload",
        "--reload-dir", str(reload_dir),
        "--factory",
        "--app-dir", str(tmp_path),
        "--limit-request-line", "4096",
        "--limit-request-fields", "50",
        "--limit-request-field-size", "2048",
        "--http", "httptools",
        "--ws", "websockets",
    ]  # fmt: skip
    app, options = only_call(invoke(args), calls)
    assert sys.path[0] == str(tmp_path)

    config = Config(app, **options)
    expected: dict[str, Any] = {
        "app": "pkg.main:app",
        "host": "0.0.0.0",
        "port": 9001,
        "loop": "asyncio",
        "ws_max_size": 1024,
        "ws_max_queue": 7,
        "ws_ping_interval": 2.5,
        "ws_ping_timeout": 3.5,
        "ws_per_message_deflate": False,
        "ws_close_timeout": 1.5,
        "lifespan": "off",
        "interface": "asgi2",
        "env_file": str(env_file),
        "log_config": str(log_config),
        "log_level": "debug",
        "access_log": False,
        "use_colors": True,
        "proxy_headers": False,
        "server_header": False,
        "date_header": False,
        "forwarded_allow_ips": ["10.0.0.1", "10.0.1.0/24"],
        "root_path": "/api",
        "limit_concurrency": 50,
        "limit_max_requests": 1000,
        "limit_max_requests_jitter": 10,
        "backlog": 128,
        "timeout_keep_alive": 7,
        "timeout_graceful_shutdown": 9,
        "timeout_worker_healthcheck": 11,
        "timeout_handshake": 2.5,
        "ssl_keyfile": "key.pem",
        "ssl_certfile": "cert.pem",
        "ssl_keyfile_password": "pw",
        "ssl_version": 17,
        "ssl_cert_reqs": 2,
        "ssl_ca_certs": "ca.pem",
        "ssl_ciphers": "ECDHE+AESGCM",
        "headers": [("X-One", "1"), ("X-Two", "two:parts")],
        "workers": 3,
        "reload": True,
        "reload_dirs": [str(reload_dir)],
        "factory": True,
        "app_dir": str(tmp_path),
        "limit_request_line": 4096,
        "limit_request_fields": 50,
        "limit_request_field_size": 2048,
        "http": "httptools",
        "ws": "websockets",
    }
    for name, value in expected.items():
        actual = getattr(config, name)
        assert actual == value, name
        assert type(actual) is type(value), name
    assert config.is_ssl is True
    assert os.environ["FASTWS_TEST_CLI_ENV"] == "1"
    assert logging.getLogger("fastws.error").level == logging.DEBUG


def test_options_from_environment(calls: Calls) -> None:
    env = {"FASTWS_PORT": "9100", "UVICORN_HOST": "0.0.0.0", "UVICORN_PORT": "9200"}
    app, options = only_call(invoke([], env={**env, "UVICORN_APP": "env:app"}), calls)
    assert app == "env:app"
    assert options["port"] == 9100  # FASTWS_ wins over UVICORN_
    assert options["host"] == "0.0.0.0"


def test_app_dir_goes_first_on_sys_path(calls: Calls, tmp_path: Path) -> None:
    only_call(invoke(["main:app", "--app-dir", str(tmp_path)]), calls)
    assert sys.path[0] == str(tmp_path)


def test_use_colors_unset_is_none(calls: Calls) -> None:
    assert invoke(["main:app"]).exit_code == 0
    assert invoke(["main:app", "--no-use-colors"]).exit_code == 0
    assert [options["use_colors"] for _, options in calls] == [None, False]


# ------------------------------------------------------------------------------------
# usage errors


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--port", "abc"),
        ("--port", "70000"),
        ("--fd", "-1"),
        ("--uds", ""),
        ("--loop", "zuvloop"),
        ("--http", "bogus"),
        ("--ws", "none"),
        ("--ws", "bogus"),
        ("--interface", "wsgi"),
        ("--lifespan", "maybe"),
        ("--log-level", "loud"),
        ("--ws-max-size", "0"),
        ("--ws-max-queue", "0"),
        ("--ws-ping-interval", "-1"),
        ("--ws-ping-timeout", "soon"),
        ("--ws-close-timeout", "-1"),
        ("--ws-per-message-deflate", "maybe"),
        ("--workers", "0"),
        ("--backlog", "0"),
        ("--limit-concurrency", "0"),
        ("--limit-max-requests", "0"),
        ("--timeout-keep-alive", "-1"),
        ("--timeout-handshake", "0"),
        ("--ssl-cert-reqs", "9"),
        ("--limit-request-line", "0"),
        ("--limit-request-fields", "-1"),
        ("--limit-request-field-size", "0"),
        ("--header", "no-colon"),
        ("--header", "bad name:x"),
        ("--header", "X-A:\x01ok\rbad"),
        ("--env-file", "/nonexistent/fastws.env"),
        ("--log-config", "/nonexistent/log.json"),
        ("--reload-dir", "/nonexistent/dir"),
    ],
)
def test_bad_value_is_usage_error_naming_the_flag(calls: Calls, flag: str, value: str) -> None:
    result = invoke(["main:app", flag, value])
    assert result.exit_code == 2, result.output
    assert f"'{flag}'" in result.output
    assert calls == []


def test_keyfile_without_certfile_is_usage_error(calls: Calls) -> None:
    result = invoke(["main:app", "--ssl-keyfile", "key.pem"])
    assert result.exit_code == 2
    assert "'--ssl-certfile'" in result.output


def test_missing_app_is_usage_error(calls: Calls) -> None:
    result = invoke([])
    assert result.exit_code == 2
    assert "APP" in result.output


# ------------------------------------------------------------------------------------
# --version and --help


def test_version_names_codec_and_python(calls: Calls) -> None:
    from fastws.ws.frames import IMPLEMENTATION

    result = invoke(["--version"])
    assert result.exit_code == 0, result.output
    python = f"{platform.python_implementation()} {platform.python_version()}"
    assert result.output == (
        f"fastws {__version__} (codec: {IMPLEMENTATION}; {python} on {platform.system()})\n"
    )
    assert calls == []


def test_help_marks_ignored_flags() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    assert "Usage: fastws [OPTIONS] APP" in result.output
    assert "ignored" in result.output


# ------------------------------------------------------------------------------------
# uvicorn parity


def _uvicorn_options() -> list[click.Option]:
    return [p for p in uvicorn_main.params if isinstance(p, click.Option)]


def _fastws_flags() -> set[str]:
    flags: set[str] = set()
    for param in cli.main.params:
        flags.update(param.opts)
        flags.update(param.secondary_opts)
    return flags


def test_every_uvicorn_flag_name_exists() -> None:
    fastws_flags = _fastws_flags()
    missing = [
        flag
        for option in _uvicorn_options()
        for flag in (*option.opts, *option.secondary_opts)
        if flag not in fastws_flags
    ]
    assert missing == []


def test_every_uvicorn_flag_is_accepted_with_a_uvicorn_value(calls: Calls, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("")
    log_config = tmp_path / "log.json"
    log_config.write_text(json.dumps({"version": 1, "disable_existing_loggers": False}))
    samples = {
        "reload_dirs": str(tmp_path),
        "env_file": str(env_file),
        "log_config": str(log_config),
        "headers": "X-A:b",
        "log_level": "info",
    }
    failures = []
    for option in _uvicorn_options():
        flag = option.opts[0]
        if flag == "--version":
            continue  # eager; covered by test_version_names_codec_and_python
        if option.is_flag:
            args = [flag]
            if option.secondary_opts:
                args += [option.secondary_opts[0]]
        else:
            name = option.name or ""
            if name in samples:
                value = samples[name]
            elif option.default is not None and not callable(option.default):
                value = str(option.default)  # uvicorn's own default is a uvicorn value
            else:
                value = {click.INT: "1", click.FLOAT: "1.5", click.BOOL: "true"}.get(
                    option.type, "x"
                )
            args = [flag, value]
            if flag == "--ssl-keyfile":
                args += ["--ssl-certfile", "x"]  # a key alone is an error (uvicorn asserts)
        result = invoke(["main:app", *args])
        if result.exit_code != 0:
            failures.append((args, result.output))
    assert failures == []


# ------------------------------------------------------------------------------------
# python -m fastws, for real


def run_fastws(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTWS_", "UVICORN_"))}
    for name in ("FASTWS_NO_EXTENSIONS", "FASTWS_REQUIRE_EXTENSIONS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return subprocess.run(
        [sys.executable, "-m", "fastws", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(90)
def test_module_not_found_exits_non_zero_naming_it(tmp_path: Path) -> None:
    proc = run_fastws(["fastws_nonexistent_module:app", "--port", "0"], tmp_path)
    assert proc.returncode != 0
    assert "fastws_nonexistent_module" in proc.stderr


@pytest.mark.timeout(90)
def test_module_raising_at_import_prints_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text(
        textwrap.dedent(
            """\
            def helper():
                raise LookupError("broken at import time")

            helper()
            """
        )
    )
    proc = run_fastws(["broken_app:app", "--port", "0"], tmp_path)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "broken_app.py" in proc.stderr
    assert "LookupError: broken at import time" in proc.stderr
