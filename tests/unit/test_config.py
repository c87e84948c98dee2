"""fastws.config.Config (defaults, validation, environment, logging, load(), bind_socket)
and the helpers it leans on in fastws.logging and fastws.loops."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastws import logging as fastws_logging
from fastws.config import STARTUP_FAILURE, Config, option_default, option_error
from fastws.loops import loop_name, new_event_loop
from fastws.proxy_headers import ProxyHeadersMiddleware

FASTWS_LOGGERS = ("fastws", "fastws.error", "fastws.access")

# A self-signed P-256 certificate for CN=localhost, its key, and the same key encrypted
# with the password "secret" (generated once with openssl; only loaded, never trusted).
CERT_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUadG6mLnDMNpJmADv1+WZSqJxNDgwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMTA2MTUwNVoYDzIxMjYxMDI4
MDYxNTA1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATsg1hBVVMBM+EgbsmSsoQZG4nA+bGUO8r1PawxzBOWLHN2KS0mABKH
NBT/WJmS7TK8sba2zyU4mQvzvIlg5UyDo1MwUTAdBgNVHQ4EFgQUSDJ8+iCVrwKA
awYBwYlGZ5xt3vcwHwYDVR0jBBgwFoAUSDJ8+iCVrwKAawYBwYlGZ5xt3vcwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEApLcFjvSoQUBRb6B+fxTB
Hspm3YEiMLaMW0vKnU9NA6oCIBSdIEEa/e0bvXDa+NiKrnvlf7KZqbdS5yGK0Kk1
xa2B
-----END CERTIFICATE-----
"""
KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfwoIbun+9zDAFmZW
aqXo7obQoGkXcvyrkgPqVG5zICahRANCAATsg1hBVVMBM+EgbsmSsoQZG4nA+bGU
O8r1PawxzBOWLHN2KS0mABKHNBT/WJmS7TK8sba2zyU4mQvzvIlg5UyD
-----END PRIVATE KEY-----
"""
ENCRYPTED_KEY_PEM = """\
-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAicXoxfIV5K8QICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEJkrHCmbHG0E+RjR2qoymfgEgZCa
YwgXhP4Hy8SULN3UPVnsICTzXeSfHlgjHraIacOnPyxRdc2QIAkxAPzbhYglNkuN
hgprP+ELsMJiGhs0DVSfRJNixePIZm5PWByem/yCHBmDLqpm0X8lpPHrdPIPNwov
79MWSG7EkbDeSOg3K2s/5OP1KArS/B1GAcpvuZhGUJ+ZXsaSY4nM+lXQWZp8eLc=
-----END ENCRYPTED PRIVATE KEY-----
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what a Config does to process state: loggers, sys.path and the environment."""
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    environ_before = dict(os.environ)
    modules_before = set(sys.modules)
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    yield
    root.setLevel(root_level)
    root.handlers = root_handlers
    for name in FASTWS_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        logger.disabled = False
    for key in set(os.environ) - set(environ_before):
        del os.environ[key]
    for name in set(sys.modules) - modules_before:
        if name.startswith("cfgapp_"):
            del sys.modules[name]


async def asgi3_app(scope: Any, receive: Any, send: Any) -> None:
    scope["seen_by"] = "asgi3_app"


def quiet(app: Any = asgi3_app, **kwargs: Any) -> Config:
    """A Config that leaves logging alone, so records reach pytest's caplog."""
    kwargs.setdefault("log_config", None)
    return Config(app, **kwargs)


