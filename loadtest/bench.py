"""`nox -s bench`: h2load scenarios against osmium (and peers), sampled, summarised, reported.

Each run starts the server fresh as its own process tree, samples it with psutil while h2load
drives it, and stops it. Repeats are interleaved across servers so drift hits all of them alike;
the summary gives medians and spread, the ratios compare medians measured in this one run.
Every run also records the server tree's CPU time over the load (requests per CPU second) and,
from h2load's per-request log, latency percentiles. Body scenarios (`unit = "MB/s"`, the `bodies`
group among them) report body bytes per second. The `websocket` group (opt-in: `--only
websocket`) drives the demo app's `/ws/echo` with loadtest/ws_client.py instead, over HTTP/1.1
and over HTTP/2 (RFC 8441); its rows count echoed messages where the others count requests.
With `--profile`, osmium runs each scenario once more under py-spy (loadtest/profiler.py), which
leaves a flame graph of its workers next to the run's server log; that run is not in the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import trustme
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from loadtest import h2load, profiler, ws_client
from loadtest.environment import describe
from loadtest.launcher import (
    KNOWN_SERVERS,
    LaunchedServer,
    LaunchError,
    ServerSpec,
    TLSFiles,
    osmium,
    resolved_loop,
    unavailable_reason,
)
from loadtest.report import ratio_line, summary_tables, write_report
from loadtest.sampler import SamplerProcess, tree_cpu_seconds
from loadtest.ws_client import MODES, EchoPlan, WsClientError, WsResult
from osmium import __version__ as osmium_version

SCENARIOS = Path(__file__).with_name("scenarios.toml")
REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK_REQUESTS = 5000
H2LOAD_TIMEOUT = 300.0
#: What a scenario's rates are reported in: requests, or body bytes (10^6 a MB, as for WebSockets).
UNITS = ("req/s", "MB/s")
MEGABYTE = 1e6
#: Wide enough for the summary table's columns (rich assumes 80 columns in a CI log, and would
#: cut the numbers short).
TABLE_WIDTH = 140


class BenchError(Exception):
    """A benchmark that cannot run as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str = "/"
    requests: int | None = None
    duration: float | None = None
    clients: int = 1
    streams: int = 1
    tls: bool = False
    #: HTTP/1.1 (`h2load --h1`): one request at a time per keep-alive connection.
    h1: bool = False
    #: Bytes of request body each request sends (`h2load -d`, which makes it a POST); 0: none.
    upload: int = 0
    #: "MB/s": rates in body bytes per second (the request bodies if `upload`, else the
    #: responses'); "req/s": requests per second.
    unit: str = "req/s"
    #: A name `--only` selects this scenario by, with the others of its group.
    group: str | None = None


@dataclass(frozen=True)
class WebSocketScenario:
    """An echo plan that loadtest/ws_client.py runs against the demo app's echo endpoint."""

    name: str
    plan: EchoPlan
    path: str = "/ws/echo"
    group: str = "websocket"


#: Opt-in (`--only websocket`, or by name): with a fresh server per scenario the group takes
#: ~40 s a server and 3 repeats, more than the default run should grow by. The `ws-h2-` ones
#: are the same plans over HTTP/2 (RFC 8441), on peers that serve HTTP/2.
WEBSOCKET_SCENARIOS = (
    WebSocketScenario("ws-roundtrip", MODES["roundtrip"]),
    WebSocketScenario("ws-200-connections", MODES["fanout"]),
    WebSocketScenario("ws-16mib", MODES["big"]),
    WebSocketScenario("ws-h2-roundtrip", replace(MODES["roundtrip"], http2=True)),
    WebSocketScenario("ws-h2-200-connections", replace(MODES["fanout"], http2=True)),
    WebSocketScenario("ws-h2-16mib", replace(MODES["big"], http2=True)),
)
GROUPS = {"websocket": WEBSOCKET_SCENARIOS}
#: Peers' flags for the WebSocket implementation the comparison is against (uvicorn's `auto`
#: would pick whichever library happens to be installed).
WEBSOCKET_ARGS = {"uvicorn": ("--ws", "websockets"), "uvicorn-httptools": ("--ws", "websockets")}
WS_CLIENT_TIMEOUT = 120.0

AnyScenario = Scenario | WebSocketScenario


