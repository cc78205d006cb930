"""`python -m tests.integration.apps.coverage_launcher ARGS`: `python -m osmium ARGS`, as a child.

test_coverage.py runs this under `coverage run`, so that the server is the subprocess of a
measured Python process, as the servers of the test suite are under `nox -s coverage` (pytest is
the measured parent there). SIGTERM and SIGINT are passed on to the server; the exit status is
the server's.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def main() -> int:
    pending: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: object) -> None:
        if children:
            children[0].send_signal(signum)
        else:
            pending.append(signum)  # arrived before the server was started: sent right after

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    children.append(subprocess.Popen([sys.executable, "-m", "osmium", *sys.argv[1:]]))
    for signum in pending:
        children[0].send_signal(signum)
    return children[0].wait()


if __name__ == "__main__":
    sys.exit(main())
