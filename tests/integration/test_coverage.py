"""Coverage of the whole server process tree: the acceptor and the workers it forks.

`./scripts/nox -s coverage` measures the test suite with coverage/coveragerc, whose process
patching starts coverage in the `osmium serve` subprocesses and in the workers they fork, and
saves each worker's data when it leaves through os._exit(). A broken setting there fails nothing
by itself: the report just shows the worker-only code (everything in osmium/transport/,
run_worker, Server.serve) as never run. So this test runs that configuration on real servers of
its own, with their own data files in tmp_path, and checks that code which only ever runs in a
forked worker was recorded by every worker, and that the acceptor's own code was recorded too.

A server gets coverage in one of two ways, and both are tested:
- as the subprocess of a measured process: pytest under `nox -s coverage`, here a small launcher
  under `coverage run` (needs `patch = subprocess`);
- by hand: COVERAGE_PROCESS_START names the rc file, and the .pth file that the coverage wheel
  installs starts measuring at interpreter start-up.
Under an outer `nox -s coverage` run these servers must not write into the outer data, so the
outer run's variables are removed from the environment first.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from coverage import Coverage, CoverageData

from osmium.server import Server
from osmium.supervisor import Supervisor
from osmium.transport.h2 import H2ServerProtocol
from osmium.worker import run_worker
from tests.integration.support import REPO_ROOT
from tests.server_process import (
    LISTENING,
    STARTUP_DEADLINE,
    ServerProcess,
    pump_output,
    running_server,
)

RCFILE = REPO_ROOT / "coverage" / "coveragerc"
APP = "tests.integration.apps.workers_app:app"
WORKERS = 2
#: How coverage.py names a parallel data file: .coverage.<host>.pid<pid>.X<random>x[.H<hash>h]
DATA_FILE_PID = re.compile(r"\.pid(\d+)\.")
#: What an outer coverage run (`nox -s coverage`, `coverage run`) puts in the environment; each
#: of them would send the inner server's data somewhere else than tmp_path.
OUTER_COVERAGE_VARIABLES = (
    "COVERAGE_PROCESS_CONFIG",
    "COVERAGE_PROCESS_START",
    "COVERAGE_RCFILE",
    "COVERAGE_FILE",
)
REQUEST_TIMEOUT = 10.0
#: How the server gets coverage: as the subprocess of a measured process (`patch = subprocess`),
#: or by hand, through COVERAGE_PROCESS_START.
MEASURED_PARENT = "measured-parent"
PROCESS_START = "COVERAGE_PROCESS_START"
#: Fresh connections allowed to reach every worker (SO_REUSEPORT spreads them at random).
MAX_CONNECTIONS = 200


def first_body_line(function: Callable[..., object]) -> tuple[str, int]:
    """`function`'s file and the line of the first statement of its body (docstring skipped).

    Not the `def` line: that one runs when the module is imported, in the acceptor as well.
    """
    source_lines, first_line = inspect.getsourcelines(function)
    definition = ast.parse(textwrap.dedent("".join(source_lines))).body[0]
    assert isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef)
    body = definition.body
    if ast.get_docstring(definition) is not None:
        body = body[1:]
    source_file = inspect.getsourcefile(function)
    assert source_file is not None
    return os.path.realpath(source_file), first_line + body[0].lineno - 1


def executed_lines(data: CoverageData, source_file: str) -> set[int]:
    """The lines of `source_file` that `data` recorded as run (none if it never measured it)."""
    for measured in data.measured_files():
        if os.path.realpath(measured) == source_file:
            return set(data.lines(measured) or ())
    return set()


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


@contextmanager
def measured_server(started_by: str, data_file: Path) -> Iterator[tuple[ServerProcess, int]]:
    """A 2-worker server measured with coverage/coveragerc into `data_file`; and its acceptor's pid.

    The ServerProcess is the process the test started: the acceptor itself or, for
    MEASURED_PARENT, the launcher whose only child is the acceptor. stop() ends either one.
    """
    args = ("--workers", str(WORKERS))
    if started_by == PROCESS_START:
        env = {"COVERAGE_PROCESS_START": str(RCFILE), "COVERAGE_FILE": str(data_file)}
        with running_server(*args, app=APP, env=env) as server:
            yield server, server.process.pid
        return
    command = [
        sys.executable,
        *("-m", "coverage", "run", f"--rcfile={RCFILE}", f"--data-file={data_file}"),
        *("-m", "tests.integration.apps.coverage_launcher"),
        *("serve", APP, "--bind", "127.0.0.1:0", *args),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=REPO_ROOT,
        # Its own process group: whatever happens to the launcher, the server tree goes with it.
        start_new_session=True,
    )
    server = ServerProcess(process)
    threading.Thread(target=pump_output, args=(server,), daemon=True).start()
    try:
        match = server.wait_for_line(LISTENING.pattern, timeout=STARTUP_DEADLINE)
        server.scheme, server.host, server.port = match["scheme"], match["host"], int(match["port"])
        (acceptor_pid,) = children(process.pid)
        yield server, acceptor_pid
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # only if something outlived the launcher


def serve_every_worker(server: ServerProcess, worker_pids: set[int]) -> None:
    """Open fresh connections until each worker answered a request (so it received h2 data)."""
    served: set[int] = set()
    deadline = time.monotonic() + 30.0
    for _ in range(MAX_CONNECTIONS):
        with httpx.Client(
            http1=False, http2=True, base_url=server.url, timeout=REQUEST_TIMEOUT
        ) as client:
            response = client.get("/pid")
        assert response.status_code == 200
        assert response.http_version == "HTTP/2"
        served.add(int(response.text))
        if served >= worker_pids or time.monotonic() > deadline:
            break
    assert served == worker_pids, f"requests reached workers {served}, not all of {worker_pids}"


def data_per_process(directory: Path) -> dict[int, CoverageData]:
    """The parallel data files in `directory`, merged per process id (from their names)."""
    per_process: dict[int, CoverageData] = {}
    for path in sorted(directory.glob(".coverage.*")):
        match = DATA_FILE_PID.search(path.name)
        assert match, f"unexpected coverage data file name {path.name}"
        data = CoverageData(str(path))
        data.read()
        per_process.setdefault(int(match[1]), CoverageData(no_disk=True)).update(data)
    return per_process


#: Only ever called in a forked worker (their def lines run at import, in the acceptor too).
WORKER_ONLY = (run_worker, Server.serve, H2ServerProtocol.data_received)
#: Only ever called in the acceptor.
ACCEPTOR_ONLY = (Supervisor._spawn,)


@pytest.mark.parametrize("started_by", [MEASURED_PARENT, PROCESS_START])
def test_acceptor_and_forked_workers_are_measured(
    started_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in OUTER_COVERAGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    data_file = tmp_path / ".coverage"

    with measured_server(started_by, data_file) as (server, acceptor_pid):
        worker_pids = set(children(acceptor_pid))
        assert len(worker_pids) == WORKERS
        serve_every_worker(server, worker_pids)
        # SIGTERM: the workers drain and leave through os._exit, the acceptor returns from main.
        assert server.stop() == 0, server.output

    # Each process saved its own data file: coverage's parallel suffix carries the pid.
    per_process = data_per_process(tmp_path)
    assert {acceptor_pid, *worker_pids} <= per_process.keys(), (
        f"data of processes {sorted(per_process)}, not of acceptor {acceptor_pid} and each "
        f"worker of {sorted(worker_pids)}; server output:\n{server.output}"
    )
    for pid, functions in [
        *((pid, WORKER_ONLY) for pid in worker_pids),
        (acceptor_pid, ACCEPTOR_ONLY),
    ]:
        for function in functions:
            source_file, line = first_body_line(function)
            assert line in executed_lines(per_process[pid], source_file), (
                f"process {pid}: {function.__qualname__} (line {line}) not recorded"
            )

    # What `nox -s coverage` does next: combine into one data file, report from it.
    Coverage(data_file=str(data_file), config_file=str(RCFILE)).combine(
        data_paths=[str(tmp_path)], strict=True
    )
    assert not list(tmp_path.glob(".coverage.*")), "combine left parallel data files behind"
    combined = CoverageData(str(data_file))
    combined.read()
    for function in (*WORKER_ONLY, *ACCEPTOR_ONLY):
        source_file, line = first_body_line(function)
        assert line in executed_lines(combined, source_file), f"{function.__qualname__} lost"