def load_scenarios(path: Path) -> list[Scenario]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"scenario file {path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise BenchError(f"scenario file {path}: {error}") from None
    scenarios = []
    for entry in document.get("scenario", []):
        try:
            scenario = Scenario(**entry)
        except TypeError as error:
            raise BenchError(f"scenario file {path}: {error}") from None
        if (scenario.requests is None) == (scenario.duration is None):
            raise BenchError(f"scenario {scenario.name}: give exactly one of requests, duration")
        if scenario.unit not in UNITS:
            raise BenchError(f"scenario {scenario.name}: unit must be one of {', '.join(UNITS)}")
        if scenario.upload < 0:
            raise BenchError(f"scenario {scenario.name}: upload must be 0 or more bytes")
        scenarios.append(scenario)
    if not scenarios:
        raise BenchError(f"scenario file {path} has no [[scenario]]")
    return scenarios


@contextmanager
def throwaway_certificates() -> Iterator[TLSFiles]:
    """A throwaway CA and server certificate for 127.0.0.1, deleted after the run."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="osmium-bench-tls-") as folder:
        certfile, keyfile = Path(folder, "cert.pem"), Path(folder, "key.pem")
        certificate.private_key_pem.write_to_path(str(keyfile))
        certificate.cert_chain_pems[0].write_to_path(str(certfile))
        yield TLSFiles(str(certfile), str(keyfile))


def select(scenarios: list[Scenario], only: list[str] | None) -> list[AnyScenario]:
    """The file's scenarios, or those `only` names: scenario names and group names (the file's
    `group` values and the WebSocket one), in the file's order, then the WebSocket ones."""
    if not only:
        return list(scenarios)
    named: dict[str, list[AnyScenario]] = {s.name: [s] for s in (*scenarios, *WEBSOCKET_SCENARIOS)}
    for scenario in scenarios:
        if scenario.group is not None:
            named.setdefault(scenario.group, []).append(scenario)
    named |= {group: list(members) for group, members in GROUPS.items()}
    unknown = [name for name in only if name not in named]
    if unknown:
        raise BenchError(
            f"--only: unknown scenario or group {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(named)})"
        )
    chosen = {scenario for name in only for scenario in named[name]}
    return [s for s in (*scenarios, *WEBSOCKET_SCENARIOS) if s in chosen]


def runs_on(scenario: AnyScenario, server: ServerSpec) -> bool:
    """`h1` scenarios and WebSockets over HTTP/1.1 run on servers that speak HTTP/1.1, the rest
    on those that speak HTTP/2 (and, for WebSockets, RFC 8441)."""
    if isinstance(scenario, WebSocketScenario):
        if not scenario.plan.http2:
            return server.http1
        return server.http2 and server.websocket_h2
    return server.http1 if scenario.h1 else server.http2


def protocol(scenario: AnyScenario) -> str:
    """The wire protocol a scenario loads the server over, as the report names it."""
    if isinstance(scenario, WebSocketScenario):
        return "WebSocket over h2c (RFC 8441)" if scenario.plan.http2 else "WebSocket over HTTP/1.1"
    if scenario.h1:
        return "HTTP/1.1 over TLS" if scenario.tls else "HTTP/1.1 (h1)"
    return "h2 over TLS (ALPN)" if scenario.tls else "h2c (prior knowledge)"


def describe_scenario(scenario: AnyScenario) -> dict[str, Any]:
    """The scenario's fields for results.json, with its protocol and unit spelled out."""
    unit = scenario.unit if isinstance(scenario, Scenario) else "msg/s"
    return asdict(scenario) | {"protocol": protocol(scenario), "unit": unit}


def new_record(
    scenario: AnyScenario, spec: ServerSpec, repeat: int | str, profiled: bool = False
) -> dict[str, Any]:
    """A run's identity and where its server log, psutil series and flame graph go."""
    stem = f"{scenario.name}-{spec.name}-{repeat}"
    record: dict[str, Any] = {"scenario": scenario.name, "server": spec.name, "repeat": repeat}
    record["log"] = f"runs/{stem}.log"
    record["samples"] = f"runs/{stem}.jsonl"
    if profiled:
        record["profile"] = f"runs/{stem}-profile.svg"
    return record


