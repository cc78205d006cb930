"""Turn a benchmark's results into PNG plots and an index.html that shows them.

Throughput and latency per scenario (median of the repeats, min-max as the error bar) and, for
each scenario and server, CPU and RSS over time per process of the first repeat.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine

import matplotlib.pyplot as plt

from loadtest.sampler import load

MIB = 1024 * 1024


def write_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """Plots and index.html in `run_dir`; returns the index path."""
    plots = [
        _bars(run_dir / "throughput.png", results, "req_per_s", "requests/s (median, min-max)"),
        _bars(run_dir / "latency.png", results, "latency_mean_ms", "mean request time, ms"),
    ]
    for run in results["runs"]:
        if run["repeat"] == 0 and run.get("samples"):
            name = f"resources-{run['scenario']}-{run['server']}.png"
            plots.append(resources_plot(run_dir / name, run, run_dir / run["samples"]))
    index = run_dir / "index.html"
    index.write_text(_html(results, [p.name for p in plots]))
    return index


def _bars(path: Path, results: dict[str, Any], metric: str, label: str) -> Path:
    summary = results["summary"]
    scenarios = list(dict.fromkeys(row["scenario"] for row in summary))
    servers = list(dict.fromkeys(row["server"] for row in summary))
    width = 0.8 / len(servers)
    figure, axes = plt.subplots(figsize=(max(6, 1.8 * len(scenarios)), 4))
    by_key = {(row["scenario"], row["server"]): row[metric] for row in summary}
    for offset, server in enumerate(servers):
        # A server that does not run every scenario (HTTP/1.1 only) leaves its bar out there.
        ran = [
            (index, by_key[(scenario, server)])
            for index, scenario in enumerate(scenarios)
            if (scenario, server) in by_key
        ]
        values = [value for _, value in ran]
        medians = [value["median"] for value in values]
        low = [value["median"] - value["min"] for value in values]
        high = [value["max"] - value["median"] for value in values]
        positions = [index + offset * width for index, _ in ran]
        axes.bar(positions, medians, width, yerr=[low, high], capsize=3, label=server)
    axes.set_xticks([index + width * (len(servers) - 1) / 2 for index in range(len(scenarios))])
    axes.set_xticklabels(scenarios)
    axes.set_ylabel(label)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def resources_plot(path: Path, run: dict[str, Any], samples_path: Path) -> Path:
    samples = load(samples_path)
    figure, (cpu, rss) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    series: dict[int, dict[str, list[float]]] = {}
    for sample in samples:
        for process in sample["processes"]:
            line = series.setdefault(process["pid"], {"t": [], "cpu": [], "rss": []})
            line["t"].append(sample["t"])
            line["cpu"].append(process["cpu_percent"])
            line["rss"].append(process["rss"] / MIB)
            line["role"] = process["role"]  # type: ignore[assignment]
    for pid, line in series.items():
        label = f"{line['role']} {pid}"
        cpu.plot(line["t"], line["cpu"], label=label)
        rss.plot(line["t"], line["rss"], label=label)
    cpu.set_ylabel("CPU %")
    rss.set_ylabel("RSS, MiB")
    rss.set_xlabel("seconds")
    cpu.set_title(f"{run['server']}: {run['scenario']}")
    cpu.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


SUMMARY_COLUMNS = ("scenario", "server", "req/s", "min", "max", "latency ms", "failed")


def summary_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """One summary row as text, in SUMMARY_COLUMNS order (terminal table and HTML alike)."""
    rate = row["req_per_s"]
    return (
        row["scenario"],
        row["server"],
        f"{rate['median']:,.0f}",
        f"{rate['min']:,.0f}",
        f"{rate['max']:,.0f}",
        f"{row['latency_mean_ms']['median']:.2f}",
        str(row["failed"]),
    )


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body: str) -> str:
    """A self-contained HTML page: the reports open from disk, with no assets to fetch."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


def figures(images: Iterable[str]) -> str:
    return "".join(f'<p><img src="{html.escape(name)}" alt=""></p>' for name in images)


def _html(results: dict[str, Any], images: list[str]) -> str:
    ratios = "".join(
        f"<li>{html.escape(r['scenario'])}: osmium/{html.escape(r['peer'])} = {r['ratio']:.2f}</li>"
        for r in results.get("ratios", [])
    )
    environment = html.escape(", ".join(f"{k}: {v}" for k, v in results["environment"].items()))
    body = (
        f"<p>{environment}</p>"
        + html_table(SUMMARY_COLUMNS, (summary_cells(row) for row in results["summary"]))
        + (f"<h2>Ratios (median req/s)</h2><ul>{ratios}</ul>" if ratios else "")
        + figures(images)
    )
    return page(f"osmium benchmark {results['id']}", body)
