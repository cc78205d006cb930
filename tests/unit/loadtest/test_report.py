"""The report turns a results set into plots and an index.html that shows them, with what a reader
needs to interpret the numbers: scenarios, servers and their loops, the build, the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtest.report import (
    SUMMARY_COLUMNS,
    html_table,
    link,
    ratio_line,
    summary_cells,
    summary_tables,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def spread(median: float) -> dict[str, float]:
    return {"median": median, "min": median * 0.9, "max": median * 1.1}


def h2load_row(scenario: str, server: str, rate: float, unit: str = "req/s") -> dict[str, Any]:
    row = {"scenario": scenario, "server": server, "repeats": 3, "failed": 0, "unit": unit}
    row |= {"req_per_s": spread(rate), "latency_mean_ms": spread(1.5)}
    row |= {"req_per_cpu_s": spread(rate * 1.25)}
    row |= {f"latency_{name}_ms": spread(ms) for name, ms in (("p50", 1.2), ("p90", 2.5))}
    row |= {"latency_p99_ms": spread(9.0), "latency_max_ms": spread(140.0)}
    if unit == "MB/s":
        row["mb_per_s"] = spread(rate * 1.048576)
    return row


def websocket_row() -> dict[str, Any]:
    row = {"scenario": "ws-roundtrip", "server": "osmium", "repeats": 3, "failed": 0}
    row |= {"unit": "msg/s", "req_per_s": spread(9_000.0), "latency_mean_ms": spread(0.11)}
    return row | {"mb_per_s": spread(0.6), "req_per_cpu_s": spread(10_000.0)}


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
        h2load_row("hello", "osmium", 12_000.0),
        h2load_row("hello", "hypercorn", 4_000.0),
        h2load_row("upload-1mib", "osmium", 250.0, "MB/s"),
        websocket_row(),
    ]
    runs = [
        {"scenario": "hello", "server": "osmium", "repeat": 0, "exit_code": 0,
         "log": "runs/hello-osmium-0.log", "samples": "runs/hello-osmium-0.jsonl"},
        {"scenario": "hello", "server": "osmium", "repeat": 1, "exit_code": 0,
         "log": "runs/hello-osmium-1.log", "samples": "runs/hello-osmium-1.jsonl"},
    ]  # fmt: skip
    scenarios = [
        {"name": "hello", "path": "/", "requests": 20000, "duration": None, "clients": 10,
         "streams": 10, "upload": 0, "unit": "req/s", "protocol": "h2c (prior knowledge)"},
        {"name": "upload-1mib", "path": "/echo", "requests": None, "duration": 2.0,
         "clients": 4, "streams": 4, "upload": 1048576, "unit": "MB/s",
         "protocol": "h2 over TLS (ALPN)"},
        {"name": "ws-roundtrip", "path": "/ws/echo", "unit": "msg/s",
         "protocol": "WebSocket over HTTP/1.1",
         "plan": {"connections": 1, "messages": 10000, "size": 64, "window": 1,
                  "binary": False, "deflate": False, "http2": False}},
    ]  # fmt: skip
    return {
        "id": "bench-test",
        "osmium": {"version": "0.1.0", "commit": "abc1234", "uncommitted_changes": True},
        "environment": {"python": "3.11", "cpus": "2"},
        "settings": {"repeats": 3, "workers": 1, "loop": "auto"},
        "servers": [
            {"name": "osmium", "loop": "uvloop", "workers": 1, "command": "python -m osmium"},
            {"name": "hypercorn", "loop": "asyncio", "workers": 1, "command": "hypercorn <x>"},
        ],
        "scenarios": scenarios,
        "runs": runs,
        "summary": summary,
        "ratios": [
            {
                "scenario": "hello",
                "peer": "hypercorn",
                "ratio": 3.0,
                "unit": "req/s",
                "cpu_ratio": 2.5,
            },
        ],
    }


def test_report_writes_plots_and_an_index_that_shows_them(tmp_path: Path) -> None:
    index = write_report(tmp_path, results_with_one_sampled_run(tmp_path))
    pngs = sorted(path.name for path in tmp_path.glob("*.png"))
    assert pngs == [
        "efficiency.png",
        "latency.png",
        "resources-hello-osmium.png",
        "throughput.png",
    ]
    for name in pngs:
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    page = index.read_text()
    for name in pngs:
        assert f'<img src="{name}"' in page
    assert "<td>12,000 req/s</td>" in page and "<td>hypercorn</td>" in page
    assert "<td>262 MB/s</td>" in page  # the body scenario in its own unit
    assert "osmium/hypercorn on hello: 3.00x the req/s, 2.50x the requests per CPU second" in page


def test_the_page_says_what_ran_and_how_to_read_it(tmp_path: Path) -> None:
    page = write_report(tmp_path, results_with_one_sampled_run(tmp_path)).read_text()
    assert "osmium 0.1.0, commit abc1234 with uncommitted changes" in page
    # Each scenario's parameters: protocol, request, -c, -m, -n or -D.
    assert (
        "<tr><td>hello</td><td>h2c (prior knowledge)</td><td>GET /</td><td>10</td><td>10</td>"
        "<td>20,000</td><td>-</td><td>req/s</td></tr>"
    ) in page
    assert (
        "<td>POST /echo, 1,048,576-byte body</td><td>4</td><td>4</td><td>-</td><td>2.0 s</td>"
    ) in page
    assert "<td>WebSocket over HTTP/1.1</td>" in page
    # The servers' event loops and command lines.
    assert (
        "<tr><td>hypercorn</td><td>asyncio</td><td>1</td><td>hypercorn &lt;x&gt;</td></tr>" in page
    )
    assert "shares its 2 cores with the server" in page
    assert "min and max are the lowest and highest of the repeats" in page
    assert '<a href="results.json">results.json</a>' in page
    for repeat in (0, 1):
        assert f'<a href="runs/hello-osmium-{repeat}.log">server log</a>' in page


def test_summary_cells_give_rate_cpu_efficiency_and_percentiles() -> None:
    cells = summary_cells(h2load_row("hello", "osmium", 12_000.0))
    assert dict(zip(SUMMARY_COLUMNS, cells, strict=True)) == {
        "scenario": "hello",
        "server": "osmium",
        "median": "12,000 req/s",
        "min": "10,800",
        "max": "13,200",
        "req/CPU s": "15,000",
        "p50 ms": "1.20",
        "p90 ms": "2.50",
        "p99 ms": "9.00",
        "max ms": "140",
        "failed": "0",
    }
    body = summary_cells(h2load_row("upload-1mib", "osmium", 50.0, "MB/s"))
    assert body[2:5] == ("52.4 MB/s", "47.2", "57.7")


def test_rows_from_older_results_show_what_they_have() -> None:
    old = {"scenario": "hello", "server": "osmium", "repeats": 1, "failed": 0}
    old |= {"req_per_s": spread(100.0), "latency_mean_ms": spread(1.0)}
    [(title, _, [cells])] = summary_tables([old])
    assert title == "h2load: median of repeats"
    assert cells[2] == "100 req/s" and cells[5:10] == ("-",) * 5


def test_websocket_rows_get_their_own_table() -> None:
    tables = summary_tables([h2load_row("hello", "osmium", 1.0), websocket_row()])
    assert [title for title, _, _ in tables] == [
        "h2load: median of repeats",
        "websocket: median of repeats",
    ]
    _, columns, [cells] = tables[1]
    assert dict(zip(columns, cells, strict=True)) == {
        "scenario": "ws-roundtrip",
        "server": "osmium",
        "msg/s": "9,000",
        "MB/s": "0.60",
        "latency ms": "0.110",
        "msg/CPU s": "10,000",
        "failed": "0",
    }


def test_ratio_lines_without_cpu_times() -> None:
    row = {"scenario": "big", "peer": "granian", "ratio": 0.8, "unit": "MB/s"}
    assert ratio_line(row) == "osmium/granian on big: 0.80x the MB/s"


def test_links_are_markup_and_other_cells_are_escaped() -> None:
    table = html_table(("a", "b"), [(link("runs/x.log", "log"), "<b>")])
    assert '<td><a href="runs/x.log">log</a></td><td>&lt;b&gt;</td>' in table