#: The repeat number of `--profile`'s extra run of osmium, after the measured ones.
PROFILED = "profiled"


def profiled_plan(
    scenarios: list[AnyScenario], servers: list[ServerSpec]
) -> list[tuple[str, AnyScenario, ServerSpec]]:
    """`--profile`'s runs: osmium once more on each scenario, recorded by py-spy. py-spy takes
    about a tenth of a core, so these runs stay out of the medians and ratios."""
    return [
        (PROFILED, scenario, server)
        for scenario in scenarios
        for server in servers
        if server.name == "osmium" and runs_on(scenario, server)
    ]


@contextmanager
def profiling(
    record: dict[str, Any], pid: int, run_dir: Path, py_spy: str | None
) -> Iterator[None]:
    """py-spy records the server tree around the load of a profiled run; when it could not
    attach, the run still counts and its record says why there is no flame graph."""
    if py_spy is None:
        yield
        return
    with profiler.Profiler(pid, run_dir / record["profile"], py_spy) as recording:
        yield
    if recording.error is not None:
        record["profile"] = None
        record["profile_error"] = recording.error


def h2load_options(scenario: Scenario, scratch: Path) -> dict[str, Any]:
    """h2load's arguments for the scenario; the request body and the per-request log go in
    `scratch` (a body of random bytes, so nothing on the way can compress it)."""
    options: dict[str, Any] = {
        "requests": scenario.requests,
        "duration": scenario.duration,
        "clients": scenario.clients,
        "streams": scenario.streams,
        "log_file": str(scratch / "requests.tsv"),
        "extra_args": ("--h1",) if scenario.h1 else (),
    }
    if scenario.upload:
        body = scratch / "body"
        body.write_bytes(random.Random(0).randbytes(scenario.upload))
        options["data_file"] = str(body)
    return options


def run_once(
    spec: ServerSpec,
    scenario: Scenario,
    repeat: int | str,
    run_dir: Path,
    tls: TLSFiles,
    py_spy: str | None = None,
) -> dict[str, Any]:
    """One fresh server, sampled (and, with `py_spy`, profiled) while h2load runs the scenario
    once; the server tree's CPU time is read just before and just after h2load."""
    record = new_record(scenario, spec, repeat, profiled=py_spy is not None)
    launched = LaunchedServer(spec, run_dir / record["log"], tls if scenario.tls else None)
    with tempfile.TemporaryDirectory(prefix="osmium-bench-h2load-") as folder:
        options = h2load_options(scenario, Path(folder))
        with launched as server, SamplerProcess(server.pid, run_dir / record["samples"]):
            url = server.url + scenario.path
            record["command"] = shlex.join(h2load.command(url, **options))
            cpu_before = tree_cpu_seconds(server.pid)
            with profiling(record, server.pid, run_dir, py_spy):
                result = h2load.run(url, **options, timeout=H2LOAD_TIMEOUT)
            server_cpu = tree_cpu_seconds(server.pid) - cpu_before
        logged = h2load.read_log(Path(options["log_file"]))
    if len(logged) != result.requests.done:
        raise h2load.H2LoadError(
            f"the request log has {len(logged)} rows for {result.requests.done} requests done"
        )
    record["exit_code"] = launched.exit_code
    record["unit"] = scenario.unit
    record["server_cpu_s"] = server_cpu
    record["h2load"] = h2load.as_dict(result)
    record["metrics"] = metrics(scenario, result, server_cpu, h2load.latency_percentiles(logged))
    return record


def per_cpu_second(count: float, cpu_seconds: float) -> float:
    """Work per CPU second; 0 when the clock (10 ms ticks) saw no CPU at all."""
    return count / cpu_seconds if cpu_seconds > 0 else 0.0


def body_megabytes_per_second(scenario: Scenario, result: h2load.H2LoadResult) -> float:
    """Request bodies of the answered requests (uploads) or response bodies received, per
    second of the measured time (-D's own, as h2load's rates are; else the whole run)."""
    seconds = scenario.duration or result.duration
    if scenario.upload:
        body_bytes = result.requests.answered * scenario.upload
    else:
        body_bytes = result.traffic.data
    return body_bytes / seconds / MEGABYTE if seconds > 0 else 0.0


