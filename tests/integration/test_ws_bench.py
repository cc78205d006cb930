"""loadtest/ws_client.py against a real osmium: every echo counted, deadlines kept, and the
benchmark's record of a WebSocket run complete."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench import WebSocketScenario, run_websocket_once, summarise
from loadtest.launcher import KNOWN_SERVERS, available
from loadtest.ws_client import MIB, EchoPlan, WsClientError, run
from tests.integration.support import REPO_ROOT
from tests.server_process import ServerProcess

TINY_PLANS = {
    "roundtrip": EchoPlan(connections=1, messages=50),
    "fanout": EchoPlan(connections=10, messages=5, window=2),
    "big": EchoPlan(connections=1, messages=2, size=MIB, binary=True),
}


def echo_url(server: ServerProcess, path: str = "/ws/echo") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.mark.parametrize("mode", sorted(TINY_PLANS))
def test_every_message_is_echoed_and_counted(server: ServerProcess, mode: str) -> None:
    plan = TINY_PLANS[mode]
    result = run(echo_url(server), plan, timeout=10.0, loop="asyncio")
    assert (result.messages, result.failed, result.errors) == (
        plan.connections * plan.messages,
        0,
        (),
    )
    assert result.messages_per_second > 0
    assert 0 < result.latency.p50 <= result.latency.max < 10.0


def test_what_is_left_at_the_deadline_counts_as_failed(server: ServerProcess) -> None:
    plan = EchoPlan(connections=2, messages=500_000, window=4)
    result = run(echo_url(server), plan, timeout=1.0)
    assert result.messages > 0
    assert result.failed == 1_000_000 - result.messages > 0
    assert result.errors == ("timed out after 1s", "timed out after 1s")


def test_a_refused_handshake_is_one_clear_error(server: ServerProcess) -> None:
    with pytest.raises(WsClientError, match="cannot open 1 WebSocket"):
        run(echo_url(server, "/ws/nowhere"), EchoPlan(messages=1), timeout=5.0)


def test_the_command_line_prints_the_result_as_json(server: ServerProcess) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "loadtest.ws_client", echo_url(server), "--mode", "fanout",
         "--connections", "4", "--messages", "3", "--json"],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert (document["messages"], document["failed"]) == (12, 0)
    assert document["plan"]["window"] == 8
    assert document["messages_per_second"] > 0


@pytest.mark.parametrize("name", ["osmium", "uvicorn", "hypercorn"])
def test_the_benchmark_records_a_websocket_run(tmp_path: Path, name: str) -> None:
    """The peers serve the same echo app; uvicorn with the flags the benchmark gives it."""
    if not available(name):
        pytest.skip(f"{name} is not installed")
    # 16 MiB in all: enough server CPU to show above the clock's 10 ms tick
    plan = EchoPlan(connections=2, messages=8, size=MIB, window=2, binary=True)
    scenario = WebSocketScenario("ws-tiny", plan)
    record = run_websocket_once(KNOWN_SERVERS[name](loop="asyncio"), scenario, 0, tmp_path)
    assert record["exit_code"] in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled
    assert (record["metrics"]["succeeded"], record["metrics"]["failed"]) == (16, 0)
    assert record["ws_client"]["plan"]["connections"] == 2
    assert (tmp_path / record["log"]).exists()
    samples = (tmp_path / record["samples"]).read_text().splitlines()
    assert samples, "the psutil series is empty"
    [row] = summarise([record])
    assert (row["scenario"], row["server"]) == ("ws-tiny", name)
    assert row["mb_per_s"]["median"] > 0
    assert row["server_cpu_us_per_msg"]["median"] > 0
