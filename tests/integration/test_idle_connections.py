"""loadtest/idle_connections.py, small: it opens the idle connections it says, measures the
worker and probes it, and refuses a count its descriptors cannot hold."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from tests.integration.support import REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.idle_connections", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False,
    )  # fmt: skip


def test_a_small_run_reports_the_cost_and_the_latency() -> None:
    result = run("--connections", "300", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["connections"] == 300 and report["loop"] == "asyncio"
    assert report["rss_after_mib"] > report["rss_before_mib"]
    assert 0 < report["kib_per_connection"] < 200
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]


def test_more_connections_than_descriptors_is_one_line() -> None:
    too_many = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    result = run("--connections", str(too_many))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "ulimit -n" in result.stderr