def metrics(
    scenario: Scenario,
    result: h2load.H2LoadResult,
    server_cpu: float,
    latency: h2load.Percentiles | None,
) -> dict[str, float]:
    """The numbers the summary compares; no percentiles when no request got a response."""
    values = {
        "req_per_s": result.requests_per_second,
        "latency_mean_ms": result.request_time.mean * 1000,
        "req_per_cpu_s": per_cpu_second(result.requests.answered, server_cpu),
        "succeeded": result.requests.succeeded,
        "failed": result.requests.failed,  # h2load counts errored and timed out inside it
    }
    if scenario.unit == "MB/s":
        values["mb_per_s"] = body_megabytes_per_second(scenario, result)
    if latency is not None:
        for name, seconds in asdict(latency).items():
            values[f"latency_{name}_ms"] = seconds * 1000
    return values


def websocket_spec(spec: ServerSpec) -> ServerSpec:
    """The server's command line with its WebSocket flags, if it needs any."""
    extra = WEBSOCKET_ARGS.get(spec.name, ())
    return replace(spec, command=spec.command + extra) if extra else spec


def run_websocket_once(
    spec: ServerSpec,
    scenario: WebSocketScenario,
    repeat: int | str,
    run_dir: Path,
    py_spy: str | None = None,
) -> dict[str, Any]:
    """One fresh server, sampled (and, with `py_spy`, profiled) while the WebSocket client runs
    the scenario's plan once."""
    record = new_record(scenario, spec, repeat, profiled=py_spy is not None)
    launched = LaunchedServer(websocket_spec(spec), run_dir / record["log"])
    with launched as server, SamplerProcess(server.pid, run_dir / record["samples"]):
        url = "ws" + server.url.removeprefix("http") + scenario.path
        cpu_before = tree_cpu_seconds(server.pid)
        with profiling(record, server.pid, run_dir, py_spy):
            result = ws_client.run(url, scenario.plan, timeout=WS_CLIENT_TIMEOUT)
        server_cpu = tree_cpu_seconds(server.pid) - cpu_before
    record["exit_code"] = launched.exit_code
    record["unit"] = "msg/s"
    record["server_cpu_s"] = server_cpu
    record["ws_client"] = ws_client.as_dict(result)
    record["metrics"] = websocket_metrics(result, server_cpu)
    return record


def websocket_metrics(result: WsResult, server_cpu: float) -> dict[str, float]:
    """The summary's numbers: an echoed message stands for a request. The server's CPU per
    message (handshakes included) holds steadier than rates on a busy machine."""
    return {
        "req_per_s": result.messages_per_second,
        "latency_mean_ms": result.latency.mean * 1000,
        "mb_per_s": result.megabytes_per_second,
        "server_cpu_us_per_msg": server_cpu / result.messages * 1e6 if result.messages else 0.0,
        "req_per_cpu_s": per_cpu_second(result.messages, server_cpu),
        "succeeded": result.messages,
        "failed": result.failed,
    }


#: The metrics the summary gives medians and spread of, where a run has them: percentiles where
#: a request got a response, MB/s for body scenarios and WebSockets, CPU per message for these.
SUMMARY_METRICS = (
    "req_per_s",
    "latency_mean_ms",
    "req_per_cpu_s",
    "mb_per_s",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "server_cpu_us_per_msg",
)


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and server: medians, min and max over the repeats of each run's metrics."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["scenario"], run["server"]), []).append(run)
    summary = []
    for (scenario, server), group in groups.items():
        values = [run["metrics"] for run in group]
        row: dict[str, Any] = {"scenario": scenario, "server": server, "repeats": len(values)}
        row["unit"] = group[0].get("unit", "req/s")
        for name in SUMMARY_METRICS:
            series = [value[name] for value in values if name in value]
            if not series:
                continue  # a metric this kind of run has not
            row[name] = {
                "median": statistics.median(series),
                "min": min(series),
                "max": max(series),
                "values": series,
            }
        row["failed"] = int(sum(value["failed"] for value in values))
        summary.append(row)
    return summary


