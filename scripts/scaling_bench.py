"""Worker scaling: req/s of `osmium serve --workers W` for several W, h2load on separate cores.

Run on a machine with enough cores (e.g. 16): the server is pinned to the first half of the cores,
h2load to the second half, so the load generator never steals the server's CPU. Prints one JSON
object per run and a summary table with medians.

    python scripts/scaling_bench.py --workers 1 2 4 8 --repeats 3 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
FINISHED = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")
REQUESTS = re.compile(r"requests: (\d+) total, .* (\d+) succeeded, (\d+) failed")


def start_server(workers: int, cores: str) -> tuple[subprocess.Popen[bytes], int]:
    command = ["taskset", "-c", cores, sys.executable, "-m", "osmium", "serve"]
    command += ["--bind", "127.0.0.1:0", "--workers", str(workers), "--no-access-log"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE)
    assert server.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if match := LISTENING.search(line):
            return server, int(match[1])
        if not line and server.poll() is not None:
            break
    server.kill()
    raise RuntimeError(f"osmium --workers {workers} did not start")


def run_h2load(port: int, cores: str, threads: int, args: argparse.Namespace) -> dict[str, float]:
    command = ["taskset", "-c", cores, "h2load", "-D", str(args.duration), "--warm-up-time", "1"]
    command += ["-t", str(threads), "-c", str(args.connections), "-m", str(args.streams)]
    command.append(f"http://127.0.0.1:{port}/")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate, requests = FINISHED.search(output), REQUESTS.search(output)
    assert rate and requests, output
    return {
        "req_per_s": float(rate[1]),
        "requests": int(requests[1]),
        "succeeded": int(requests[2]),
        "failed": int(requests[3]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    half = len(cpus) // 2
    server_cores = ",".join(map(str, cpus[:half]))
    client_cores = ",".join(map(str, cpus[half:]))
    results: dict[int, list[float]] = {w: [] for w in args.workers}
    for repeat in range(args.repeats):
        for workers in args.workers:  # interleaved, so drift hits every configuration alike
            server, port = start_server(workers, server_cores)
            try:
                run = run_h2load(port, client_cores, len(cpus) - half, args)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
            results[workers].append(run["req_per_s"])
            print(json.dumps({"workers": workers, "repeat": repeat, **run}), flush=True)
    base = statistics.median(results[args.workers[0]])
    print(f"\n{'workers':>8} {'median req/s':>14} {'min':>10} {'max':>10} {'speed-up':>9}")
    for workers, rates in results.items():
        median = statistics.median(rates)
        print(
            f"{workers:>8} {median:>14.0f} {min(rates):>10.0f} {max(rates):>10.0f}"
            f" {median / base:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
