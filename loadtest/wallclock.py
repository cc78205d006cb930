"""Wall-clock throughput, normalised by a CPU calibration loop measured in the same run.

Machines differ and are shared, so raw req/s means little across runs; req/s divided by how fast
this machine runs a fixed pure-Python loop right now travels better. Still noisy: reported, with
a loose tolerance, next to the instruction count that gates.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from loadtest import h2load
from loadtest.launcher import LaunchedServer, osmium

REPEATS = 3
REQUESTS = 20_000
CALIBRATION_LOOPS = 2_000_000


def calibration_loops_per_second() -> float:
    """Millions of iterations per second of a fixed pure-Python loop (dict, str and int work)."""
    start = time.perf_counter()
    table: dict[int, str] = {}
    for index in range(CALIBRATION_LOOPS):
        table[index & 1023] = str(index & 255)
    return CALIBRATION_LOOPS / (time.perf_counter() - start) / 1e6


def requests_per_second(source: Path) -> float:
    with (
        tempfile.TemporaryDirectory(prefix="osmium-wallclock-") as folder,
        LaunchedServer(osmium(source=source), Path(folder) / "server.log") as server,
    ):
        result = h2load.run(server.url + "/", requests=REQUESTS, clients=10, streams=10)
    if result.requests.failed:
        raise h2load.H2LoadError(f"{result.requests.failed} of {REQUESTS} requests failed")
    return result.requests_per_second


def normalised_throughput(source: Path) -> float:
    """Median req/s over median calibration speed, the two interleaved: req/s per M loops/s."""
    rates, speeds = [], []
    for _ in range(REPEATS):
        speeds.append(calibration_loops_per_second())
        rates.append(requests_per_second(source))
    return statistics.median(rates) / statistics.median(speeds)
