"""The report turns a results set into plots and an index.html that shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtest.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def results_with_one_sampled_run(run_dir: Path) -> dict[str, Any]:
    samples = [
        {"t": t / 10, "processes": [
            {"pid": 10, "role": "acceptor", "cpu_percent": 0.0, "rss": 20_000_000},
            {"pid": 11, "role": "worker", "cpu_percent": 95.0 + t, "rss": 30_000_000 + t},
        ]}
        for t in range(5)
    ]  # fmt: skip
    (run_dir / "runs").mkdir(parents=True)
    (run_dir / "runs" / "hello-osmium-0.jsonl").write_text(
        "\n".join(json.dumps(sample) for sample in samples)
    )
    summary = [
        {"scenario": "hello", "server": server, "repeats": 3, "failed": 0,
         "req_per_s": {"median": rate, "min": rate - 100, "max": rate + 50},
         "latency_mean_ms": {"median": 1.5, "min": 1.4, "max": 1.7}}
        for server, rate in (("osmium", 12_000.0), ("hypercorn", 4_000.0))
    ]  # fmt: skip
    runs = [
        {"scenario": "hello", "server": "osmium", "repeat": 0,
         "samples": "runs/hello-osmium-0.jsonl"},
        {"scenario": "hello", "server": "osmium", "repeat": 1,
         "samples": "runs/hello-osmium-1.jsonl"},
    ]  # fmt: skip
    return {
        "id": "bench-test",
        "environment": {"python": "3.11"},
        "runs": runs,
        "summary": summary,
        "ratios": [{"scenario": "hello", "peer": "hypercorn", "ratio": 3.0}],
    }


def test_report_writes_plots_and_an_index_that_shows_them(tmp_path: Path) -> None:
    index = write_report(tmp_path, results_with_one_sampled_run(tmp_path))
    pngs = sorted(path.name for path in tmp_path.glob("*.png"))
    assert pngs == ["latency.png", "resources-hello-osmium.png", "throughput.png"]
    for name in pngs:
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    page = index.read_text()
    for name in pngs:
        assert f'<img src="{name}"' in page
    assert "<td>12,000</td>" in page and "<td>hypercorn</td>" in page
    assert "osmium/hypercorn = 3.00" in page
