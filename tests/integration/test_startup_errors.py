"""Start-up failures say what failed and where: lifespan errors, broken imports, app factories."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.apps.startup_apps import (
    FACTORY_BODY,
    FACTORY_ERROR,
    SHUTDOWN_ERROR,
    STARLETTE_STARTUP_ERROR,
    STARTUP_ERROR,
)
from tests.integration.support import REPO_ROOT, h2c_client, run_osmium
from tests.server_process import running_server

APPS = "tests.integration.apps"
STARTUP_APPS = f"{APPS}.startup_apps"
ERROR_PREFIX = "osmium: error:"
NOT_SUPPORTED = "lifespan not supported"


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return run_osmium("serve", *args, "--bind", "127.0.0.1:0")


def details(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def frame_line(path: Path, text: str) -> str:
    """How a traceback names the line of `path` that contains `text`."""
    number = next(
        index for index, line in enumerate(path.read_text().splitlines(), 1) if text in line
    )
    return f'File "{path}", line {number}'


def assert_app_error(result: subprocess.CompletedProcess[str], *fragments: str) -> list[str]:
    """Exit 2; one `osmium: error:` line, then only the app's frames: none of osmium's own."""
    detail = details(result)
    assert result.returncode == 2, detail
    assert result.stdout == "", detail
    first, *frames = result.stderr.splitlines()
    assert first.startswith(ERROR_PREFIX), detail
    for fragment in fragments:
        assert fragment in first, detail
    assert all(line.startswith("  ") for line in frames), detail
    for internal in ("Traceback", "importlib", "/osmium/"):
        assert internal not in result.stderr, detail
    return frames


# -- lifespan --------------------------------------------------------------------------------------


def test_lifespan_startup_that_raises_stops_the_server_with_its_traceback() -> None:
    result = serve(f"{STARTUP_APPS}:startup_raises")
    output = details(result)
    assert result.returncode == 3, output
    assert result.stderr.splitlines()[-1] == (
        f"{ERROR_PREFIX} application startup failed: RuntimeError: {STARTUP_ERROR}"
    )
    assert "osmium.error: the app raised during lifespan.startup" in result.stderr
    apps_file = REPO_ROOT / "tests/integration/apps/startup_apps.py"
    assert frame_line(apps_file, "raise RuntimeError(STARTUP_ERROR)") in result.stderr, output
    assert NOT_SUPPORTED not in output
    assert "listening on" not in output


def test_starlette_startup_failure_is_reported_once() -> None:
    """Starlette sends lifespan.startup.failed with its traceback, then raises the error again."""
    result = serve(f"{STARTUP_APPS}:starlette_startup_raises")
    output = details(result)
    assert result.returncode == 3, output
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert errors == [
        f"{ERROR_PREFIX} application startup failed: Traceback (most recent call last):"
    ]
    assert result.stderr.count(STARLETTE_STARTUP_ERROR) == 1, output
    assert "the app raised" not in output
    assert NOT_SUPPORTED not in output


def test_lifespan_shutdown_that_raises_is_logged_with_its_traceback() -> None:
    with running_server(app=f"{STARTUP_APPS}:shutdown_raises") as server:
        with h2c_client(server) as client:
            assert client.get("/").status_code == 200
        assert server.stop() == 0, server.output
        server.wait_for_line(
            re.escape(f"application shutdown failed: RuntimeError: {SHUTDOWN_ERROR}")
        )
    apps_file = REPO_ROOT / "tests/integration/apps/startup_apps.py"
    assert "osmium.error: the app raised during lifespan.shutdown" in server.output
    assert frame_line(apps_file, "raise RuntimeError(SHUTDOWN_ERROR)") in server.output
    assert NOT_SUPPORTED not in server.output


def test_app_without_lifespan_gets_one_info_line_and_is_served() -> None:
    with running_server(app=f"{APPS}.asgi_apps:no_lifespan_app") as server:
        with h2c_client(server) as client:
            assert client.get("/").status_code == 200
        assert server.stop() == 0
        [line] = [line for line in server.lines if NOT_SUPPORTED in line]
    assert "INFO osmium.error: lifespan not supported by the app (ValueError: " in line
    assert "Traceback" not in server.output


def test_lifespan_on_refuses_an_app_without_lifespan() -> None:
    result = serve(f"{APPS}.asgi_apps:no_lifespan_app", "--lifespan", "on")
    assert result.returncode == 3, details(result)
    assert result.stderr.splitlines()[-1] == (
        f"{ERROR_PREFIX} application startup failed: "
        "the app does not speak the lifespan protocol (--lifespan on)"
    )


def test_lifespan_off_never_starts_it() -> None:
    # startup_raises would stop the server at startup: with lifespan off it is only served.
    with running_server("--lifespan", "off", app=f"{STARTUP_APPS}:startup_raises") as server:
        with h2c_client(server) as client:
            assert client.get("/").status_code == 200
        assert server.stop() == 0
    assert "lifespan" not in server.output


# -- imports ---------------------------------------------------------------------------------------


def test_missing_dependency_of_the_app_shows_where_it_is_imported() -> None:
    result = serve(f"{APPS}.missing_dependency.main:app")
    frames = assert_app_error(
        result, "ModuleNotFoundError: No module named 'psycopg_missing_for_osmium_tests'"
    )
    package = REPO_ROOT / "tests/integration/apps/missing_dependency"
    main = frame_line(package / "main.py", "import database")
    database = frame_line(package / "database.py", "import psycopg_missing_for_osmium_tests")
    assert [line.strip() for line in frames if "File" in line] == [
        f"{main}, in <module>",
        f"{database}, in <module>",
    ], details(result)


def test_module_that_raises_while_importing_shows_the_line() -> None:
    result = serve(f"{APPS}.broken_app:app")
    frames = assert_app_error(result, "RuntimeError: broken on purpose")
    broken_app = REPO_ROOT / "tests/integration/apps/broken_app.py"
    assert f"  {frame_line(broken_app, 'raise RuntimeError')}, in <module>" in frames


def test_missing_app_module_in_an_existing_package_is_one_line() -> None:
    result = serve(f"{APPS}.no_such_module:app")
    frames = assert_app_error(result, f"no module named '{APPS}.no_such_module'")
    assert frames == []


# -- app factories ---------------------------------------------------------------------------------


def test_app_factory_without_factory_flag_is_refused() -> None:
    result = serve(f"{STARTUP_APPS}:create_app")
    frames = assert_app_error(
        result, f"app '{STARTUP_APPS}:create_app' looks like an app factory: use --factory"
    )
    assert frames == []


@pytest.mark.parametrize("how", ["flag", "config-file"])
def test_factory_serves_the_app_it_returns(how: str, tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text("factory = true\n")
    args = ("--factory",) if how == "flag" else ("--config", str(config))
    with running_server(*args, app=f"{STARTUP_APPS}:create_app") as server:
        with h2c_client(server) as client:
            response = client.get("/")
        assert response.status_code == 200
        assert response.content == FACTORY_BODY
        assert server.stop() == 0


def test_factory_that_raises_shows_its_frames() -> None:
    result = serve(f"{STARTUP_APPS}:failing_factory", "--factory")
    frames = assert_app_error(
        result,
        f"app factory '{STARTUP_APPS}:failing_factory' raised LookupError: {FACTORY_ERROR}",
    )
    apps_file = REPO_ROOT / "tests/integration/apps/startup_apps.py"
    assert f"  {frame_line(apps_file, 'raise LookupError')}, in failing_factory" in frames


def test_factory_that_returns_no_app_is_one_line() -> None:
    result = serve(f"{STARTUP_APPS}:factory_of_nothing", "--factory")
    frames = assert_app_error(result, "returned NoneType, not a callable ASGI app")
    assert frames == []
