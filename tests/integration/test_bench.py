"""`python -m loadtest.bench --quick`: a real run against osmium ends in a complete report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import profiler
from loadtest.launcher import KNOWN_SERVERS, available
from tests.integration.support import REPO_ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.bench", *args],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, check=False,
    )  # fmt: skip


def test_quick_bench_writes_results_plots_and_report(tmp_path: Path) -> None:
    result = run_bench("--quick", "--output", str(tmp_path), "--session", "ci")
    assert result.returncode == 0, result.stderr + result.stdout
    latest = tmp_path / "latest"
    assert latest.is_symlink()
    run_dir = latest.resolve()
    assert run_dir.parent == tmp_path and run_dir.name.startswith("ci-")
    assert result.stdout.splitlines()[-1] == f"report: {run_dir / 'index.html'}"

    results = json.loads((run_dir / "results.json").read_text())
    [row] = results["summary"]
    assert (row["scenario"], row["server"], row["repeats"], row["failed"]) == (
        "hello",
        "osmium",
        1,
        0,
    )
    [run] = results["runs"]
    assert run["metrics"]["succeeded"] == 5000
    assert run["exit_code"] == 0
    assert run["metrics"]["req_per_s"] == row["req_per_s"]["median"] > 0

    samples = [json.loads(line) for line in (run_dir / run["samples"]).read_text().splitlines()]
    assert samples, "the psutil series is empty"
    assert {p["role"] for s in samples for p in s["processes"]} == {"acceptor", "worker"}
    assert max(s["total"]["cpu_percent"] for s in samples) > 0

    page = (run_dir / "index.html").read_text()
    for image in ("throughput.png", "efficiency.png", "latency.png", "resources-hello-osmium.png"):
        assert (run_dir / image).read_bytes().startswith(PNG_SIGNATURE)
        assert f'src="{image}"' in page


def test_bench_refuses_an_unknown_peer_in_one_line(tmp_path: Path) -> None:
    result = run_bench("--quick", "--compare", "nginx", "--output", str(tmp_path))
    assert result.returncode == 2
    known = ", ".join(KNOWN_SERVERS)
    assert result.stderr.strip() == f"bench: error: unknown server 'nginx' (known: {known})"
    assert not list(tmp_path.iterdir())


def test_any_server_command_line_can_be_compared(tmp_path: Path) -> None:
    """--peer runs a command line as given: here osmium itself, under another name."""
    command = f"{sys.executable} -m osmium serve --bind {{host}}:{{port}}"
    result = run_bench("--quick", "--peer", f"twin={command}", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr + result.stdout
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    assert {row["server"] for row in results["summary"]} == {"osmium", "twin"}
    assert all(row["failed"] == 0 for row in results["summary"])
    [ratio] = results["ratios"]
    assert ratio["peer"] == "twin" and ratio["ratio"] > 0  # the same server: noise only


def http1_only_peer() -> str:
    """A known peer that serves HTTP/1.1 only, installed here."""
    for name, make in KNOWN_SERVERS.items():
        if not make().http2 and available(name):
            return name
    pytest.skip("no HTTP/1.1-only peer is installed")


def test_http1_scenarios_run_against_an_http1_only_peer(tmp_path: Path) -> None:
    """`h1 = true` drives h2load --h1; a peer that speaks HTTP/1.1 only runs those alone."""
    peer = http1_only_peer()
    scenarios = tmp_path / "scenarios.toml"
    scenarios.write_text(
        '[[scenario]]\nname = "items-h1"\npath = "/items"\nrequests = 500\nclients = 2\n'
        "h1 = true\n\n"
        '[[scenario]]\nname = "hello"\npath = "/"\nrequests = 500\nclients = 2\n'
    )
    output = tmp_path / "results"
    result = run_bench(
        "--scenarios", str(scenarios), "--compare", peer, "--loop", "asyncio",
        "--repeats", "1", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    results = json.loads((output / "latest" / "results.json").read_text())
    rows = {(row["scenario"], row["server"]): row for row in results["summary"]}
    assert set(rows) == {("items-h1", "osmium"), ("items-h1", peer), ("hello", "osmium")}
    assert all(row["failed"] == 0 for row in rows.values())
    assert results["settings"]["loop"] == "asyncio"
    h2load_run = next(run for run in results["runs"] if run["scenario"] == "items-h1")
    assert h2load_run["h2load"]["requests"]["succeeded"] == 500


BODY = 64 * 1024
SHORT_SCENARIOS = f"""
[[scenario]]
name = "hello"
path = "/"
requests = 2000
clients = 2
streams = 4

