"""Instructions per request: the server under callgrind, a fixed number of sequential requests.

Instruction counts do not depend on the machine's load, so this metric can gate every change.
Two runs with different request counts cancel out start-up and shutdown: only the difference per
request is kept. PYTHONHASHSEED is fixed so dict and set iteration orders do not vary.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from loadtest import h2load
from loadtest.launcher import LaunchedServer, ServerSpec, osmium

REQUEST_COUNTS = (200, 1200)
#: Under callgrind a Python process starts about 50 times slower.
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)


class InstructionsError(Exception):
    """callgrind could not measure the server; the message says why."""


def callgrind_spec(source: Path, output_dir: Path) -> ServerSpec:
    """osmium from `source` (one worker) under callgrind, one output file per process."""
    spec = osmium(1, source=source)
    valgrind = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={output_dir}/callgrind.%p")
    return replace(spec, command=valgrind + spec.command, env={**spec.env, "PYTHONHASHSEED": "0"})


def totals(path: Path) -> int:
    match = TOTALS.search(path.read_bytes())
    if match is None:
        raise InstructionsError(f"{path.name}: no totals line (did the process exit cleanly?)")
    return int(match[1])


def worker_instructions(source: Path, requests: int) -> int:
    """Instructions executed by the worker process(es) for start-up + `requests` + shutdown."""
    with tempfile.TemporaryDirectory(prefix="osmium-callgrind-") as folder:
        output_dir = Path(folder)
        spec = callgrind_spec(source, output_dir)
        server = LaunchedServer(
            spec, output_dir / "server.log", startup_timeout=STARTUP_TIMEOUT,
            stop_timeout=STOP_TIMEOUT,
        )  # fmt: skip
        with server:
            # One connection, one stream at a time: the same frames in the same order every run.
            result = h2load.run(server.url + "/", requests=requests, clients=1, streams=1)
        if result.requests.succeeded != requests:
            raise InstructionsError(f"{result.requests.failed} of {requests} requests failed")
        if server.exit_code != 0:
            raise InstructionsError(f"server exited with {server.exit_code}: {server.log_tail()}")
        acceptor = output_dir / f"callgrind.{server.pid}"
        workers = [path for path in output_dir.glob("callgrind.*") if path != acceptor]
        if not workers:
            raise InstructionsError("callgrind wrote no file for the worker")
        return sum(totals(path) for path in workers)


def instructions_per_request(source: Path) -> float:
    if shutil.which("valgrind") is None:
        raise InstructionsError("valgrind not found: install Debian's valgrind")
    few, many = REQUEST_COUNTS
    return (worker_instructions(source, many) - worker_instructions(source, few)) / (many - few)
