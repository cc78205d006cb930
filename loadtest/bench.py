"""`nox -s bench`: h2load scenarios against osmium (and peers), sampled, summarised, reported.

Each run starts the server fresh as its own process tree, samples it with psutil while h2load
drives it, and stops it. Repeats are interleaved across servers so drift hits all of them alike;
the summary gives medians and spread, the ratios compare medians measured in this one run.
The `websocket` group (opt-in: `--only websocket`) drives the demo app's `/ws/echo` with
loadtest/ws_client.py instead, over HTTP/1.1 and over HTTP/2 (RFC 8441); its rows count echoed
messages where the others count requests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
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

import psutil
import trustme
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from loadtest import h2load, ws_client
from loadtest.environment import describe
from loadtest.launcher import (
    KNOWN_SERVERS,
    LaunchedServer,
    LaunchError,
    ServerSpec,
    TLSFiles,
    available,
    osmium,
)
from loadtest.report import SUMMARY_COLUMNS, summary_cells, write_report
from loadtest.sampler import SamplerProcess
from loadtest.ws_client import MODES, EchoPlan, WsClientError, WsResult

SCENARIOS = Path(__file__).with_name("scenarios.toml")
QUICK_REQUESTS = 5000
H2LOAD_TIMEOUT = 300.0


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
WEBSOCKET_ARGS = {"uvicorn": ("--ws", "websockets")}
WS_CLIENT_TIMEOUT = 120.0
#: What WebSocket runs add to the summary's medians.
WEBSOCKET_METRICS = ("mb_per_s", "server_cpu_us_per_msg")

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
    """The file's scenarios, or those `only` names: scenario names and group names, in the
    file's order, then the groups'."""
    if not only:
        return list(scenarios)
    named: dict[str, list[AnyScenario]] = {s.name: [s] for s in (*scenarios, *WEBSOCKET_SCENARIOS)}
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
    """Every server speaks HTTP/1.1, so `h1` scenarios and WebSockets over HTTP/1.1 run on all
    of them; the rest only on servers that speak HTTP/2 (uvicorn does not)."""
    if isinstance(scenario, WebSocketScenario):
        return not scenario.plan.http2 or server.http2
    return scenario.h1 or server.http2


def new_record(scenario: AnyScenario, spec: ServerSpec, repeat: int) -> dict[str, Any]:
    """A run's identity and where its server log and psutil series go."""
    stem = f"{scenario.name}-{spec.name}-{repeat}"
    record: dict[str, Any] = {"scenario": scenario.name, "server": spec.name, "repeat": repeat}
    record["log"] = f"runs/{stem}.log"
    record["samples"] = f"runs/{stem}.jsonl"
    return record


def run_once(
    spec: ServerSpec, scenario: Scenario, repeat: int, run_dir: Path, tls: TLSFiles
) -> dict[str, Any]:
    """One fresh server, sampled while h2load runs the scenario once."""
    record = new_record(scenario, spec, repeat)
    launched = LaunchedServer(spec, run_dir / record["log"], tls if scenario.tls else None)
    with launched as server, SamplerProcess(server.pid, run_dir / record["samples"]):
        result = h2load.run(
            server.url + scenario.path,
            requests=scenario.requests,
            duration=scenario.duration,
            clients=scenario.clients,
            streams=scenario.streams,
            extra_args=("--h1",) if scenario.h1 else (),
            timeout=H2LOAD_TIMEOUT,
        )
    record["exit_code"] = launched.exit_code
    record["h2load"] = h2load.as_dict(result)
    record["metrics"] = metrics(result)
    return record


def metrics(result: h2load.H2LoadResult) -> dict[str, float]:
    """The few numbers the summary compares."""
    return {
        "req_per_s": result.requests_per_second,
        "latency_mean_ms": result.request_time.mean * 1000,
        "succeeded": result.requests.succeeded,
        "failed": result.requests.failed,  # h2load counts errored and timed out inside it
    }


