"""The benchmark's choice of scenarios and servers, what it measures of each run (body MB/s,
requests per CPU second, latency percentiles), which runs `--profile` records, and its summary
and ratios."""

from __future__ import annotations

import os
import random
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from loadtest import bench, h2load, profiler
from loadtest.bench import (
    PROFILED,
    SCENARIOS,
    WEBSOCKET_SCENARIOS,
    BenchError,
    Scenario,
    describe_scenario,
    event_loop,
    h2load_options,
    load_scenarios,
    metrics,
    new_record,
    osmium_build,
    parse_arguments,
    per_cpu_second,
    profiled_plan,
    profiling,
    protocol,
    ratios,
    runs_on,
    select,
    summarise,
    websocket_metrics,
    websocket_spec,
)
from loadtest.launcher import ServerSpec, osmium, uvicorn
from loadtest.ws_client import MIB, EchoPlan, Tally, aggregate
from osmium import __version__ as osmium_version

DATA = Path(__file__).parent / "data"

FILE_SCENARIOS = load_scenarios(SCENARIOS)
WEBSOCKET_NAMES = [
    "ws-roundtrip",
    "ws-200-connections",
    "ws-16mib",
    "ws-h2-roundtrip",
    "ws-h2-200-connections",
    "ws-h2-16mib",
]


def names(scenarios: list[Any]) -> list[str]:
    return [scenario.name for scenario in scenarios]


def test_the_default_run_leaves_the_websocket_group_out() -> None:
    assert select(FILE_SCENARIOS, None) == FILE_SCENARIOS
    assert not set(names(select(FILE_SCENARIOS, None))) & set(WEBSOCKET_NAMES)


def test_the_group_name_selects_every_websocket_scenario() -> None:
    assert names(select(FILE_SCENARIOS, ["websocket"])) == WEBSOCKET_NAMES


def test_names_mix_file_and_websocket_scenarios_in_a_stable_order() -> None:
    chosen = select(FILE_SCENARIOS, ["ws-16mib", "hello", "websocket", "hello-h1"])
    assert names(chosen) == ["hello", "hello-h1", *WEBSOCKET_NAMES]


def test_an_unknown_name_is_refused_in_one_line() -> None:
    with pytest.raises(BenchError, match=r"unknown scenario or group 'ws-echo', 'nope' \(known:"):
        select(FILE_SCENARIOS, ["hello", "ws-echo", "nope"])


WS_H1_NAMES = ["ws-roundtrip", "ws-200-connections", "ws-16mib"]


def running(server: ServerSpec) -> list[str]:
    return [scenario.name for scenario in WEBSOCKET_SCENARIOS if runs_on(scenario, server)]


def test_http1_websocket_scenarios_run_on_http1_only_servers_too() -> None:
    http1_only = ServerSpec("h1-only", ("serve",), http2=False)
    assert running(http1_only) == WS_H1_NAMES
    assert all(runs_on(scenario, osmium()) for scenario in WEBSOCKET_SCENARIOS)
    assert not runs_on(Scenario("hello", requests=1), http1_only)
    assert runs_on(Scenario("hello-h1", requests=1, h1=True), http1_only)


def test_servers_without_http1_or_rfc8441_skip_those_scenarios() -> None:
    http2_only = replace(osmium(), http1=False)
    assert not runs_on(Scenario("hello-h1", requests=1, h1=True), http2_only)
    assert runs_on(Scenario("hello", requests=1), http2_only)
    assert running(http2_only) == ["ws-h2-roundtrip", "ws-h2-200-connections", "ws-h2-16mib"]
    assert running(replace(osmium(), websocket_h2=False)) == WS_H1_NAMES


def test_uvicorn_serves_websockets_with_the_websockets_library() -> None:
    spec = websocket_spec(uvicorn(loop="asyncio"))
    argv = spec.argv(8000, None)
    assert argv[argv.index("--ws") + 1] == "websockets"
    assert websocket_spec(osmium()) == osmium()


def websocket_run(scenario: str, messages_per_second: float, size: int) -> dict[str, Any]:
    plan = EchoPlan(connections=1, messages=int(messages_per_second), size=size)
    result = aggregate(plan, [Tally(plan.messages)], 1.0, [0.002], "asyncio", client_cpu=0.1)
    metrics = websocket_metrics(result, server_cpu=messages_per_second * 20e-6)
    return {"scenario": scenario, "server": "osmium", "metrics": metrics}