[[scenario]]
name = "upload-64kib"
group = "bodies"
path = "/echo"
upload = {BODY}
requests = 100
clients = 2
streams = 2
unit = "MB/s"
"""


def test_a_short_run_measures_cpu_latency_and_body_throughput(tmp_path: Path) -> None:
    """Every run: requests per server CPU second, ordered percentiles from h2load's request log;
    the body scenario in MB/s of request bodies; the report names parameters and commit."""
    scenarios = tmp_path / "scenarios.toml"
    scenarios.write_text(SHORT_SCENARIOS)
    output = tmp_path / "results"
    result = run_bench(
        "--scenarios", str(scenarios), "--only", "hello", "bodies", "--repeats", "1",
        "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    results = json.loads((output / "latest" / "results.json").read_text())
    runs = {run["scenario"]: run for run in results["runs"]}
    assert set(runs) == {"hello", "upload-64kib"}
    for run in runs.values():
        values = run["metrics"]
        assert values["failed"] == 0 and run["server_cpu_s"] > 0
        assert values["req_per_cpu_s"] == pytest.approx(values["succeeded"] / run["server_cpu_s"])
        percentiles = [values[f"latency_{name}_ms"] for name in ("p50", "p90", "p99", "max")]
        assert 0 < percentiles[0] <= percentiles[1] <= percentiles[2] <= percentiles[3]
    upload = runs["upload-64kib"]
    assert upload["unit"] == "MB/s" and "-d" in upload["command"].split()
    assert upload["metrics"]["mb_per_s"] == pytest.approx(
        upload["metrics"]["req_per_s"] * BODY / 1e6, rel=0.01
    )
    assert "mb_per_s" not in runs["hello"]["metrics"]
    rows = {row["scenario"]: row for row in results["summary"]}
    assert rows["upload-64kib"]["mb_per_s"]["median"] == upload["metrics"]["mb_per_s"]
    assert rows["hello"]["req_per_cpu_s"]["median"] > 0

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert results["osmium"]["commit"] == head
    page = (output / "latest" / "index.html").read_text()
    assert f"commit {head}" in page
    assert (
        "<tr><td>upload-64kib</td><td>h2c (prior knowledge)</td><td>POST /echo, 65,536-byte "
        "body</td><td>2</td><td>2</td><td>100</td><td>-</td><td>MB/s</td></tr>"
    ) in page
    assert '<a href="runs/hello-osmium-0.log">server log</a>' in page


@pytest.fixture(scope="module")
def py_spy_attaches() -> None:
    """Skips where py-spy is missing or cannot read a sibling process (no ptrace permission in
    this container, say): once, with py-spy's own reason, on a Python process that is up."""
    py_spy = profiler.executable()
    if py_spy is None:
        pytest.skip(f"py-spy is not installed ({profiler.INSTALL_HINT})")
    target = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert target.stdout is not None and target.stdout.readline() == "up\n"
        probe = subprocess.run(
            [py_spy, "dump", "--nonblocking", "--pid", str(target.pid)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        target.kill()
        target.wait()
    if probe.returncode != 0:
        pytest.skip(f"py-spy cannot attach here: {(probe.stderr.strip() or '?').splitlines()[0]}")


def test_profile_keeps_a_flame_graph_of_osmiums_workers(
    tmp_path: Path, py_spy_attaches: None
) -> None:
    result = run_bench("--quick", "--profile", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr + result.stdout
    run_dir = (tmp_path / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["settings"]["profile"] is True
    measured, run = results["runs"]  # the measured run, then the profiled one
    assert "profile" not in measured and run["repeat"] == "profiled"
    assert [row["repeats"] for row in results["summary"]] == [1]  # the profiled run is not in it
    assert run["profile"] == "runs/hello-osmium-profiled-profile.svg", run.get("profile_error")
    graph = (run_dir / run["profile"]).read_text()
    assert graph.startswith("<?xml") and "<svg" in graph
    # A frame of osmium's own code, as py-spy names it: `function (osmium/module.py:line)`.
    assert re.search(r"\(osmium/[\w/]+\.py:\d+\)", graph), "no osmium frame in the flame graph"
    page = (run_dir / "index.html").read_text()
    assert '<a href="runs/hello-osmium-profiled-profile.svg">flame graph</a>' in page
    assert "under py-spy" in page