def websocket_spec(spec: ServerSpec) -> ServerSpec:
    """The server's command line with its WebSocket flags, if it needs any."""
    extra = WEBSOCKET_ARGS.get(spec.name, ())
    return replace(spec, command=spec.command + extra) if extra else spec


def run_websocket_once(
    spec: ServerSpec, scenario: WebSocketScenario, repeat: int, run_dir: Path
) -> dict[str, Any]:
    """One fresh server, sampled while the WebSocket client runs the scenario's plan once."""
    record = new_record(scenario, spec, repeat)
    launched = LaunchedServer(websocket_spec(spec), run_dir / record["log"])
    with launched as server, SamplerProcess(server.pid, run_dir / record["samples"]):
        url = "ws" + server.url.removeprefix("http") + scenario.path
        cpu_before = tree_cpu_seconds(server.pid)
        result = ws_client.run(url, scenario.plan, timeout=WS_CLIENT_TIMEOUT)
        server_cpu = tree_cpu_seconds(server.pid) - cpu_before
    record["exit_code"] = launched.exit_code
    record["ws_client"] = ws_client.as_dict(result)
    record["metrics"] = websocket_metrics(result, server_cpu)
    return record


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its live children have used so far."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # exited since the listing
            times = process.cpu_times()
            total += times.user + times.system
    return total


def websocket_metrics(result: WsResult, server_cpu: float) -> dict[str, float]:
    """The summary's numbers: an echoed message stands for a request. The server's CPU per
    message (handshakes included) holds steadier than rates on a busy machine."""
    return {
        "req_per_s": result.messages_per_second,
        "latency_mean_ms": result.latency.mean * 1000,
        "mb_per_s": result.megabytes_per_second,
        "server_cpu_us_per_msg": server_cpu / result.messages * 1e6 if result.messages else 0.0,
        "succeeded": result.messages,
        "failed": result.failed,
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in runs:
        groups.setdefault((run["scenario"], run["server"]), []).append(run["metrics"])
    summary = []
    for (scenario, server), values in groups.items():
        row: dict[str, Any] = {"scenario": scenario, "server": server, "repeats": len(values)}
        for name in ("req_per_s", "latency_mean_ms", *WEBSOCKET_METRICS):
            series = [value[name] for value in values if name in value]
            if not series:
                continue  # an h2load run
            row[name] = {
                "median": statistics.median(series),
                "min": min(series),
                "max": max(series),
                "values": series,
            }
        row["failed"] = int(sum(value["failed"] for value in values))
        summary.append(row)
    return summary


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """osmium's median req/s over each peer's, per scenario."""
    by_key = {(row["scenario"], row["server"]): row for row in summary}
    result = []
    for (scenario, server), row in by_key.items():
        own = by_key.get((scenario, "osmium"))
        if server != "osmium" and own is not None and row["req_per_s"]["median"]:
            ratio = own["req_per_s"]["median"] / row["req_per_s"]["median"]
            result.append({"scenario": scenario, "peer": server, "ratio": ratio})
    return result


def environment() -> dict[str, str]:
    return describe(("h2", "websockets"), cpus=str(os.cpu_count()), h2load=h2load.version())


def publish(output: Path, run_dir: Path) -> None:
    """Point `latest` at the newest run (relative, so the results folder can move)."""
    latest = output / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name, target_is_directory=True)


#: Medians only (min and max are in results.json): the table fits 80 columns.
WEBSOCKET_COLUMNS = ("scenario", "server", "msg/s", "MB/s", "latency ms", "CPU µs/msg", "failed")


def websocket_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """Medians; CPU is the server's, per echoed message."""
    return (
        row["scenario"],
        row["server"],
        f"{row['req_per_s']['median']:,.0f}",
        f"{row['mb_per_s']['median']:,.1f}",
        f"{row['latency_mean_ms']['median']:.3f}",
        f"{row['server_cpu_us_per_msg']['median']:,.1f}",
        str(row["failed"]),
    )


