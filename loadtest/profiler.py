"""py-spy flame graphs of a server's process tree under load, for `bench --profile`.

py-spy samples from outside the process (it reads the interpreter's memory), so the server runs
unmodified; `--nonblocking` never pauses it, which keeps the cost to the CPU py-spy itself takes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import IO

#: Samples a second: finer than py-spy's default 100, for runs of a second or two. py-spy then
#: takes about a tenth of a core (0.06-0.11 CPU s over 0.6-0.8 s of hello load, measured here).
RATE = 250
#: py-spy prints this once it has attached to the process tree and started sampling.
SAMPLING = b"Sampling process"
ATTACH_TIMEOUT = 10.0
#: Writing the flame graph after SIGINT takes well under a second; a hung py-spy is killed.
STOP_TIMEOUT = 15.0
INSTALL_HINT = "pip install py-spy"


def executable() -> str | None:
    """py-spy from this interpreter's environment (a venv need not be on PATH), else from PATH."""
    search = os.pathsep.join((sysconfig.get_path("scripts"), os.environ.get("PATH", os.defpath)))
    return shutil.which("py-spy", path=search)


def first_line(stream: IO[bytes]) -> str:
    """py-spy's error comes first; a stack backtrace follows it."""
    stream.seek(0)
    lines = stream.read().decode(errors="replace").strip().splitlines()
    return lines[0] if lines else ""


class Profiler:
    """`with Profiler(pid, path, py_spy): load()`: py-spy records the tree (workers included)
    from entry, once attached, to exit, then writes the flame graph SVG to `output`.

    A py-spy that cannot attach (no ptrace permission) does not stop the load: `error` then
    says why there is no flame graph, in py-spy's own first line of stderr (py-spy 0.4 with
    `--subprocesses` words a refused read as "No python processes found in process ...")."""

    def __init__(self, pid: int, output: Path, py_spy: str, rate: int = RATE) -> None:
        self.command = [
            py_spy, "record", "--pid", str(pid), "--subprocesses", "--format", "flamegraph",
            "--rate", str(rate), "--nonblocking", "--output", str(output),
        ]  # fmt: skip
        self.output = output
        self.error: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        self._stdout = tempfile.TemporaryFile()
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr
        )
        self._wait_until_sampling()
        return self

    def _wait_until_sampling(self) -> None:
        """Returns once py-spy samples, or has exited (it could not attach), or after the
        deadline (then whatever it records later is still kept)."""
        assert self._process is not None
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while self._process.poll() is None and time.monotonic() < deadline:
            if SAMPLING in os.pread(self._stdout.fileno(), 4096, 0):
                return
            time.sleep(0.02)

    def __exit__(self, *exc_info: object) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if not self.output.exists():
            reason = first_line(self._stderr) or f"exit status {self._process.returncode}"
            self.error = f"py-spy wrote no flame graph: {reason}"
        self._stdout.close()
        self._stderr.close()
