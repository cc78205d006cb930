"""Settings from flags, the environment (OSMIUM_*, WEB_CONCURRENCY, PORT, --env-file) and config
files, in that order; `osmium config` showing each with its source; the flags a uvicorn user
types; whole option names only; `osmium module:app`; --help with every default."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from osmium.cli import build_parser
from tests.conftest import TLSFiles
from tests.integration.support import REPO_ROOT, h2c_client
from tests.integration.test_cli import assert_one_line_error
from tests.server_process import running_server

#: Variables the machine running the tests may have set that would change the defaults.
AMBIENT = ("PORT", "WEB_CONCURRENCY")


def osmium(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m osmium *args` with `env` on top of an environment without settings of its own."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OSMIUM_") and key not in AMBIENT
    }
    clean["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "osmium", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd or REPO_ROOT,
        env={**clean, **env},
        check=False,
    )


def shown(*args: str, cwd: Path | None = None, **env: str) -> dict[str, tuple[str, str]]:
    """`osmium config`'s lines as name -> (value, source); the output is TOML itself."""
    result = osmium("config", *args, cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    tomllib.loads(result.stdout)
    settings = {}
    for line in result.stdout.splitlines():
        if line.startswith(("#", "[")):
            continue
        name, _, rest = line.partition(" = ")
        value, _, source = rest.rpartition("  # ")
        settings[name] = (value, source)
    return settings


def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text("[server]\nworkers = 2\nbacklog = 64\n")
    file = f"file {config}"
    assert shown("--config", str(config))["workers"] == ("2", file)
    assert shown("--config", str(config), OSMIUM_WORKERS="3")["workers"] == ("3", "OSMIUM_WORKERS")
    flagged = shown("--config", str(config), "--workers", "4", OSMIUM_WORKERS="3")
    assert flagged["workers"] == ("4", "--workers")
    assert flagged["backlog"] == ("64", file) and flagged["graceful_timeout"] == ("30.0", "default")
    # The file itself may come from the environment.
    assert shown(OSMIUM_CONFIG=str(config))["workers"] == ("2", file)


def test_platform_variables_rank_below_osmium_ones() -> None:
    platform = shown(WEB_CONCURRENCY="5", PORT="9000")
    assert platform["workers"] == ("5", "WEB_CONCURRENCY")
    assert platform["bind"] == ('["0.0.0.0:9000"]', "PORT")
    ours = shown(WEB_CONCURRENCY="5", PORT="9000", OSMIUM_WORKERS="2", OSMIUM_BIND="[::1]:81")
    assert ours["workers"] == ("2", "OSMIUM_WORKERS") and ours["bind"][0] == '["[::1]:81"]'


def test_environment_values_of_every_type() -> None:
    settings = shown(
        OSMIUM_PROXY_HEADERS="yes",
        OSMIUM_KEEP_ALIVE_TIMEOUT="7.5",
        OSMIUM_BIND='["127.0.0.1:8001", "unix:/tmp/osmium-test.sock"]',
        OSMIUM_HEADERS="x-team: core, platform",
        OSMIUM_ACCESS_LOG="0",
        OSMIUM_MAX_CONCURRENT_STREAMS="50",
    )
    assert settings["proxy_headers"][0] == "true" and settings["access_log"][0] == "false"
    assert settings["keep_alive_timeout"][0] == "7.5"
    assert settings["bind"][0] == '["127.0.0.1:8001", "unix:/tmp/osmium-test.sock"]'
    assert settings["headers"][0] == '["x-team:core, platform"]'
    assert settings["max_concurrent_streams"] == ("50", "OSMIUM_MAX_CONCURRENT_STREAMS")


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"OSMIUM_WORKERS": "many"}, ("OSMIUM_WORKERS='many'", "expected a int")),
        ({"OSMIUM_PROXY_HEADERS": "maybe"}, ("OSMIUM_PROXY_HEADERS", "true or false")),
        ({"OSMIUM_WORKRES": "2"}, ("OSMIUM_WORKRES is not a setting", "OSMIUM_WORKERS")),
        ({"OSMIUM_SNI": "example.org"}, ("OSMIUM_SNI", "TOML inline table")),
        ({"PORT": "http"}, ("PORT='http'",)),
        ({"OSMIUM_HTTP": "3"}, ("http must be one of",)),
    ],
    ids=["not-a-number", "not-a-bool", "typo", "not-a-table", "bad-port", "bad-choice"],
)
def test_bad_environment_values_are_one_line_errors(
    env: dict[str, str], fragments: tuple[str, ...]
) -> None:
    assert_one_line_error(osmium("serve", **env), *fragments)


def test_secrets_are_masked() -> None:
    result = osmium("config", "--admin-token", "s3cret-token", OSMIUM_KEYFILE_PASSWORD="hunter2")
    assert result.returncode == 0, result.stderr
    assert "s3cret-token" not in result.stdout and "hunter2" not in result.stdout
    assert 'admin_token = "***"  # --admin-token' in result.stdout
    assert 'keyfile_password = "***"  # OSMIUM_KEYFILE_PASSWORD' in result.stdout


def test_settings_from_the_environment_reach_the_wire() -> None:
    env = {"OSMIUM_HEADERS": "x-from: environment", "OSMIUM_SERVER_HEADER": "false"}
    with running_server(env=env) as server, h2c_client(server) as client:
        response = client.get("/")
    assert response.headers["x-from"] == "environment" and "server" not in response.headers