def test_websocket_rows_summarise_throughput_in_megabytes() -> None:
    runs = [websocket_run("ws-16mib", rate, 1_000_000) for rate in (300, 100, 200)]
    [row] = summarise(runs)
    assert row["req_per_s"]["median"] == 200
    assert row["mb_per_s"] == {"median": 200, "min": 100, "max": 300, "values": [300, 100, 200]}
    assert row["latency_mean_ms"]["median"] == pytest.approx(2.0)
    assert row["server_cpu_us_per_msg"]["values"] == pytest.approx([20.0, 20.0, 20.0])
    assert row["failed"] == 0


def test_h2load_rows_have_no_megabytes() -> None:
    metrics = {"req_per_s": 10.0, "latency_mean_ms": 1.0, "succeeded": 10, "failed": 0}
    [row] = summarise([{"scenario": "hello", "server": "osmium", "metrics": metrics}])
    assert "mb_per_s" not in row and "server_cpu_us_per_msg" not in row


def test_a_run_that_echoed_nothing_costs_zero_per_message() -> None:
    result = aggregate(EchoPlan(), [Tally(0, "refused")], 1.0, [], "asyncio", client_cpu=0.0)
    assert websocket_metrics(result, server_cpu=0.5)["server_cpu_us_per_msg"] == 0.0


# -- body scenarios, CPU efficiency, latency percentiles -----------------------------------------

BODY_NAMES = ["download-1mib", "upload-1mib", "echo-1mib", "responses-16kib-m100"]


def capture(name: str) -> h2load.H2LoadResult:
    return h2load.parse((DATA / f"{name}.txt").read_text())


def test_the_bodies_group_is_selectable_and_in_the_default_run() -> None:
    assert names(select(FILE_SCENARIOS, ["bodies"])) == BODY_NAMES
    assert set(BODY_NAMES) <= set(names(select(FILE_SCENARIOS, None)))
    bodies = {scenario.name: scenario for scenario in FILE_SCENARIOS if scenario.group}
    assert all(scenario.unit == "MB/s" for scenario in bodies.values())
    assert (bodies["upload-1mib"].upload, bodies["upload-1mib"].path) == (1 << 20, "/upload")
    assert (bodies["echo-1mib"].upload, bodies["echo-1mib"].path) == (1 << 20, "/echo")
    assert (bodies["responses-16kib-m100"].clients, bodies["responses-16kib-m100"].streams) == (
        1,
        100,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('unit = "GB/s"', "scenario x: unit must be one of req/s, MB/s"),
        ("upload = -1", "scenario x: upload must be 0 or more bytes"),
    ],
)
def test_bad_scenario_fields_are_refused_in_one_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(f'[[scenario]]\nname = "x"\nrequests = 1\n{line}\n')
    with pytest.raises(BenchError, match=f"^{re.escape(message)}$"):
        load_scenarios(path)


def test_downloads_count_response_body_bytes_per_second() -> None:
    result = capture("big_1mib")  # 8 x 1 MiB in 11.56 ms
    scenario = Scenario("down", "/big?size=1048576", requests=8, unit="MB/s")
    values = metrics(scenario, result, server_cpu=0.01, latency=None)
    assert values["mb_per_s"] == pytest.approx(8 * MIB / 0.01156 / 1e6)
    assert values["req_per_cpu_s"] == pytest.approx(8 / 0.01)


def test_uploads_count_request_body_bytes_not_the_echo() -> None:
    result = capture("post_echo")  # 200 x 100,000 bytes echoed in 87.28 ms
    scenario = Scenario("up", "/echo", requests=200, upload=100_000, unit="MB/s")
    values = metrics(scenario, result, server_cpu=0.5, latency=None)
    assert values["mb_per_s"] == pytest.approx(200 * 100_000 / 0.08728 / 1e6)
    assert values["req_per_cpu_s"] == pytest.approx(400.0)


