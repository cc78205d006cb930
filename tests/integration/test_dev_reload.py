"""`--reload`: a saved Python file under the watched directories reloads the workers, as HUP does.

Each test serves an app module from its own temporary directory and edits it there.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from osmium.reloader import WATCHFILES_MISSING
from tests.integration.support import REPO_ROOT, h2c_client, run_osmium, wait_until
from tests.server_process import ServerProcess, running_server

APP = """\
from version import VERSION

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": VERSION.encode()})
"""
#: Seconds for a reload to be logged, or done (every worker replaced).
RELOAD_DEADLINE = 15.0
RELOADING = re.compile(r"reloading: (.*) changed; replacing")


def write_version(directory: Path, version: str) -> None:
    (directory / "version.py").write_text(f"VERSION = {version!r}\n")


@contextmanager
def dev_server(directory: Path, *args: str, library: Path | None = None) -> Iterator[ServerProcess]:
    """`osmium serve app:app --reload *args` in `directory`, serving version v1 from the
    version module in `library` (on the path; default: `directory` itself)."""
    (directory / "app.py").write_text(APP)
    write_version(library or directory, "v1")
    env = {
        # osmium importable as if installed
        "PYTHONPATH": os.pathsep.join(str(path) for path in (REPO_ROOT, library) if path),
        # Bytecode is cached, as on a developer's machine: a same-size edit must still be seen.
        "PYTHONDONTWRITEBYTECODE": "",
    }
    with running_server(
        "--reload", *args, app="app:app", cwd=str(directory), env=env, new_session=True
    ) as server:
        yield server


def served(server: ServerProcess) -> str:
    """The version a new connection gets."""
    with h2c_client(server) as client:
        return client.get("/").text


def reloads(server: ServerProcess) -> list[str]:
    """What each `reloading` line said had changed."""
    return RELOADING.findall(server.output)


def wait_for_every_worker_replaced(server: ServerProcess, old: set[int], version: str) -> None:
    wait_until(lambda: not old & set(server.worker_pids()), RELOAD_DEADLINE, "workers replaced")
    assert {served(server) for _ in range(4)} == {version}


def test_saved_files_reload_every_worker_once(tmp_path: Path) -> None:
    with dev_server(tmp_path, "--workers", "2") as server:
        first_workers = set(server.worker_pids())
        assert served(server) == "v1"
        write_version(tmp_path, "v2")  # the same size: only the bytecode's mtime could tell
        (tmp_path / "models.py").write_text("MODELS = ()\n")
        server.wait_for_line(RELOADING.pattern, RELOAD_DEADLINE)
        wait_for_every_worker_replaced(server, first_workers, "v2")
        assert reloads(server) == ["models.py, version.py"], server.output
        assert len(server.worker_pids()) == 2


def test_only_python_sources_reload(tmp_path: Path) -> None:
    ignored = [
        "notes.txt",
        ".#version.py",  # an editor's lock file
        "__pycache__/cached.py",
        ".git/hook.py",
        ".nox/tests/lib/python3.11/site-packages/dependency.py",
        "venv/lib/python3.11/site-packages/dependency.py",
    ]
    with dev_server(tmp_path) as server:
        first_workers = set(server.worker_pids())
        for name in ignored:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("VERSION = 'ignored'\n")
        # Changes are seen in order: any of the above reloading would come first, or with it.
        write_version(tmp_path, "v2")
        server.wait_for_line(RELOADING.pattern, RELOAD_DEADLINE)
        wait_for_every_worker_replaced(server, first_workers, "v2")
        assert reloads(server) == ["version.py"], server.output


def test_a_syntax_error_keeps_the_old_code_serving_until_it_is_fixed(tmp_path: Path) -> None:
    with dev_server(tmp_path) as server:
        first_workers = set(server.worker_pids())
        with (tmp_path / "version.py").open("a") as version:
            version.write("def broken(:\n")
        error = server.wait_for_line(r"ERROR osmium: reload abandoned.*", RELOAD_DEADLINE)[0]
        assert "SyntaxError: invalid syntax (version.py, line 2)" in error
        assert served(server) == "v1"
        wait_until(lambda: set(server.worker_pids()) == first_workers, 5, "failed worker reaped")
        assert len(re.findall(r" ERROR ", server.output)) == 1, server.output

        write_version(tmp_path, "v2")
        wait_until(lambda: len(reloads(server)) == 2, RELOAD_DEADLINE, "the second reload")
        wait_for_every_worker_replaced(server, first_workers, "v2")
        assert reloads(server) == ["version.py", "version.py"], server.output


def test_reload_dir_watches_that_directory_only(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    with dev_server(tmp_path, "--reload-dir", "lib", library=library) as server:
        first_workers = set(server.worker_pids())
        assert served(server) == "v1"
        # Changes are seen in order: app.py reloading would come first, or name it.
        (tmp_path / "app.py").write_text(APP + "# not watched\n")
        write_version(library, "v2")
        server.wait_for_line(RELOADING.pattern, RELOAD_DEADLINE)
        wait_for_every_worker_replaced(server, first_workers, "v2")
        assert reloads(server) == ["version.py"], server.output
        assert f"watching *.py under {library}\n" in server.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_ends_the_watcher_cleanly(tmp_path: Path, signum: int) -> None:
    """SIGINT as a terminal's Ctrl-C sends it, to the whole process group."""
    with dev_server(tmp_path) as server:
        if signum == signal.SIGINT:
            os.killpg(server.process.pid, signum)
        else:
            server.signal(signum)
        # A watcher thread left running would keep the acceptor from exiting.
        assert server.process.wait(RELOAD_DEADLINE) == 0
    assert "stopped after" in server.output
    assert "Traceback" not in server.output, server.output


@pytest.mark.parametrize(
    ("directory", "problem"),
    [("no/such/dir", "no such directory"), ("README.md", "not a directory")],
)
def test_a_reload_dir_that_is_no_directory_is_a_one_line_error(
    directory: str, problem: str
) -> None:
    result = run_osmium("serve", "--bind", "127.0.0.1:0", "--reload", "--reload-dir", directory)
    assert result.returncode == 2, result.stderr
    # The directory as given, or made absolute
    error = rf"osmium: error: --reload-dir (\S*/)?{re.escape(directory)}: {problem}\n"
    assert re.fullmatch(error, result.stderr), result.stderr


def test_reload_without_watchfiles_names_the_extra(tmp_path: Path) -> None:
    """As if watchfiles were not installed: its import fails the way a missing package does."""
    (tmp_path / "watchfiles.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'watchfiles'\", name='watchfiles')\n"
    )
    result = run_osmium(
        "serve", "--bind", "127.0.0.1:0", "--reload", env={"PYTHONPATH": str(tmp_path)}
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"osmium: error: {WATCHFILES_MISSING}\n"
