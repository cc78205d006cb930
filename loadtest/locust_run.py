"""`nox -s loadtest`: locust's HTTP/2 user journeys against a fresh, sampled osmium on 127.0.0.1.

Writes locust's stats, a summary, the psutil series, plots and index.html to results/<run>/.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack, suppress
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import matplotlib.pyplot as plt
import psutil
from rich.console import Console
from rich.table import Table

from loadtest.bench import publish
from loadtest.environment import describe
from loadtest.launcher import LaunchedServer, LaunchError, free_port, osmium
from loadtest.report import MIB, figures, html_table, page, resources_plot
from loadtest.sampler import SamplerProcess, load

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_USERS = 500
MAX_RUN_SECONDS = 600
MAX_DISTRIBUTED = 16
#: Seconds a simulated user may take to finish its current task once the run time is up.
USER_STOP_TIMEOUT = 5
#: Locust's start-up, its workers connecting, and writing its reports, on top of the run time.
LOCUST_OVERHEAD = 60.0
WORKERS_CONNECT_TIMEOUT = 30
CHILD_STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.2
STEM = "locust"  # locust writes locust.json, locust_stats_history.csv, ... into the run folder
TIMESPAN = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


class LoadTestError(Exception):
    """The load test cannot start as asked; the message is one line for the user."""


def run_seconds(text: str) -> int:
    """Locust's --run-time syntax (`30`, `30s`, `2m`, `1h30m`) in seconds, for our own deadline."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = TIMESPAN.fullmatch(text)
    if not text or match is None:
        raise argparse.ArgumentTypeError(f"not a run time: {text!r} (e.g. 30s, 2m, 1h30m)")
    hours, minutes, seconds = (int(match[unit] or 0) for unit in "hms")
    return hours * 3600 + minutes * 60 + seconds


def locust_command(arguments: argparse.Namespace, url: str, run_dir: Path) -> list[str]:
    """The headless run (or its master): ramp, duration, and locust's own JSON, CSV and HTML."""
    stem = str(run_dir / STEM)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", url, "--headless",
        "--users", str(arguments.users), "--spawn-rate", str(arguments.spawn_rate),
        "--run-time", f"{arguments.run_seconds}s", "--stop-timeout", str(USER_STOP_TIMEOUT),
        "--only-summary", "--json-file", stem, "--csv", stem, "--html", f"{stem}.html",
        "--exit-code-on-error", "1",
    ]  # fmt: skip
    if arguments.distributed:
        command += [
            "--master", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(arguments.master_port),
            "--expect-workers", str(arguments.distributed),
            "--expect-workers-max-wait", str(WORKERS_CONNECT_TIMEOUT),
        ]  # fmt: skip
    return command


def worker_command(arguments: argparse.Namespace, url: str) -> list[str]:
    """A worker takes its users, ramp and run time from the master; it only needs to find it."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", url, "--worker",
        "--master-host", "127.0.0.1", "--master-port", str(arguments.master_port),
    ]  # fmt: skip


def spawn(stack: ExitStack, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a child writing to `log`; `stack` stops it however the run ends.

    cwd is the run folder, so no locust.conf or pyproject.toml of the caller's changes the run.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log.parent
        )
    stack.callback(stop_child, process)
    return process


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (locust then still writes its reports), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(CHILD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_sampler(sampler: SamplerProcess) -> None:
    """Stop the sampler if it got as far as starting (its __exit__ assumes it did)."""
    if sampler.process is not None:
        sampler.__exit__(None, None, None)


def running(process: psutil.Process) -> bool:
    """Still running (a zombie has exited; init reaps it once its parent is gone)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ServerTree:
    """The server's processes as last seen, so that orphans of a crashed acceptor are stopped too.

    osmium's acceptor stops its workers when it is stopped, but a worker whose acceptor was
    killed goes on serving; only a pid remembered from before can find it.
    """

    def __init__(self) -> None:
        self.known: dict[int, psutil.Process] = {}
        self.leftovers: list[int] = []

    def watch(self, root_pid: int) -> None:
        with suppress(psutil.NoSuchProcess):
            for child in psutil.Process(root_pid).children(recursive=True):
                self.known.setdefault(child.pid, child)

    def stop_leftovers(self) -> None:
        """After the acceptor stopped: terminate, then kill, what is still running."""
        alive = [process for process in self.known.values() if running(process)]
        for process in alive:
            with suppress(psutil.NoSuchProcess):
                process.terminate()
        _, hanging = psutil.wait_procs(alive, timeout=CHILD_STOP_TIMEOUT)
        for process in hanging:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(hanging, timeout=CHILD_STOP_TIMEOUT)
        self.leftovers = [process.pid for process in alive]


