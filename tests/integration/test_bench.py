"""`python -m loadtest.bench --quick`: a real run against osmium ends in a complete report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    for image in ("throughput.png", "latency.png", "resources-hello-osmium.png"):
        assert (run_dir / image).read_bytes().startswith(PNG_SIGNATURE)
        assert f'src="{image}"' in page


def test_bench_refuses_an_unknown_peer_in_one_line(tmp_path: Path) -> None:
    result = run_bench("--quick", "--compare", "nginx", "--output", str(tmp_path))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "bench: error: unknown server 'nginx' (known: osmium, hypercorn, granian, uvicorn)"
    )
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


def test_http1_scenarios_run_against_an_http1_only_peer(tmp_path: Path) -> None:
    """`h1 = true` drives h2load --h1; uvicorn (HTTP/1.1 only) runs those scenarios alone."""
    scenarios = tmp_path / "scenarios.toml"
    scenarios.write_text(
        '[[scenario]]\nname = "items-h1"\npath = "/items"\nrequests = 500\nclients = 2\n'
        "h1 = true\n\n"
        '[[scenario]]\nname = "hello"\npath = "/"\nrequests = 500\nclients = 2\n'
    )
    output = tmp_path / "results"
    result = run_bench(
        "--scenarios", str(scenarios), "--compare", "uvicorn", "--loop", "asyncio",
        "--repeats", "1", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    results = json.loads((output / "latest" / "results.json").read_text())
    rows = {(row["scenario"], row["server"]): row for row in results["summary"]}
    assert set(rows) == {("items-h1", "osmium"), ("items-h1", "uvicorn"), ("hello", "osmium")}
    assert all(row["failed"] == 0 for row in rows.values())
    assert results["settings"]["loop"] == "asyncio"
    h2load_run = next(run for run in results["runs"] if run["scenario"] == "items-h1")
    assert h2load_run["h2load"]["requests"]["succeeded"] == 500