def print_summary(console: Console, summary: list[dict[str, Any]], ratio_rows: list[dict]) -> None:
    websocket = {scenario.name for scenario in WEBSOCKET_SCENARIOS}
    tables = (
        ("h2load: median of repeats", SUMMARY_COLUMNS, summary_cells, False),
        ("websocket: median of repeats", WEBSOCKET_COLUMNS, websocket_cells, True),
    )
    for title, columns, cells, is_websocket in tables:
        rows = [row for row in summary if (row["scenario"] in websocket) == is_websocket]
        if not rows:
            continue
        table = Table(title=title)
        for column in columns:
            table.add_column(
                column, justify="left" if column in ("scenario", "server") else "right"
            )
        for row in rows:
            table.add_row(*cells(row))
        console.print(table)
    for row in ratio_rows:
        console.print(f"osmium/{row['peer']} on {row['scenario']}: {row['ratio']:.2f}x")


def server_specs(arguments: argparse.Namespace, scenarios: list[AnyScenario]) -> list[ServerSpec]:
    """osmium, the known peers asked for, and peers given as command lines (`NAME=COMMAND`)."""
    specs = [osmium(arguments.workers, loop=arguments.loop)]
    for name in arguments.compare:
        if name not in KNOWN_SERVERS:
            raise BenchError(f"unknown server {name!r} (known: {', '.join(KNOWN_SERVERS)})")
        if not available(name):
            raise BenchError(f"--compare {name}: {name} is not installed here")
        specs.append(KNOWN_SERVERS[name](arguments.workers, loop=arguments.loop))
    for peer in arguments.peer:
        name, separator, command = peer.partition("=")
        if not separator or not name or "{port}" not in command:
            raise BenchError(f"--peer {peer!r}: expected NAME='COMMAND ... {{host}}:{{port}} ...'")
        if any(isinstance(s, Scenario) and s.tls for s in scenarios):
            raise BenchError(f"--peer {name}: cleartext only; pick scenarios with --only")
        specs.append(ServerSpec(name, tuple(shlex.split(command))))
    return specs


def bench(arguments: argparse.Namespace, console: Console) -> Path:
    scenarios = select(load_scenarios(arguments.scenarios), arguments.only)
    if arguments.quick:
        scenarios = [Scenario("hello", "/", QUICK_REQUESTS, None, 10, 10)]
        arguments.repeats = 1
    servers = server_specs(arguments, scenarios)
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
    runs = []
    started = time.monotonic()
    with throwaway_certificates() as tls, Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=len(plan))
        for repeat, scenario, server in plan:
            progress.update(task, description=f"{scenario.name} on {server.name} (#{repeat + 1})")
            try:
                if isinstance(scenario, WebSocketScenario):
                    runs.append(run_websocket_once(server, scenario, repeat, run_dir))
                else:
                    runs.append(run_once(server, scenario, repeat, run_dir, tls))
            except (LaunchError, h2load.H2LoadError, WsClientError) as error:
                raise BenchError(f"{scenario.name} on {server.name}: {error}") from None
            progress.advance(task)
    summary = summarise(runs)
    results = {
        "id": run_dir.name,
        "environment": environment(),
        "settings": {
            "repeats": arguments.repeats,
            "workers": arguments.workers,
            "loop": arguments.loop or "auto",
        },
        "scenarios": [asdict(s) for s in scenarios],
        "elapsed_s": round(time.monotonic() - started, 1),
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
        help="also run hypercorn, granian and/or uvicorn (HTTP/1.1 scenarios only); report "
        "osmium/peer ratios",
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
        help="run only these scenarios or groups (`websocket`: ws-roundtrip, ws-200-connections, "
        "ws-16mib, and the same over HTTP/2 as ws-h2-roundtrip, ws-h2-200-connections, "
        "ws-h2-16mib; not run by default)",
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
    console = Console(stderr=False)
    try:
        index = bench(arguments, console)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {index}")  # plain print: rich would wrap a long path
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