def test_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("OSMIUM_WORKERS=2\nOSMIUM_BACKLOG=128\nexport GREETING='hello from .env'\n")
    settings = shown("--env-file", str(env_file), OSMIUM_BACKLOG="256")
    assert settings["workers"] == ("2", "OSMIUM_WORKERS")
    assert settings["backlog"] == ("256", "OSMIUM_BACKLOG")  # what is already set wins
    (tmp_path / "greeter.py").write_text(
        "import os\n\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': os.environ['GREETING'].encode()})\n"
    )
    env = {"PYTHONPATH": str(REPO_ROOT)}
    args = ("--env-file", str(env_file))
    with (
        running_server(*args, app="greeter:app", cwd=str(tmp_path), env=env) as server,
        h2c_client(server) as client,
    ):
        assert client.get("/").text == "hello from .env"
    assert_one_line_error(osmium("serve", "--env-file", str(tmp_path / "none.env")), "not found")


def test_config_file_paths_are_relative_to_the_file(tls_files: TLSFiles, tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(tls_files.certfile, etc / "cert.pem")
    shutil.copy(tls_files.keyfile, etc / "key.pem")
    config = etc / "osmium.toml"
    config.write_text('certfile = "cert.pem"\nkeyfile = "key.pem"\nbind = ["unix:osmium.sock"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = shown("--config", str(config), cwd=elsewhere)
    assert settings["certfile"][0] == f'"{etc / "cert.pem"}"'
    assert settings["bind"][0] == f'["unix:{etc / "osmium.sock"}"]'
    args = ("--config", str(config), "--bind", "127.0.0.1:0")
    with running_server(*args, cwd=str(elsewhere), env={"PYTHONPATH": str(REPO_ROOT)}) as server:
        verify = ssl.create_default_context(cafile=str(tls_files.ca))
        with httpx.Client(verify=verify, http2=True, timeout=10) as client:
            response = client.get(f"{server.url}/")
    assert server.url.startswith("https://") and response.http_version == "HTTP/2"


def test_uvicorn_flags() -> None:
    settings = shown(
        "--host", "0.0.0.0", "--port", "9001", "--timeout-keep-alive", "5",
        "--no-access-log", "--ssl-ciphers", "ECDHE+AESGCM",
    )  # fmt: skip
    assert settings["bind"] == ('["0.0.0.0:9001"]', "--host/--port")
    assert settings["keep_alive_timeout"] == ("5.0", "--keep-alive-timeout")
    assert settings["access_log"] == ("false", "--access-log")
    assert settings["tls_ciphers"][0] == '"ECDHE+AESGCM"'
    assert shown("--host", "::1")["bind"][0] == '["[::1]:8000"]'
    assert_one_line_error(osmium("serve", "--host", "::1", "--bind", "[::1]:0"), "give one of them")


def test_ssl_aliases_serve_tls(tls_files: TLSFiles) -> None:
    args = ("--ssl-certfile", str(tls_files.certfile), "--ssl-keyfile", str(tls_files.keyfile))
    verify = ssl.create_default_context(cafile=str(tls_files.ca))
    with (
        running_server("--host", "127.0.0.1", "--port", "0", *args) as server,
        httpx.Client(verify=verify, http2=True, timeout=10) as client,
    ):
        assert client.get(f"{server.url}/").status_code == 200
    assert server.url.startswith("https://127.0.0.1:")


def test_serve_is_implied() -> None:
    app = "tests.integration.apps.asgi_apps:app"
    with running_server(command="", app=app) as server, h2c_client(server) as client:
        assert client.get("/scope").json()["path"] == "/scope"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("serve", "--keep-alive", "5"), ("--keep-alive;", "did you mean --", "keep-alive")),
        (("serve", "--bnd", "127.0.0.1:0"), ("did you mean --bind?",)),
        (("--wrokers", "2"), ("did you mean --workers?",)),
        (("serve", "--header-time", "3"), ("did you mean --header-timeout?",)),
    ],
    ids=["prefix", "typo", "typo-serve-implied", "prefix-of-another"],
)
def test_options_are_never_abbreviated(args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    line = assert_one_line_error(osmium(*args), *fragments)
    assert line.endswith("(see osmium serve --help)") and line.count("osmium") == 2


def test_help_shows_every_flag_with_a_meaning_and_its_default() -> None:
    result = osmium("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for group in ("the app:", "listening:", "TLS:", "workers:", "logging (README: Logs):"):
        assert group in result.stdout
    for expected in (
        "--workers N|auto worker processes; auto: one per CPU (default: 1)",
        "--bind ADDRESS HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (repeatable) (default: "
        "127.0.0.1:8000)",
        "--access-log, --no-access-log one line per request (default: on)",
        "--max-concurrent-streams N SETTINGS_MAX_CONCURRENT_STREAMS (default: 100)",
        "--certfile FILE, --ssl-certfile FILE PEM certificate chain: serve TLS (default: none)",
    ):
        assert expected in text, expected
    _, commands = build_parser()
    for action in commands["serve"]._actions:
        assert action.help, action.option_strings
        if action.dest not in ("help", "config", "fd"):
            assert "default" in action.help, action.option_strings
