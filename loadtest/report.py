"""Turn a benchmark's results into PNG plots and an index.html that shows them.

Throughput (one panel per unit), requests per server CPU second, latency percentiles per scenario
(medians of the repeats, min-max as the error bar) and, for each scenario and server, CPU and RSS
over time per process of the first repeat. The page says what was run, on what, and how to read it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FormatStrFormatter

from loadtest.profiler import RATE
from loadtest.sampler import load

MIB = 1024 * 1024
PERCENTILES = ("p50", "p90", "p99", "max")
#: The summary metric each unit's rates are in.
RATE_METRIC = {"MB/s": "mb_per_s"}
MISSING = "-"


def rate_metric(row: dict[str, Any]) -> str:
    return RATE_METRIC.get(row.get("unit", "req/s"), "req_per_s")


def write_report(run_dir: Path, results: dict[str, Any]) -> Path:
    """Plots and index.html in `run_dir`; returns the index path."""
    summary = results["summary"]
    colours = {server: f"C{index}" for index, server in enumerate(servers_of(summary))}
    plots = [
        throughput_plot(run_dir / "throughput.png", summary, colours),
        efficiency_plot(run_dir / "efficiency.png", summary, colours),
    ]
    if any("latency_p50_ms" in row for row in summary):
        plots.append(latency_plot(run_dir / "latency.png", summary, colours))
    for run in results["runs"]:
        if run["repeat"] == 0 and run.get("samples"):
            name = f"resources-{run['scenario']}-{run['server']}.png"
            plots.append(resources_plot(run_dir / name, run, run_dir / run["samples"]))
    index = run_dir / "index.html"
    index.write_text(_html(results, [p.name for p in plots]))
    return index


def servers_of(summary: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(row["server"] for row in summary))


def _bar_panel(
    axes: Axes, rows: list[dict[str, Any]], metric: str, label: str, colours: dict[str, str]
) -> None:
    """Grouped bars: one group per scenario, one bar per server that ran it, min-max whiskers."""
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    servers = servers_of(rows)
    width = 0.8 / len(servers)
    by_key = {(row["scenario"], row["server"]): row[metric] for row in rows}
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
        axes.bar(
            positions, medians, width, yerr=[low, high], capsize=3, label=server,
            color=colours[server],
        )  # fmt: skip
    axes.set_xticks([index + width * (len(servers) - 1) / 2 for index in range(len(scenarios))])
    axes.set_xticklabels(scenarios, rotation=20, ha="right")
    axes.set_ylabel(label)
    axes.legend(fontsize="small")


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def throughput_plot(path: Path, summary: list[dict[str, Any]], colours: dict[str, str]) -> Path:
    """One panel per unit: requests (or messages) per second, and body MB/s."""
    units = list(dict.fromkeys(row.get("unit", "req/s") for row in summary))
    panels = {unit: [row for row in summary if row.get("unit", "req/s") == unit] for unit in units}
    widths = [max(4.0, 1.6 * len({row["scenario"] for row in rows})) for rows in panels.values()]
    figure, axes = plt.subplots(
        1, len(units), figsize=(sum(widths), 4.5), width_ratios=widths, squeeze=False
    )
    for panel, (unit, rows) in zip(axes[0], panels.items(), strict=True):
        _bar_panel(panel, rows, rate_metric(rows[0]), f"{unit} (median, min-max)", colours)
    return _save(figure, path)


def efficiency_plot(path: Path, summary: list[dict[str, Any]], colours: dict[str, str]) -> Path:
    rows = [row for row in summary if "req_per_cpu_s" in row]
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len({r["scenario"] for r in rows})), 4.5))
    if rows:
        _bar_panel(axes, rows, "req_per_cpu_s", "requests per server CPU second", colours)
    return _save(figure, path)


def latency_plot(path: Path, summary: list[dict[str, Any]], colours: dict[str, str]) -> Path:
    """A panel per scenario: each server's p50, p90, p99 and max (medians of the repeats) as one
    line, on a log scale, since the tail is often orders of magnitude above the median."""
    rows = [row for row in summary if "latency_p50_ms" in row]
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    columns = min(3, len(scenarios))
    lines = math.ceil(len(scenarios) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.5 * columns, 3.2 * lines), squeeze=False)
    for panel, scenario in zip(axes.flat, scenarios, strict=False):
        for row in (row for row in rows if row["scenario"] == scenario):
            medians = [row[f"latency_{name}_ms"]["median"] for name in PERCENTILES]
            colour = colours[row["server"]]
            panel.plot(PERCENTILES, medians, marker="o", label=row["server"], color=colour)
        panel.set_yscale("log")
        for axis_ticks in (panel.yaxis.set_major_formatter, panel.yaxis.set_minor_formatter):
            axis_ticks(FormatStrFormatter("%g"))  # 20, not 2 x 10^1
        panel.set_title(scenario, fontsize="medium")
        panel.set_ylabel("ms")
        panel.grid(True, which="both", alpha=0.3)
        panel.legend(fontsize="x-small")
    for panel in list(axes.flat)[len(scenarios) :]:
        panel.set_visible(False)
    return _save(figure, path)


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
    return _save(figure, path)


SUMMARY_COLUMNS = (
    "scenario", "server", "median", "min", "max", "req/CPU s",
    "p50 ms", "p90 ms", "p99 ms", "max ms", "failed",
)  # fmt: skip
#: Medians only (min and max are in results.json), as the WebSocket client measures them.
WEBSOCKET_COLUMNS = ("scenario", "server", "msg/s", "MB/s", "latency ms", "msg/CPU s", "failed")


def _number(value: float, unit: str = "") -> str:
    """Thousands separated, with decimals only where the values are small (MB/s, ms)."""
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{decimals}f} {unit}".rstrip()


def _median(row: dict[str, Any], metric: str) -> str:
    return _number(row[metric]["median"]) if metric in row else MISSING


def summary_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """One h2load row as text, in SUMMARY_COLUMNS order (terminal table and HTML alike): the
    rate in the row's unit, its spread, requests per CPU second, latency percentiles."""
    unit = row.get("unit", "req/s")
    rate = row[rate_metric(row)]
    return (
        row["scenario"],
        row["server"],
        _number(rate["median"], unit),
        _number(rate["min"]),
        _number(rate["max"]),
        _median(row, "req_per_cpu_s"),
        *(_median(row, f"latency_{name}_ms") for name in PERCENTILES),
        str(row["failed"]),
    )