def write_module(directory: Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def call(app: Any, scope: dict[str, Any]) -> dict[str, Any]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    async def main() -> None:
        await app(scope, receive, send)

    asyncio.run(main())
    return scope


# ------------------------------------------------------------------------------------
# defaults


def test_defaults_match_uvicorn_and_brief() -> None:
    config = quiet()
    assert config.host == "127.0.0.1"
    assert config.port == 8000
    assert config.uds is None and config.fd is None
    assert config.loop == "auto"
    assert config.ws_max_size == 16 * 1024 * 1024
    assert config.ws_max_queue == 32
    assert config.ws_ping_interval == 20.0 and config.ws_ping_timeout == 20.0
    assert config.ws_per_message_deflate is True
    assert config.ws_close_timeout == 10.0
    assert config.lifespan == "auto"
    assert config.interface == "auto"
    assert config.log_level is None and config.access_log is True and config.use_colors is None
    assert config.root_path == ""
    assert config.proxy_headers and config.server_header and config.date_header
    assert config.forwarded_allow_ips == ["127.0.0.1", "::1"]
    assert config.headers == []
    assert config.factory is False
    assert config.app_dir == "."
    assert config.workers == 1
    assert config.limit_concurrency is None and config.limit_max_requests is None
    assert config.backlog == 2048
    assert config.timeout_keep_alive == 5
    assert config.timeout_graceful_shutdown is None
    assert config.timeout_notify == 30
    assert config.timeout_handshake == 10.0
    assert config.ssl_version == ssl.PROTOCOL_TLS_SERVER
    assert config.ssl_cert_reqs == ssl.CERT_NONE
    assert config.ssl_certfile is None and config.is_ssl is False and config.ssl is None
    assert config.reload is False
    assert config.limit_request_line == 16 * 1024
    assert config.limit_request_fields == 200
    assert config.limit_request_field_size == 16 * 1024
    assert config.asgi_version == "3.0"
    assert config.loaded is False


@pytest.mark.parametrize(
    "name", ["limit_request_line", "limit_request_fields", "limit_request_field_size"]
)
def test_readme_limits_table_shows_the_config_default(name: str) -> None:
    """The default is written once, in Config; README's table must show that value."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    flag = "--" + name.replace("_", "-")
    rows = [line for line in readme.splitlines() if line.startswith(f"| `{flag} N`")]
    assert len(rows) == 1, rows
    assert rows[0].split("|")[2].strip() == str(option_default(name))


def test_default_log_config_is_the_builtin_dict() -> None:
    assert option_default("log_config") is fastws_logging.LOGGING_CONFIG


def test_option_default_reads_the_signature() -> None:
    assert option_default("port") == 8000
    assert option_default("ws_close_timeout") == 10.0
    with pytest.raises(KeyError):
        option_default("app")
    with pytest.raises(KeyError):
        option_default("no_such_option")


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Config(asgi3_app, "0.0.0.0")  # type: ignore[misc]


# ------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("port", 70000),
        ("port", -1),
        ("port", "80"),
        ("fd", -1),
        ("uds", ""),
        ("loop", "trio"),
        ("ws", "none"),
        ("http", "h2"),
        ("ws_max_size", 0),
        ("ws_max_queue", 0),
        ("ws_ping_interval", -1.0),
        ("ws_ping_timeout", "soon"),
        ("ws_close_timeout", -0.5),
        ("lifespan", "maybe"),
        ("interface", "wsgi"),
        ("log_level", "loud"),
        ("workers", 0),
        ("limit_concurrency", 0),
        ("limit_max_requests", -3),
        ("backlog", 0),
        ("timeout_keep_alive", -1),
        ("timeout_graceful_shutdown", -1),
        ("timeout_handshake", 0),
        ("ssl_cert_reqs", 7),
        ("ssl_version", "tls"),
        ("headers", [("bad name", "x")]),
        ("headers", [("x-a", "b\r\nset-cookie: x")]),
        ("headers", [("x-a",)]),
        ("headers", "x-a:b"),
        ("forwarded_allow_ips", 127),
        ("limit_request_line", 0),
        ("limit_request_fields", 0),
        ("limit_request_field_size", 0),
        ("env_file", "/nonexistent/fastws.env"),
        ("log_config", "/nonexistent/logging.json"),
        ("app_dir", None),
    ],
)
def test_invalid_value_raises_value_error_naming_option(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^invalid {name}: "):
        quiet(**{name: value})
    assert option_error(name, value) is not None


def test_app_must_be_callable_or_string() -> None:
    with pytest.raises(ValueError, match="^invalid app: "):
        Config(42, log_config=None)  # type: ignore[arg-type]


def test_bool_is_not_an_integer() -> None:
    with pytest.raises(ValueError, match="^invalid port: "):
        quiet(port=True)


def test_keyfile_without_certfile_is_rejected() -> None:
    with pytest.raises(ValueError, match="^invalid ssl_certfile: "):
        quiet(ssl_keyfile="key.pem")


def test_valid_edge_values_are_accepted() -> None:
    config = quiet(port=0, ws_ping_interval=None, ws_ping_timeout=None, log_level="TRACE")
    assert config.port == 0
    assert config.ws_ping_interval is None and config.ws_ping_timeout is None


def test_zero_ping_interval_and_timeout_mean_disabled() -> None:
    config = quiet(ws_ping_interval=0, ws_ping_timeout=0.0)
    assert config.ws_ping_interval is None
    assert config.ws_ping_timeout is None


def test_uvloop_missing_is_a_loop_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fastws.config.uvloop_available", lambda: False)
    with pytest.raises(ValueError, match="^invalid loop: .*uvloop is not installed"):
        quiet(loop="uvloop")


# ------------------------------------------------------------------------------------
# environment


def test_env_file_is_loaded_into_environ(tmp_path: Path) -> None:
    env_file = tmp_path / "fastws.env"
    env_file.write_text("FASTWS_TEST_FROM_ENV_FILE=hello\nWEB_CONCURRENCY=3\n")
    config = quiet(env_file=str(env_file))
    assert os.environ["FASTWS_TEST_FROM_ENV_FILE"] == "hello"
    # Values from the env file feed the options resolved from the environment.
    assert config.workers == 3


def test_env_file_does_not_override_existing_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTWS_TEST_PRESET", "kept")
    env_file = tmp_path / ".env"
    env_file.write_text("FASTWS_TEST_PRESET=replaced\n")
    quiet(env_file=env_file)
    assert os.environ["FASTWS_TEST_PRESET"] == "kept"


def test_workers_from_web_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert quiet().workers == 4
    assert quiet(workers=2).workers == 2


def test_invalid_web_concurrency_is_a_workers_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(ValueError, match="^invalid workers: .*WEB_CONCURRENCY"):
        quiet()


def test_forwarded_allow_ips_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.1.0.0/16")
    assert quiet().forwarded_allow_ips == ["10.0.0.1", "10.1.0.0/16"]
    # An explicit value wins over the environment.
    assert quiet(forwarded_allow_ips="*").forwarded_allow_ips == ["*"]


def test_forwarded_allow_ips_string_and_list_forms() -> None:
    assert quiet(forwarded_allow_ips="1.2.3.4,5.6.7.8").forwarded_allow_ips == [
        "1.2.3.4",
        "5.6.7.8",
    ]
    assert quiet(forwarded_allow_ips=["::1", " 10.0.0.0/8 "]).forwarded_allow_ips == [
        "::1",
        "10.0.0.0/8",
    ]


# ------------------------------------------------------------------------------------
# logging


def test_default_log_config_installs_fastws_handlers() -> None:
    Config(asgi3_app)
    assert logging.getLogger("fastws").handlers
    assert logging.getLogger("fastws").propagate is False
    assert logging.getLogger("fastws.access").handlers
    assert logging.getLogger("fastws.error").getEffectiveLevel() == logging.INFO


def test_log_level_sets_all_fastws_loggers() -> None:
    quiet(log_level="debug")
    for name in FASTWS_LOGGERS:
        assert logging.getLogger(name).level == logging.DEBUG
    quiet(log_level="trace")
    assert logging.getLogger("fastws.error").level == fastws_logging.TRACE_LOG_LEVEL == 5
    assert logging.getLevelName(5) == "TRACE"
    quiet(log_level=logging.WARNING)
    assert logging.getLogger("fastws.access").level == logging.WARNING


def test_access_log_false_silences_access_logger() -> None:
    Config(asgi3_app, access_log=False)
    access = logging.getLogger("fastws.access")
    assert access.handlers == []
    assert access.propagate is False
    assert not access.isEnabledFor(logging.CRITICAL)


def test_use_colors_reaches_formatters_without_mutating_default() -> None:
    Config(asgi3_app, use_colors=True)
    formatter = logging.getLogger("fastws").handlers[0].formatter
    assert isinstance(formatter, fastws_logging.DefaultFormatter)
    assert formatter.use_colors is True
    assert fastws_logging.LOGGING_CONFIG["formatters"]["default"]["use_colors"] is None


def test_log_config_from_json_file(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"h": {"class": "logging.NullHandler"}},
        "loggers": {"fastws.error": {"handlers": ["h"], "level": "ERROR"}},
    }
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    Config(asgi3_app, log_config=str(path))
    error_logger = logging.getLogger("fastws.error")
    assert error_logger.level == logging.ERROR
    assert isinstance(error_logger.handlers[0], logging.NullHandler)


def test_log_config_from_ini_file(tmp_path: Path) -> None:
    path = tmp_path / "log.ini"
    path.write_text(
        textwrap.dedent(
            """\
            [loggers]
            keys=root,fastws_error

            [handlers]
            keys=null

            [formatters]
            keys=

            [logger_root]
            level=WARNING
            handlers=

            [logger_fastws_error]
            level=DEBUG
            handlers=null
            qualname=fastws.error
            propagate=0

            [handler_null]
            class=NullHandler
            args=()
            """
        )
    )
    Config(asgi3_app, log_config=path)
    error_logger = logging.getLogger("fastws.error")
    assert error_logger.level == logging.DEBUG
    assert not error_logger.propagate
    assert isinstance(error_logger.handlers[0], logging.NullHandler)


def test_invalid_log_config_file_is_a_log_config_error(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    path.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="^invalid log_config: "):
        Config(asgi3_app, log_config=str(path))


def test_yaml_log_config_without_pyyaml_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.yaml"
    path.write_text("version: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` fail
    with pytest.raises(ImportError, match="PyYAML"):
        Config(asgi3_app, log_config=str(path))


def test_default_formatter_pads_level_prefix() -> None:
    formatter = fastws_logging.DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False)
    record = logging.LogRecord("fastws.error", logging.INFO, __file__, 1, "hello", None, None)
    assert formatter.format(record) == "INFO:     hello"
    record = logging.LogRecord("fastws.error", logging.WARNING, __file__, 1, "hi", None, None)
    assert formatter.format(record) == "WARNING:  hi"


def test_default_formatter_colours_level_and_uses_color_message() -> None:
    formatter = fastws_logging.DefaultFormatter("%(levelprefix)s %(message)s", use_colors=True)
    record = logging.LogRecord("fastws.error", logging.INFO, __file__, 1, "plain", None, None)
    record.color_message = "coloured"
    text = formatter.format(record)
    assert text.startswith("\x1b[32mINFO\x1b[0m:")
    assert text.endswith("coloured")


def test_access_formatter_builds_request_line_and_status() -> None:
    formatter = fastws_logging.AccessFormatter(
        '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    )
    args = ("10.0.0.1:5000", "GET", "/chat?room=1", "1.1", 101)
    msg = '%s - "%s %s HTTP/%s" %d'
    record = logging.LogRecord("fastws.access", logging.INFO, __file__, 1, msg, args, None)
    assert formatter.format(record) == (
        'INFO:     10.0.0.1:5000 - "GET /chat?room=1 HTTP/1.1" 101 Switching Protocols'
    )


# ------------------------------------------------------------------------------------
# ignored uvicorn options


def test_reload_is_a_supported_option_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    # --reload is implemented (fastws/reload.py); building the Config must not warn about it.
    caplog.set_level(logging.INFO, logger="fastws")
    config = quiet(reload=True)
    assert config.reload is True
    assert not any("--reload" in r.getMessage() for r in caplog.records)


def test_ws_implementation_choice_is_logged_as_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastws")
    quiet(ws="wsproto", http="h11")
    messages = [r.getMessage() for r in caplog.records]
    assert any("own WebSocket implementation" in m and "wsproto" in m for m in messages)
    assert any("--http h11 is ignored" in m for m in messages)


# ------------------------------------------------------------------------------------
# load()


def test_load_import_string_wraps_proxy_headers(tmp_path: Path) -> None:
    module = write_module(
        tmp_path,
        "cfgapp_plain",
        """
        async def app(scope, receive, send):
            scope["seen_by"] = "cfgapp_plain"
        """,
    )
    config = quiet(f"{module}:app", app_dir=str(tmp_path))
    config.load()
    assert config.loaded is True
    assert config.interface == "asgi3"
    assert isinstance(config.loaded_app, ProxyHeadersMiddleware)
    scope = call(config.loaded_app, {"type": "http", "client": None, "headers": []})
    assert scope["seen_by"] == "cfgapp_plain"
    assert str(tmp_path) in sys.path


def test_load_is_idempotent() -> None:
    config = quiet()
    config.load()
    first = config.loaded_app
    config.load()
    assert config.loaded_app is first


def test_load_without_proxy_headers_uses_app_directly() -> None:
    config = quiet(proxy_headers=False)
    config.load()
    assert config.loaded_app is asgi3_app


def test_proxy_middleware_gets_resolved_allow_ips() -> None:
    config = quiet(forwarded_allow_ips="10.0.0.0/8")
    config.load()
    assert isinstance(config.loaded_app, ProxyHeadersMiddleware)
    scope = call(
        config.loaded_app,
        {
            "type": "http",
            "scheme": "http",
            "client": ("10.2.3.4", 1),
            "headers": [(b"x-forwarded-for", b"203.0.113.9")],
        },
    )
    assert scope["client"] == ("203.0.113.9", 0)


def test_factory_is_called() -> None:
    def create_app() -> Any:
        return asgi3_app

    config = quiet(create_app, factory=True, proxy_headers=False)
    config.load()
    assert config.loaded_app is asgi3_app


def test_zero_argument_function_without_factory_flag_is_used_as_factory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def create_app() -> Any:
        return asgi3_app

    caplog.set_level(logging.WARNING, logger="fastws")
    config = quiet(create_app, proxy_headers=False)
    config.load()
    assert config.loaded_app is asgi3_app
    assert any("--factory" in r.getMessage() for r in caplog.records)


def test_factory_that_raises_exits_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def create_app() -> Any:
        raise RuntimeError("factory exploded")

    config = quiet(create_app, factory=True)
    with pytest.raises(SystemExit) as info:
        config.load()
    assert info.value.code == STARTUP_FAILURE
    record = next(r for r in caplog.records if r.name == "fastws.error")
    assert record.exc_info is not None and "factory exploded" in str(record.exc_info[1])


class ASGI2App:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        self.scope["seen_by"] = "asgi2"


def asgi2_function(scope: Any) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        scope["seen_by"] = "asgi2_function"

    return instance


@pytest.mark.parametrize(
    ("app", "marker"), [(ASGI2App, "asgi2"), (asgi2_function, "asgi2_function")]
)
def test_asgi2_apps_are_detected_and_adapted(app: Any, marker: str) -> None:
    config = quiet(app, proxy_headers=False)
    config.load()
    assert config.interface == "asgi2"
    assert config.asgi_version == "2.0"
    assert call(config.loaded_app, {"type": "http"})["seen_by"] == marker


class ASGI3Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["seen_by"] = "asgi3_instance"


class ASGI3Class:
    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope

    def __await__(self) -> Any:
        self.scope["seen_by"] = "asgi3_class"
        return asyncio.sleep(0).__await__()


@pytest.mark.parametrize(
    ("app", "marker"),
    [(asgi3_app, "asgi3_app"), (ASGI3Instance(), "asgi3_instance"), (ASGI3Class, "asgi3_class")],
)
def test_asgi3_apps_are_detected(app: Any, marker: str) -> None:
    config = quiet(app, proxy_headers=False)
    config.load()
    assert config.interface == "asgi3"
    assert config.asgi_version == "3.0"
    assert call(config.loaded_app, {"type": "http"})["seen_by"] == marker


def test_explicit_interface_wins_over_detection() -> None:
    config = quiet(asgi2_function, interface="asgi3", proxy_headers=False)
    config.load()
    assert config.loaded_app is asgi2_function


def test_encoded_headers_lowercase_with_server_first() -> None:
    config = quiet(headers=[("X-Frame-Options", "DENY"), ("X-Extra", "é")])
    config.load()
    assert config.encoded_headers == [
        (b"server", b"fastws"),
        (b"x-frame-options", b"DENY"),
        (b"x-extra", "é".encode("latin-1")),
    ]


def test_custom_server_header_replaces_default() -> None:
    config = quiet(headers=[("Server", "mine")])
    config.load()
    assert config.encoded_headers == [(b"server", b"mine")]


def test_no_server_header() -> None:
    config = quiet(server_header=False, headers=[("X-A", "b")])
    config.load()
    assert config.encoded_headers == [(b"x-a", b"b")]


def test_missing_module_exits_with_one_line_message(caplog: pytest.LogCaptureFixture) -> None:
    config = quiet("cfgapp_does_not_exist:app")
    with pytest.raises(SystemExit) as info:
        config.load()
    assert info.value.code == STARTUP_FAILURE
    [record] = [r for r in caplog.records if r.name == "fastws.error"]
    assert "Could not import module 'cfgapp_does_not_exist'" in record.getMessage()
    assert record.exc_info is None


@pytest.mark.parametrize("bad", ["no_colon", "cfgapp_x:"])
def test_malformed_app_string_exits(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        quiet(bad).load()
    assert info.value.code == STARTUP_FAILURE
    assert any("'<module>:<attribute>'" in r.getMessage() for r in caplog.records)


def test_missing_attribute_exits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module = write_module(tmp_path, "cfgapp_noattr", "other = 1\n")
    with pytest.raises(SystemExit):
        quiet(f"{module}:app", app_dir=str(tmp_path)).load()
    assert any(
        "Attribute 'app' not found in module 'cfgapp_noattr'" in r.getMessage()
        for r in caplog.records
    )


def test_module_raising_at_import_logs_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = write_module(tmp_path, "cfgapp_boom", "raise ZeroDivisionError('boom at import')\n")
    with pytest.raises(SystemExit) as info:
        quiet(f"{module}:app", app_dir=str(tmp_path)).load()
    assert info.value.code == STARTUP_FAILURE
    [record] = [r for r in caplog.records if r.name == "fastws.error"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)
    assert "boom at import" in caplog.text  # the formatted traceback


# ------------------------------------------------------------------------------------
# TLS


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    files = {"cert": CERT_PEM, "key": KEY_PEM, "encrypted_key": ENCRYPTED_KEY_PEM}
    paths = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(text)
        paths[name] = str(path)
    return paths


def test_ssl_context_built_on_load(tls_files: dict[str, str]) -> None:
    config = quiet(ssl_certfile=tls_files["cert"], ssl_keyfile=tls_files["key"])
    assert config.is_ssl is True
    assert config.ssl is None  # built by load(), not by the constructor
    config.load()
    assert isinstance(config.ssl, ssl.SSLContext)
    assert config.ssl.verify_mode == ssl.CERT_NONE
    assert config.ssl.protocol == ssl.PROTOCOL_TLS_SERVER


def test_ssl_encrypted_key_and_client_cert_options(tls_files: dict[str, str]) -> None:
    config = quiet(
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["encrypted_key"],
        ssl_keyfile_password="secret",
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        ssl_ca_certs=tls_files["cert"],
        ssl_ciphers="ECDHE+AESGCM",
    )
    config.load()
    assert config.ssl is not None
    assert config.ssl.verify_mode == ssl.CERT_REQUIRED


def test_ssl_wrong_password_exits(
    tls_files: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    config = quiet(
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["encrypted_key"],
        ssl_keyfile_password="wrong",
    )
    with pytest.raises(SystemExit) as info:
        config.load()
    assert info.value.code == STARTUP_FAILURE
    assert any("TLS" in r.getMessage() for r in caplog.records)


def test_ssl_missing_certificate_file_exits(tmp_path: Path) -> None:
    config = quiet(ssl_certfile=str(tmp_path / "missing.pem"))
    with pytest.raises(SystemExit):
        config.load()


# ------------------------------------------------------------------------------------
# bind_socket


def test_bind_socket_tcp() -> None:
    sock = quiet(host="127.0.0.1", port=0).bind_socket()
    try:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getsockname()[1] > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert sock.get_inheritable() is True
    finally:
        sock.close()


def test_bind_socket_ipv6() -> None:
    sock = quiet(host="::1", port=0).bind_socket()
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[0] == "::1"
    finally:
        sock.close()


def test_bind_socket_uds(tmp_path: Path) -> None:
    path = str(tmp_path / "fastws.sock")
    sock = quiet(uds=path).bind_socket()
    try:
        assert sock.family == socket.AF_UNIX
        assert sock.getsockname() == path
        assert os.stat(path).st_mode & 0o777 == 0o666
    finally:
        sock.close()


def test_bind_socket_fd_keeps_family() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as original:
        original.bind(("127.0.0.1", 0))
        sock = quiet(fd=original.fileno()).bind_socket()
        try:
            assert sock.family == socket.AF_INET
            assert sock.getsockname() == original.getsockname()
            assert sock.fileno() != original.fileno()
        finally:
            sock.close()


def test_bind_socket_failure_exits(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            quiet(host="127.0.0.1", port=port).bind_socket()
    assert info.value.code == STARTUP_FAILURE
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------
# loops


def test_new_event_loop_asyncio() -> None:
    loop = new_event_loop("asyncio")
    try:
        assert type(loop).__module__.startswith("asyncio")
        assert loop_name(loop) == "asyncio"
    finally:
        loop.close()


def test_new_event_loop_uvloop_and_auto() -> None:
    import uvloop  # a declared dependency of fastws on CPython/POSIX

    for name in ("uvloop", "auto"):
        loop = new_event_loop(name)
        try:
            assert isinstance(loop, uvloop.Loop)
            assert loop_name(loop) == "uvloop"
        finally:
            loop.close()


def test_new_event_loop_uvloop_missing_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        new_event_loop("uvloop")
    loop = new_event_loop("auto")
    try:
        assert loop_name(loop) == "asyncio"
    finally:
        loop.close()


def test_new_event_loop_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown loop"):
        new_event_loop("trio")