def median_ratio(own: dict[str, Any], peer: dict[str, Any], metric: str) -> float | None:
    if metric not in own or metric not in peer or not peer[metric]["median"]:
        return None
    return float(own[metric]["median"] / peer[metric]["median"])


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """osmium's medians over each peer's, per scenario: `ratio` of the throughput in the row's
    unit (MB/s for body scenarios, else req/s or msg/s), `cpu_ratio` of requests per CPU second."""
    by_key = {(row["scenario"], row["server"]): row for row in summary}
    result = []
    for (scenario, server), row in by_key.items():
        own = by_key.get((scenario, "osmium"))
        if server == "osmium" or own is None:
            continue
        unit = row.get("unit", "req/s")
        ratio = median_ratio(own, row, "mb_per_s" if unit == "MB/s" else "req_per_s")
        if ratio is None:
            continue
        entry = {"scenario": scenario, "peer": server, "ratio": ratio, "unit": unit}
        cpu_ratio = median_ratio(own, row, "req_per_cpu_s")
        if cpu_ratio is not None:
            entry["cpu_ratio"] = cpu_ratio
        result.append(entry)
    return result


def environment() -> dict[str, str]:
    return describe(("h2", "websockets"), cpus=str(os.cpu_count()), h2load=h2load.version())