def websocket_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """Medians; CPU is the server tree's, per echoed message."""
    return (
        row["scenario"],
        row["server"],
        _number(row["req_per_s"]["median"]),
        _number(row["mb_per_s"]["median"]),
        f"{row['latency_mean_ms']['median']:.3f}",
        _median(row, "req_per_cpu_s"),
        str(row["failed"]),
    )


def summary_tables(
    summary: list[dict[str, Any]],
) -> list[tuple[str, Sequence[str], list[tuple[str, ...]]]]:
    """(title, columns, rows of cells) for the h2load rows and the WebSocket rows present."""
    tables = []
    for title, columns, cells, is_websocket in (
        ("h2load: median of repeats", SUMMARY_COLUMNS, summary_cells, False),
        ("websocket: median of repeats", WEBSOCKET_COLUMNS, websocket_cells, True),
    ):
        rows = [cells(row) for row in summary if (row.get("unit") == "msg/s") == is_websocket]
        if rows:
            tables.append((title, columns, rows))
    return tables


def ratio_line(row: dict[str, Any]) -> str:
    """One osmium/peer ratio in words, for the terminal and the report alike."""
    unit = row.get("unit", "req/s")
    text = f"osmium/{row['peer']} on {row['scenario']}: {row['ratio']:.2f}x the {unit}"
    if "cpu_ratio" in row:
        text += f", {row['cpu_ratio']:.2f}x the requests per CPU second"
    return text


class Html(str):
    """Markup a table cell holds as is (a link); any other cell is escaped."""


def _cell(cell: object) -> str:
    return cell if isinstance(cell, Html) else html.escape(str(cell))


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>" for row in rows
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


def link(href: str, text: str) -> Html:
    return Html(f'<a href="{html.escape(href)}">{html.escape(text)}</a>')


SCENARIO_COLUMNS = (
    "scenario", "protocol", "request", "clients (-c)", "streams (-m)", "requests (-n)",
    "duration (-D)", "rates in",
)  # fmt: skip


def scenario_cells(scenario: dict[str, Any]) -> tuple[object, ...]:
    """An h2load scenario's flags; a WebSocket plan's connections, window and messages in the
    same columns (the echo client's equivalents)."""
    plan = scenario.get("plan")
    if plan is not None:
        kind = "binary" if plan["binary"] else "text"
        request = f"{scenario['path']}: {plan['size']:,}-byte {kind} messages, echoed"
        requests = plan["connections"] * plan["messages"]
        load_shape = (plan["connections"], f"{plan['window']} in flight", f"{requests:,}", MISSING)
        return (scenario["name"], scenario["protocol"], request, *load_shape, "msg/s")
    upload = scenario.get("upload", 0)
    request = (
        f"POST {scenario['path']}, {upload:,}-byte body" if upload else f"GET {scenario['path']}"
    )
    requests = f"{scenario['requests']:,}" if scenario.get("requests") else MISSING
    duration = f"{scenario['duration']} s" if scenario.get("duration") else MISSING
    return (
        scenario["name"], scenario.get("protocol", ""), request, scenario["clients"],
        scenario["streams"], requests, duration, scenario.get("unit", "req/s"),
    )  # fmt: skip


