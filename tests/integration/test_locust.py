"""`python -m loadtest.locust_run`: short real locust runs, single and distributed, against osmium.

Locust is never imported here: it monkey-patches the standard library for gevent on import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from loadtest.launcher import free_port, speaks_http2
from tests.integration.support import REPO_ROOT
from tests.server_process import ServerProcess

JOURNEYS = {"browse", "download", "upload", "stream", "slow"}
SHORT_RUN = ("--users", "5", "--spawn-rate", "5", "--run-time", "4s")


def run_load_test(output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.locust_run", *SHORT_RUN, "--output", str(output), *args],
        capture_output=True, text=True, timeout=90, cwd=REPO_ROOT, check=False,
    )  # fmt: skip


def finished_run(output: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The run's results.json, once the run passed, published and left no process behind."""
    assert result.returncode == 0, result.stderr + result.stdout
    run_dir = (output / "latest").resolve()
    assert result.stdout.splitlines()[-1] == f"report: {run_dir / 'index.html'}"
    results = json.loads((run_dir / "results.json").read_text())
    port = urlsplit(results["settings"]["host"]).port
    assert port is not None and not speaks_http2(port, tls=False), "the server is still up"
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(run_dir)], (
        "a locust process outlived the run"
    )
    return results


@pytest.mark.slow
def test_short_run_writes_stats_samples_and_report(tmp_path: Path) -> None:
    results = finished_run(tmp_path, run_load_test(tmp_path))
    run_dir = tmp_path / results["id"]
    summary = results["summary"]
    assert summary["requests"] > 0 and summary["failures"] == 0, summary
    assert summary["req_per_s"] > 0 and summary["median_ms"] <= summary["p95_ms"]
    assert {entry["name"] for entry in results["locust"]["stats"]} == JOURNEYS
    [slow] = [row for row in summary["journeys"] if row["name"] == "slow"]
    assert slow["median_ms"] >= 50, "response times are not in ms"  # /slow?ms=50
    assert sum(entry["num_requests"] for entry in results["locust"]["stats"]) == summary["requests"]
    assert results["exit_codes"] == {"locust": 0, "locust_workers": [], "server": 0}
    assert (run_dir / results["samples"]).read_text().strip(), "the psutil series is empty"
    page = (run_dir / "index.html").read_text()
    for image in ("resources.png", "timeline.png"):
        assert f'src="{image}"' in page and (run_dir / image).stat().st_size


@pytest.mark.slow
def test_distributed_run_with_a_master_and_two_workers(tmp_path: Path) -> None:
    results = finished_run(tmp_path, run_load_test(tmp_path, "--distributed", "2"))
    assert results["summary"]["requests"] > 0 and results["summary"]["failures"] == 0
    assert results["exit_codes"] == {"locust": 0, "locust_workers": [0, 0], "server": 0}
    worker_logs = [tmp_path / results["id"] / f"locust-worker-{i}.log" for i in (1, 2)]
    assert all("Got quit message from master" in log.read_text() for log in worker_logs)


def fire_requests(url: str) -> None:
    """Child-process side of the failure test: print the request events and stats as JSON.

    A 404, a connection refused and a good page, each through DemoUser.request with locust's
    Environment and local runner (whose stats listen to the events); no load is generated.
    """
    from locust.env import Environment

    from loadtest.locustfile import DemoUser

    environment = Environment(user_classes=[DemoUser], host=url)
    runner = environment.create_local_runner()
    events: list[dict[str, Any]] = []

    def record(**event: Any) -> None:
        exception = event["exception"]
        events.append({key: event[key] for key in ("request_type", "name", "response_length")})
        events[-1]["exception"] = None if exception is None else type(exception).__name__
        events[-1]["message"] = str(exception) if exception is not None else None

    environment.events.request.add_listener(record)
    user, unreachable = DemoUser(environment), DemoUser(environment)
    user.host = url  # a runner would copy environment.host onto the class as it spawns users
    unreachable.host = f"http://127.0.0.1:{free_port()}"
    for each in (user, unreachable):
        each.on_start()
    user.request("GET", "/no-such-page", name="missing")
    unreachable.request("GET", "/", name="unreachable")
    user.request("GET", "/", name="page")
    for each in (user, unreachable):
        each.on_stop()
    stats = {name: environment.stats.get(name, "GET").num_failures for name in ("missing", "page")}
    runner.quit()
    print(json.dumps({"events": events, "failures": stats}))


def test_http2_user_reports_failures_with_the_request_name(server: ServerProcess) -> None:
    code = f"from tests.integration.test_locust import fire_requests; fire_requests({server.url!r})"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    missing, unreachable, page = report["events"]
    assert missing == {"request_type": "GET", "name": "missing", "response_length": 9,
                       "exception": "ResponseError", "message": "HTTP 404"}  # fmt: skip
    assert (unreachable["name"], unreachable["exception"]) == ("unreachable", "ConnectError")
    assert (page["name"], page["exception"], page["response_length"]) == ("page", None, 11)
    assert report["failures"] == {"missing": 1, "page": 0}