def git_output(*args: str) -> str | None:
    """A git command's output in this checkout; None outside one or without git."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def osmium_build() -> dict[str, Any]:
    """Which osmium was measured: its version, and the commit when run from a git checkout."""
    commit = git_output("rev-parse", "--short", "HEAD")
    changed = git_output("status", "--porcelain", "--untracked-files=no")
    return {
        "version": osmium_version,
        "commit": commit or "unknown",
        "uncommitted_changes": bool(changed) if commit else None,
    }


def event_loop(spec: ServerSpec, asked: str | None) -> str:
    """The loop a server ran on: its spec's own record where the launcher keeps one; else the
    one asked for with --loop, or its default (a --peer command line says its own)."""
    loop = getattr(spec, "loop", None)
    if loop:
        return str(loop)
    if spec.name not in KNOWN_SERVERS:
        return "unknown (as its command line says)"
    return asked or "the server's default"


def describe_server(spec: ServerSpec, arguments: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": spec.name,
        "loop": event_loop(spec, arguments.loop),
        "workers": arguments.workers if spec.name in KNOWN_SERVERS else None,
        "command": shlex.join(spec.command),
    }


def publish(output: Path, run_dir: Path) -> None:
    """Point `latest` at the newest run (relative, so the results folder can move)."""
    latest = output / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name, target_is_directory=True)


def print_summary(console: Console, summary: list[dict[str, Any]], ratio_rows: list[dict]) -> None:
    for title, columns, rows in summary_tables(summary):
        table = Table(title=title)
        for column in columns:
            table.add_column(
                column, justify="left" if column in ("scenario", "server") else "right"
            )
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
    for row in ratio_rows:
        console.print(ratio_line(row))


def server_specs(arguments: argparse.Namespace, scenarios: list[AnyScenario]) -> list[ServerSpec]:
    """osmium, the known peers asked for, and peers given as command lines (`NAME=COMMAND`)."""
    specs = [osmium(arguments.workers, loop=arguments.loop)]
    for name in arguments.compare:
        if name not in KNOWN_SERVERS:
            raise BenchError(f"unknown server {name!r} (known: {', '.join(KNOWN_SERVERS)})")
        if (reason := unavailable_reason(name)) is not None:
            raise BenchError(f"--compare {name}: {reason}")
        specs.append(KNOWN_SERVERS[name](arguments.workers, loop=arguments.loop))
    for peer in arguments.peer:
        name, separator, command = peer.partition("=")
        if not separator or not name or "{port}" not in command:
            raise BenchError(f"--peer {peer!r}: expected NAME='COMMAND ... {{host}}:{{port}} ...'")
        if any(isinstance(s, Scenario) and s.tls for s in scenarios):
            raise BenchError(f"--peer {name}: cleartext only; pick scenarios with --only")
        specs.append(ServerSpec(name, tuple(shlex.split(command))))
    return specs


def run_plan(
    plan: list[tuple[int | str, AnyScenario, ServerSpec]],
    run_dir: Path,
    console: Console,
    py_spy: str | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """Every (repeat, scenario, server) run, in order; the records and the seconds it took.
    The PROFILED runs are recorded with `py_spy`."""
    runs = []
    started = time.monotonic()
    with throwaway_certificates() as tls, Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=len(plan))
        for repeat, scenario, server in plan:
            which = "profiled" if repeat == PROFILED else f"#{repeat + 1}"
            progress.update(task, description=f"{scenario.name} on {server.name} ({which})")
            profile_with = py_spy if repeat == PROFILED else None
            try:
                if isinstance(scenario, WebSocketScenario):
                    runs.append(run_websocket_once(server, scenario, repeat, run_dir, profile_with))
                else:
                    runs.append(run_once(server, scenario, repeat, run_dir, tls, profile_with))
            except (LaunchError, h2load.H2LoadError, WsClientError) as error:
                raise BenchError(f"{scenario.name} on {server.name}: {error}") from None
            progress.advance(task)
    return runs, round(time.monotonic() - started, 1)


def bench(arguments: argparse.Namespace, console: Console) -> Path:
    scenarios = select(load_scenarios(arguments.scenarios), arguments.only)
    if arguments.quick:
        scenarios = [Scenario("hello", "/", QUICK_REQUESTS, None, 10, 10)]
        arguments.repeats = 1
    servers = server_specs(arguments, scenarios)
    py_spy = profiler.executable() if arguments.profile else None
    if arguments.profile and py_spy is None:
        raise BenchError(f"--profile needs py-spy: {profiler.INSTALL_HINT}")
    if any(isinstance(s, Scenario) for s in scenarios) and h2load.which() is None:
        raise BenchError("h2load not found: install Debian's nghttp2-client")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = arguments.output / f"{arguments.session}-{stamp}"
    run_dir.mkdir(parents=True)
    plan = [
        (repeat, scenario, server)
        for repeat in range(arguments.repeats)
        for scenario in scenarios
        for server in servers
        if runs_on(scenario, server)
    ]
    if py_spy is not None:
        plan += profiled_plan(scenarios, servers)
    try:
        runs, elapsed = run_plan(plan, run_dir, console, py_spy)
    except BenchError:
        shutil.rmtree(run_dir)  # no results folder without results
        raise
    summary = summarise([run for run in runs if run["repeat"] != PROFILED])
    results = {
        "id": run_dir.name,
        "osmium": osmium_build(),
        "environment": environment(),
        "settings": {
            "repeats": arguments.repeats,
            "workers": arguments.workers,
            "loop": resolved_loop(arguments.loop),
            "profile": arguments.profile,
        },
        "servers": [describe_server(spec, arguments) for spec in servers],
        "scenarios": [describe_scenario(s) for s in scenarios],
        "elapsed_s": elapsed,
        "runs": runs,
        "summary": summary,
        "ratios": ratios(summary),
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    index = write_report(run_dir, results)
    publish(arguments.output, run_dir)
    print_summary(console, summary, results["ratios"])
    return index


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short hello run (smoke/CI)")
    parser.add_argument(
        "--compare", nargs="+", default=[], metavar="SERVER",
        help=f"also run these peers ({', '.join(KNOWN_SERVERS)}) on the same event loop; "
        "report osmium/peer ratios",
    )  # fmt: skip
    parser.add_argument(
        "--peer", action="append", default=[], metavar="NAME=COMMAND",
        help="also run any server command line, with {host} and {port} placeholders",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario and server")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), help="every server's event loop (default: theirs)"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO",
        help="run only these scenarios or groups (`bodies`: the scenario file's 1 MiB "
        "downloads and uploads and 16 KiB responses on 100 streams; `websocket`, not run by "
        "default: ws-roundtrip, ws-200-connections, ws-16mib, and the same over HTTP/2 as "
        "ws-h2-roundtrip, ws-h2-200-connections, ws-h2-16mib)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help=f"run osmium once more on each scenario under py-spy ({profiler.RATE} Hz): a flame "
        "graph, runs/*-profile.svg, linked in the report; py-spy takes about a tenth of a core "
        "(~20%% slower on 2 cores), so that run is not in the medians (needs py-spy)",
    )  # fmt: skip
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS, help="scenario TOML file")
    parser.add_argument("--output", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--session", default="bench", help="prefix of the run folder name")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1 or arguments.workers < 1:
        parser.error("--repeats and --workers must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    console = Console(stderr=False, width=TABLE_WIDTH)
    try:
        index = bench(arguments, console)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {index}")  # plain print: rich would wrap a long path
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