def _reading_notes(results: dict[str, Any]) -> str:
    """What a reader needs to interpret the numbers, as a list."""
    repeats = results.get("settings", {}).get("repeats", "?")
    cpus = results["environment"].get("cpus", "?")
    notes = [
        f"Each scenario ran {repeats} time(s) on each server, a fresh server process tree each "
        "time, the repeats interleaved across servers. Tables show the median of the repeats; "
        "min and max are the lowest and highest of the repeats' values, not of single requests.",
        f"h2load runs on the same machine and shares its {cpus} cores with the server it loads: "
        "the two compete for CPU, so rates are lower than with a separate load machine. Compare "
        "servers within one run.",
        "req/CPU s: requests answered (any status, as h2load's req/s counts them; messages "
        "echoed for WebSockets) per CPU second (user + system) of the server's whole process "
        "tree, workers included, from just before the load started to just after it ended.",
        "p50, p90, p99, max: per run, over every request that got a response, from h2load's "
        "--log-file (request sent to end of response); the median of the repeats.",
        "MB/s: 10^6 body bytes per second: response bodies for downloads, request bodies for "
        "uploads (which /echo sends back, not counted again).",
    ]
    if _profiled(results):
        notes.append(
            f"osmium ran each scenario once more under py-spy ({RATE} Hz, sampled from outside "
            'the process) for the flame graph linked under Files (repeat "profiled"). py-spy '
            "takes about a tenth of a core, which slows that run where cores are few (hello: "
            "~20 % on 2 cores), so it is not in the medians or the ratios."
        )
    return "<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>"


def _osmium_line(results: dict[str, Any]) -> str:
    build = results.get("osmium")
    if build is None:
        return ""
    text = f"osmium {build['version']}, commit {build['commit']}"
    if build.get("uncommitted_changes"):
        text += " with uncommitted changes"
    return f"<p>{html.escape(text)}</p>"


def _repeat_label(repeat: int | str) -> int | str:
    """Repeats count from 1; `--profile`'s extra run is named."""
    return repeat + 1 if isinstance(repeat, int) else repeat


def _profiled(results: dict[str, Any]) -> bool:
    """Whether the bench ran with --profile (results from before it have no such setting)."""
    return bool(results.get("settings", {}).get("profile"))


def _profile_cell(run: dict[str, Any]) -> object:
    """The run's flame graph, or why py-spy left none; nothing for a run not profiled."""
    if run.get("profile"):
        return link(run["profile"], "flame graph")
    return run.get("profile_error", MISSING)


def _files(results: dict[str, Any]) -> str:
    """Links to results.json and to every run's server log, psutil series and flame graph."""
    profiled = _profiled(results)
    rows = (
        (
            run["scenario"], run["server"], _repeat_label(run["repeat"]),
            link(run["log"], "server log") if run.get("log") else MISSING,
            link(run["samples"], "psutil samples") if run.get("samples") else MISSING,
            run.get("exit_code", MISSING),
            *((_profile_cell(run),) if profiled else ()),
        )
        for run in results["runs"]
    )  # fmt: skip
    columns = ("scenario", "server", "repeat", "log", "samples", "exit code")
    every = link("results.json", "results.json")
    return f"<p>{every}: every run with h2load's whole report, medians and spread.</p>" + (
        html_table((*columns, *(("profile",) if profiled else ())), rows)
    )


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>{content}" if content else ""


def _html(results: dict[str, Any], images: list[str]) -> str:
    ratios = "".join(f"<li>{html.escape(ratio_line(r))}</li>" for r in results.get("ratios", []))
    environment = html.escape(", ".join(f"{k}: {v}" for k, v in results["environment"].items()))
    servers = [
        (server["name"], server["loop"], server["workers"] or MISSING, server["command"])
        for server in results.get("servers", [])
    ]
    scenarios = [scenario_cells(scenario) for scenario in results.get("scenarios", [])]
    tables = "".join(
        f"<h3>{html.escape(title)}</h3>" + html_table(columns, rows)
        for title, columns, rows in summary_tables(results["summary"])
    )
    body = (
        _osmium_line(results)
        + f"<p>{environment}</p>"
        + _section("How to read this", _reading_notes(results))
        + _section(
            "Servers",
            html_table(("server", "event loop", "workers", "command"), servers) if servers else "",
        )
        + _section("Scenarios", html_table(SCENARIO_COLUMNS, scenarios) if scenarios else "")
        + _section("Results", tables)
        + _section("Ratios (medians)", f"<ul>{ratios}</ul>" if ratios else "")
        + figures(images)
        + _section("Files", _files(results))
    )
    return page(f"osmium benchmark {results['id']}", body)