def test_duration_runs_count_bytes_over_the_measured_time_only() -> None:
    result = capture("duration_warmup")  # -D 1 after 1 s of warm-up: "finished in 2.00s"
    scenario = Scenario("d", "/", duration=1.0, unit="MB/s")
    values = metrics(scenario, result, server_cpu=1.0, latency=None)
    assert values["mb_per_s"] == pytest.approx(result.traffic.data / 1.0 / 1e6)


def test_request_rows_have_percentiles_in_ms_and_no_megabytes() -> None:
    latency = h2load.Percentiles(0.001, 0.002, 0.004, 0.010)
    values = metrics(Scenario("hello", requests=2000), capture("h2c_n2000_c10_m10"), 0.2, latency)
    assert "mb_per_s" not in values
    assert [values[f"latency_{name}_ms"] for name in ("p50", "p90", "p99", "max")] == (
        pytest.approx([1.0, 2.0, 4.0, 10.0])
    )
    assert values["req_per_cpu_s"] == pytest.approx(2000 / 0.2)
    assert per_cpu_second(10, 0.0) == 0.0  # no CPU tick seen: no rate, not a division error


def h2load_run(server: str, rate: float, cpu_rate: float, unit: str = "req/s") -> dict[str, Any]:
    values = {"req_per_s": rate, "latency_mean_ms": 1.0, "req_per_cpu_s": cpu_rate}
    values |= {"latency_p50_ms": 1.0, "latency_p90_ms": 2.0, "latency_p99_ms": 3.0}
    values |= {"latency_max_ms": 4.0, "succeeded": 10, "failed": 0}
    if unit == "MB/s":
        values["mb_per_s"] = rate / 10
    return {"scenario": "s", "server": server, "unit": unit, "metrics": values}


def test_summary_and_ratios_carry_cpu_efficiency_and_the_unit() -> None:
    runs = [h2load_run("osmium", rate, 900.0, "MB/s") for rate in (1000.0, 3000.0, 2000.0)]
    runs.append(h2load_run("peer", 500.0, 300.0, "MB/s"))
    osmium_row, peer_row = summarise(runs)
    assert osmium_row["unit"] == "MB/s"
    assert osmium_row["mb_per_s"] == {
        "median": 200.0,
        "min": 100.0,
        "max": 300.0,
        "values": [100.0, 300.0, 200.0],
    }
    assert osmium_row["req_per_cpu_s"]["median"] == 900.0
    assert osmium_row["latency_p99_ms"]["median"] == 3.0
    [ratio] = ratios([osmium_row, peer_row])
    assert ratio == {
        "scenario": "s",
        "peer": "peer",
        "ratio": pytest.approx(4.0),  # 200 / 50 MB/s
        "unit": "MB/s",
        "cpu_ratio": pytest.approx(3.0),
    }


def test_ratios_of_request_rows_are_of_req_per_s() -> None:
    rows = summarise([h2load_run("osmium", 3000.0, 100.0), h2load_run("peer", 1000.0, 0.0)])
    [ratio] = ratios(rows)
    assert (ratio["ratio"], ratio["unit"]) == (pytest.approx(3.0), "req/s")
    assert "cpu_ratio" not in ratio  # the peer's CPU rate is 0: no ratio rather than infinity


def test_scenarios_name_their_protocol() -> None:
    protocols = {scenario.name: protocol(scenario) for scenario in FILE_SCENARIOS}
    assert protocols["hello"] == "h2c (prior knowledge)"
    assert protocols["hello-tls"] == "h2 over TLS (ALPN)"
    assert protocols["hello-h1"] == "HTTP/1.1 (h1)"
    assert protocol(Scenario("x", requests=1, h1=True, tls=True)) == "HTTP/1.1 over TLS"
    described = [describe_scenario(scenario) for scenario in WEBSOCKET_SCENARIOS[2:4]]
    assert [(d["name"], d["protocol"], d["unit"]) for d in described] == [
        ("ws-16mib", "WebSocket over HTTP/1.1", "msg/s"),
        ("ws-h2-roundtrip", "WebSocket over h2c (RFC 8441)", "msg/s"),
    ]
    assert described[0]["plan"]["size"] == 16 * MIB