def supervise(
    master: subprocess.Popen[bytes],
    workers: list[subprocess.Popen[bytes]],
    server: LaunchedServer,
    tree: ServerTree,
    timeout: float,
) -> list[str]:
    """Wait for locust to finish; stop early if the server or a worker dies, or at `timeout`.

    Without this a dead worker leaves the master waiting, and a dead server turns the rest of
    the run into connection errors. Each poll also notes the server's (re)spawned workers.
    """
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while True:
        tree.watch(server.pid)
        try:
            master.wait(POLL_INTERVAL)
            break
        except subprocess.TimeoutExpired:
            pass
        if server.process.poll() is not None:
            return ["stopped early: the server exited during the run"]
        for index, worker in enumerate(workers, 1):
            if worker.poll():  # 0 is a worker the master told to quit, just before it exits
                return [f"stopped early: locust worker {index} failed"]
        if time.monotonic() > deadline:
            return [f"stopped early: locust did not finish within {timeout:.0f} s"]
    problems = []
    for index, worker in enumerate(workers, 1):  # the master tells its workers to quit as it exits
        try:
            worker.wait(CHILD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"locust worker {index} did not quit with the master")
    return problems


def run_locust(arguments: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Server, sampler, locust (and workers), in that order, all stopped in reverse on any exit."""
    problems: list[str] = []
    server = LaunchedServer(osmium(arguments.workers), run_dir / "server.log")
    tree = ServerTree()
    with ExitStack() as stack:
        stack.callback(tree.stop_leftovers)  # runs last, once the acceptor has stopped
        stack.callback(server.stop)  # registered before start(), which may fail half-way
        server.start()
        sampler = SamplerProcess(server.pid, run_dir / "samples.jsonl")
        stack.callback(stop_sampler, sampler)
        sampler.__enter__()
        command = locust_command(arguments, server.url, run_dir)
        master = spawn(stack, command, run_dir / "locust.log")
        workers = [
            spawn(stack, worker_command(arguments, server.url), run_dir / f"locust-worker-{i}.log")
            for i in range(1, arguments.distributed + 1)
        ]
        timeout = arguments.run_seconds + USER_STOP_TIMEOUT + LOCUST_OVERHEAD
        problems += supervise(master, workers, server, tree, timeout)
    exit_codes = {
        "locust": master.returncode,
        "locust_workers": [worker.returncode for worker in workers],
        "server": server.exit_code,
    }
    if master.returncode:
        problems.append(f"locust exited with code {master.returncode} (1: failed requests)")
    for index, code in enumerate(exit_codes["locust_workers"], 1):
        if code:
            problems.append(f"locust worker {index} exited with code {code}")
    if server.exit_code:
        problems.append(f"the server exited with code {server.exit_code}")
    if tree.leftovers:
        problems.append(f"server processes {tree.leftovers} outlived the acceptor; stopped them")
    return {"url": server.url, "exit_codes": exit_codes, "problems": problems}


def percentile(histogram: Counter[int], fraction: float) -> int:
    """Locust's own percentile over its rounded response-time histogram (ms -> count)."""
    total = sum(histogram.values())
    wanted = int(total * fraction)
    processed = 0
    for response_time in sorted(histogram, reverse=True):
        processed += histogram[response_time]
        if total - processed <= wanted:
            return response_time
    return 0


def histogram(entry: dict[str, Any]) -> Counter[int]:
    """JSON turned the histogram's int keys into strings."""
    return Counter({int(key): count for key, count in entry["response_times"].items()})


def summarise(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-journey rows from locust's JSON entries (which hold no aggregate row).

    req/s divides by the span from the first entry's start to the last request, as locust does.
    """
    starts = [entry["start_time"] for entry in stats]
    ends = [entry["last_request_timestamp"] for entry in stats if entry["last_request_timestamp"]]
    duration = max(ends) - min(starts) if starts and ends else 0.0

    def row(entries: list[dict[str, Any]]) -> dict[str, Any]:
        times: Counter[int] = sum((histogram(entry) for entry in entries), Counter())
        requests = sum(entry["num_requests"] for entry in entries)
        return {
            "requests": requests,
            "failures": sum(entry["num_failures"] for entry in entries),
            "median_ms": percentile(times, 0.5),
            "p95_ms": percentile(times, 0.95),
            "req_per_s": round(requests / duration, 1) if duration > 0 else 0.0,
        }

    journeys = [{"name": e["name"], "method": e["method"], **row([e])} for e in stats]
    return {**row(stats), "duration_s": round(duration, 2), "journeys": journeys}


def summarise_samples(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Peaks of the server's whole process tree, for the summary line and the report."""
    totals = [sample["total"] for sample in samples]
    if not totals:
        return {}
    return {
        "samples": len(totals),
        "peak_cpu_percent": max(total["cpu_percent"] for total in totals),
        "peak_rss_mib": round(max(total["rss"] for total in totals) / MIB, 1),
        "peak_tcp_connections": max(total["tcp_connections"] for total in totals),
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def read_stats(path: Path) -> list[dict[str, Any]]:
    """Locust's --json-file output; absent when locust died before writing it."""
    try:
        return list(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def per_second(stats: list[dict[str, Any]], key: str) -> Counter[int]:
    """Locust's exact per-second counts (unix second -> count), summed over the journeys."""
    total: Counter[int] = Counter()
    for entry in stats:
        total.update({int(second): count for second, count in entry[key].items()})
    return total


def timeline_plot(path: Path, stats: list[dict[str, Any]], history: list[dict[str, str]]) -> Path:
    """Requests and failures per second (exact), users and p50/p95 (locust's sliding 10 s window).

    Locust's JSON counts requests per second; its CSV history adds users and percentiles.
    """
    requests = per_second(stats, "num_reqs_per_sec")
    failures = per_second(stats, "num_fail_per_sec")
    rows = [row for row in history if row.get("Name") == "Aggregated"]
    start = min([*requests, *(int(row["Timestamp"]) for row in rows)], default=0)
    seconds = list(range(start, max(requests, default=start) + 1))

    def column(name: str) -> list[float]:
        return [float("nan") if row[name] == "N/A" else float(row[name]) for row in rows]

    history_t = [int(row["Timestamp"]) - start for row in rows]
    figure, (rate, latency) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    rate.plot([t - start for t in seconds], [requests[t] for t in seconds], label="requests/s")
    rate.plot([t - start for t in seconds], [failures[t] for t in seconds], label="failures/s")
    rate.set_ylabel("per second")
    rate.legend(fontsize="small", loc="upper left")
    users = rate.twinx()
    users.plot(history_t, column("User Count"), color="grey", linestyle="--")
    users.set_ylabel("users (dashed)")
    latency.plot(history_t, column("50%"), label="p50")
    latency.plot(history_t, column("95%"), label="p95")
    latency.set_ylabel("ms, last 10 s")
    latency.set_xlabel("seconds")
    latency.legend(fontsize="small")
    rate.set_title("locust")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def environment() -> dict[str, str]:
    return describe(("locust", "httpx", "h2"), cpus=str(os.cpu_count()))


def write_index(run_dir: Path, results: dict[str, Any], images: list[str]) -> Path:
    """A page with the summary, the journeys, the plots and links to locust's own files."""
    summary = results["summary"]
    columns = ("journey", "method", "requests", "failures", "p50 ms", "p95 ms", "req/s")
    rows = [
        (row["name"], row["method"], row["requests"], row["failures"], row["median_ms"],
         row["p95_ms"], row["req_per_s"])
        for row in [*summary["journeys"], {"name": "total", "method": "", **summary}]
    ]  # fmt: skip
    facts = {**results["settings"], **results["exit_codes"], **results["server"]}
    problems = "".join(f"<li>{html.escape(problem)}</li>" for problem in results["problems"])
    links = [f"{STEM}.html", "results.json", "samples.jsonl", "server.log", "locust.log"]
    links += [f"locust-worker-{i}.log" for i in range(1, results["settings"]["distributed"] + 1)]
    body = (
        f"<p>{html.escape(', '.join(f'{k}: {v}' for k, v in results['environment'].items()))}</p>"
        f"<p>{html.escape(', '.join(f'{k}: {v}' for k, v in facts.items()))}</p>"
        + (f"<h2>Problems</h2><ul>{problems}</ul>" if problems else "")
        + html_table(columns, rows)
        + "<p>"
        + " ".join(f'<a href="{name}">{name}</a>' for name in links)
        + "</p>"
        + figures(images)
    )
    index = run_dir / "index.html"
    index.write_text(page(f"osmium load test {results['id']}", body))
    return index


def report(run_dir: Path, results: dict[str, Any]) -> Path:
    """results.json, the resource and timeline plots, index.html; returns the index path."""
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    images = []
    if results["server"]:
        run = {"server": "osmium", "scenario": f"locust, {results['settings']['users']} users"}
        plot = resources_plot(run_dir / "resources.png", run, run_dir / "samples.jsonl")
        images.append(plot.name)
    if results["locust"]["stats"]:
        history = read_csv(run_dir / f"{STEM}_stats_history.csv")
        timeline = timeline_plot(run_dir / "timeline.png", results["locust"]["stats"], history)
        images.append(timeline.name)
    return write_index(run_dir, results, images)


def print_summary(console: Console, results: dict[str, Any]) -> None:
    summary = results["summary"]
    table = Table(title=f"locust: {results['settings']['users']} users, HTTP/2")
    for column in ("journey", "requests", "failures", "p50 ms", "p95 ms", "req/s"):
        table.add_column(column, justify="left" if column == "journey" else "right")
    for row in [*summary["journeys"], {"name": "total", **summary}]:
        numbers = (f"{row['requests']:,}", str(row["failures"]), str(row["median_ms"]),
                   str(row["p95_ms"]), f"{row['req_per_s']:,.1f}")  # fmt: skip
        table.add_row(row["name"], *numbers)
    console.print(table)
    for problem in results["problems"]:
        console.print(f"[red]problem:[/red] {problem}")


def load_test(arguments: argparse.Namespace, console: Console) -> tuple[Path, bool]:
    """One run; the index path, and whether it passed (results are written either way)."""
    arguments.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = (arguments.output / f"{arguments.session}-{stamp}").resolve()
    run_dir.mkdir()
    arguments.master_port = free_port()
    started = time.monotonic()
    try:
        outcome = run_locust(arguments, run_dir)
    except LaunchError as error:
        raise LoadTestError(str(error)) from None
    except RuntimeError as error:  # the sampler could not start
        raise LoadTestError(str(error)) from None
    stats = read_stats(run_dir / f"{STEM}.json")
    summary = summarise(stats)
    problems = outcome["problems"]
    if not stats or not summary["requests"]:
        problems.append("locust recorded no requests")
    settings = {key: getattr(arguments, key) for key in ("users", "spawn_rate", "distributed")}
    settings |= {"run_time_s": arguments.run_seconds, "server_workers": arguments.workers}
    results = {
        "id": run_dir.name,
        "environment": environment(),
        "settings": {**settings, "host": outcome["url"]},
        "elapsed_s": round(time.monotonic() - started, 1),
        "exit_codes": outcome["exit_codes"],
        "problems": problems,
        "summary": summary,
        "server": summarise_samples(load(run_dir / "samples.jsonl")),
        "samples": "samples.jsonl",
        "locust": {"stats": stats, "failures": read_csv(run_dir / f"{STEM}_failures.csv")},
    }
    index = report(run_dir, results)
    publish(arguments.output, run_dir)
    print_summary(console, results)
    return index, not problems


def interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the server, sampler and locust are still stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="loadtest", description=__doc__)
    parser.add_argument("--users", type=int, default=50, help=f"simulated users (<= {MAX_USERS})")
    parser.add_argument("--spawn-rate", type=float, default=10, help="users started per second")
    parser.add_argument(
        "--run-time", type=run_seconds, default="30s", dest="run_seconds", metavar="TIME",
        help=f"locust's run time, e.g. 30s, 2m (<= {MAX_RUN_SECONDS} s)",
    )  # fmt: skip
    parser.add_argument(
        "--distributed", type=int, default=0, metavar="N",
        help="run locust as a master and N worker processes",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="osmium worker processes")
    parser.add_argument("--output", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--session", default="loadtest", help="prefix of the run folder name")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.users <= MAX_USERS:
        parser.error(f"--users must be between 1 and {MAX_USERS}")
    if arguments.spawn_rate <= 0:
        parser.error("--spawn-rate must be positive")
    if not 1 <= arguments.run_seconds <= MAX_RUN_SECONDS:
        parser.error(f"--run-time must be between 1 s and {MAX_RUN_SECONDS} s")
    if not 0 <= arguments.distributed <= MAX_DISTRIBUTED:
        parser.error(f"--distributed must be between 0 and {MAX_DISTRIBUTED}")
    if arguments.workers < 1:
        parser.error("--workers must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    interrupt_on_sigterm()
    console = Console(stderr=False)
    try:
        index, passed = load_test(arguments, console)
    except LoadTestError as error:
        print(f"loadtest: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadtest: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(f"report: {index}")  # plain print: rich would wrap a long path
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
