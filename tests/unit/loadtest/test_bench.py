"""The benchmark's choice of scenarios and servers, and its summary of WebSocket runs."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.bench import (
    SCENARIOS,
    WEBSOCKET_SCENARIOS,
    BenchError,
    Scenario,
    load_scenarios,
    runs_on,
    select,
    summarise,
    websocket_metrics,
    websocket_spec,
)
from loadtest.launcher import osmium, uvicorn
from loadtest.ws_client import EchoPlan, Tally, aggregate

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


def test_http1_websocket_scenarios_run_on_http1_only_servers_too() -> None:
    http1_only = uvicorn()
    assert not http1_only.http2
    running = [scenario.name for scenario in WEBSOCKET_SCENARIOS if runs_on(scenario, http1_only)]
    assert running == ["ws-roundtrip", "ws-200-connections", "ws-16mib"]
    assert all(runs_on(scenario, osmium()) for scenario in WEBSOCKET_SCENARIOS)
    assert not runs_on(Scenario("hello", requests=1), http1_only)


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