def test_h2load_gets_the_body_the_log_and_the_protocol(tmp_path: Path) -> None:
    scenario = Scenario("up", "/echo", requests=3, clients=2, streams=4, upload=1000, h1=True)
    options = h2load_options(scenario, tmp_path)
    assert Path(options["data_file"]).read_bytes() == random.Random(0).randbytes(1000)
    assert options["log_file"] == str(tmp_path / "requests.tsv")
    argv = h2load.command("http://127.0.0.1:1/echo", **options)
    assert argv[1:9] == ["-n", "3", "-c", "2", "-m", "4", "-t", "1"]
    assert argv[-2:] == ["--h1", "http://127.0.0.1:1/echo"]
    assert "data_file" not in h2load_options(Scenario("down", requests=1), tmp_path)


def test_the_event_loop_comes_from_the_spec_or_what_was_asked() -> None:
    assert event_loop(osmium(loop="asyncio"), "asyncio") == "asyncio"
    assert (
        event_loop(ServerSpec("twin", ("serve",)), "uvloop") == "unknown (as its command line says)"
    )


def test_the_build_names_the_checkouts_commit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=bench.REPO_ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.strip()  # fmt: skip
    build = osmium_build()
    assert (build["version"], build["commit"]) == (osmium_version, head)
    assert isinstance(build["uncommitted_changes"], bool)
    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path)  # not a checkout
    assert osmium_build() == {
        "version": osmium_version,
        "commit": "unknown",
        "uncommitted_changes": None,
    }


# -- --profile -----------------------------------------------------------------------------------


def test_profile_is_off_unless_asked() -> None:
    assert parse_arguments([]).profile is False
    assert parse_arguments(["--quick", "--profile"]).profile is True


def test_profile_without_py_spy_fails_before_any_run_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(profiler, "executable", lambda: None)
    assert bench.main(["--quick", "--profile", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "bench: error: --profile needs py-spy: pip install py-spy\n"
    assert not list(tmp_path.iterdir())  # no run folder: nothing ran


def test_profile_adds_one_run_of_osmium_per_scenario_kept_out_of_the_medians() -> None:
    hello, big = Scenario("hello", requests=1), Scenario("big", requests=1)
    servers = [osmium(), uvicorn(loop="asyncio")]
    assert profiled_plan([hello, big], servers) == [
        (PROFILED, hello, servers[0]),
        (PROFILED, big, servers[0]),
    ]


def test_a_profiled_run_names_its_flame_graph_next_to_its_log() -> None:
    scenario = Scenario("hello", requests=1)
    record = new_record(scenario, osmium(), PROFILED, profiled=True)
    assert record["profile"] == "runs/hello-osmium-profiled-profile.svg"
    assert record["log"] == "runs/hello-osmium-profiled.log"
    assert "profile" not in new_record(scenario, osmium(), 1)


def fake_py_spy(folder: Path, script: str) -> str:
    """An executable standing in for py-spy, to play its ways of failing."""
    path = folder / "py-spy"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


#: What py-spy 0.4 `record --subprocesses` says where it may not read the server's memory.
DENIED = "Error: No python processes found in process 1 or any of its subprocesses"


def test_a_py_spy_that_cannot_attach_leaves_the_run_and_says_why(tmp_path: Path) -> None:
    py_spy = fake_py_spy(tmp_path, f"printf '%s\\n\\nStack backtrace:\\n' '{DENIED}' >&2\nexit 1")
    record = new_record(Scenario("hello", requests=1), osmium(), 0, profiled=True)
    loaded = False
    with profiling(record, os.getpid(), tmp_path, py_spy):
        loaded = True
    assert loaded
    assert record["profile"] is None
    assert record["profile_error"] == f"py-spy wrote no flame graph: {DENIED}"


def test_a_py_spy_that_ignores_sigint_is_killed_after_a_bounded_wait(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(profiler, "STOP_TIMEOUT", 0.2)
    py_spy = fake_py_spy(tmp_path, "trap '' INT\necho 'py-spy> Sampling process'\nexec sleep 60")
    record = new_record(Scenario("hello", requests=1), osmium(), 0, profiled=True)
    with profiling(record, os.getpid(), tmp_path, py_spy):
        pass
    assert record["profile_error"] == "py-spy wrote no flame graph: exit status -9"
