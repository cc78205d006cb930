"""loadtest/ws_client.py against a real osmium: every echo counted, deadlines kept, and the
benchmark's record of a WebSocket run complete."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from loadtest.bench import (
    WEBSOCKET_SCENARIOS,
    WebSocketScenario,
    run_websocket_once,
    runs_on,
    summarise,
)
from loadtest.launcher import KNOWN_SERVERS, LaunchedServer, available
from loadtest.ws_client import MIB, EchoPlan, WsClientError, run
from loadtest.ws_h2 import H2WebSocket
from tests.integration.support import REPO_ROOT
from tests.server_process import ServerProcess

TINY_PLANS = {
    "roundtrip": EchoPlan(connections=1, messages=50),
    "fanout": EchoPlan(connections=10, messages=5, window=2),
    "big": EchoPlan(connections=1, messages=2, size=MIB, binary=True),
}
#: Seconds an HTTP/2 test may take: a stall fails it, well inside the 5 s each should take.
H2_DEADLINE = 4.0


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


# -- WebSockets over HTTP/2 (RFC 8441) ---------------------------------------------------------


async def echo_over_h2(url: str, messages: list[str | bytes]) -> list[str | bytes]:
    """Each message sent and its echo taken before the next, on one H2WebSocket."""
    websocket = await H2WebSocket.connect(url, max_size=MIB)
    try:
        async with asyncio.timeout(H2_DEADLINE):
            return [await send_and_receive(websocket, message) for message in messages]
    finally:
        await websocket.close()


async def send_and_receive(websocket: H2WebSocket, message: str | bytes) -> str | bytes:
    await websocket.send(message)
    return await websocket.recv()


def test_the_h2_client_echoes_text_and_a_mebibyte(server: ServerProcess) -> None:
    mebibyte = random.Random(0).randbytes(MIB)
    echoes = asyncio.run(echo_over_h2(echo_url(server), ["héllo", mebibyte]))
    assert echoes == ["héllo", mebibyte]


@pytest.mark.parametrize("mode", ["roundtrip", "fanout"])
def test_every_message_over_h2_is_echoed_and_counted(server: ServerProcess, mode: str) -> None:
    plan = replace(TINY_PLANS[mode], http2=True)
    result = run(echo_url(server), plan, timeout=H2_DEADLINE, loop="asyncio")
    assert (result.messages, result.failed, result.errors) == (
        plan.connections * plan.messages,
        0,
        (),
    )


def test_a_refused_extended_connect_is_one_clear_error(server: ServerProcess) -> None:
    plan = EchoPlan(messages=1, http2=True)
    with pytest.raises(WsClientError, match=r"cannot open 1 WebSocket.*refused.* -> 403$"):
        run(echo_url(server, "/ws/nowhere"), plan, timeout=H2_DEADLINE)


def test_an_http1_only_server_is_one_clear_error(tmp_path: Path) -> None:
    if not available("uvicorn-httptools"):
        pytest.skip("uvicorn with httptools is not installed")
    plan = EchoPlan(messages=1, http2=True)
    spec = KNOWN_SERVERS["uvicorn-httptools"](loop="asyncio")
    with LaunchedServer(spec, tmp_path / "uvicorn.log") as peer:
        url = f"ws://127.0.0.1:{peer.port}/ws/echo"
        with pytest.raises(WsClientError, match="without answering in HTTP/2"):
            run(url, plan, timeout=H2_DEADLINE)


def test_the_command_line_runs_a_plan_over_h2(server: ServerProcess) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "loadtest.ws_client", echo_url(server), "--http2", "--mode",
         "fanout", "--connections", "4", "--messages", "3", "--json"],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert (document["messages"], document["failed"], document["plan"]["http2"]) == (12, 0, True)


def test_deflate_over_h2_is_refused_in_one_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "loadtest.ws_client", "ws://127.0.0.1:1/", "--http2", "--deflate"],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr == (
        "ws_client: error: permessage-deflate is not supported over HTTP/2\n"
    )


def test_the_h2_scenarios_skip_servers_without_http2() -> None:
    h2_scenarios = [s for s in WEBSOCKET_SCENARIOS if s.plan.http2]
    assert [s.name for s in h2_scenarios] == [
        "ws-h2-roundtrip",
        "ws-h2-200-connections",
        "ws-h2-16mib",
    ]
    assert not any(runs_on(s, KNOWN_SERVERS["uvicorn"]()) for s in h2_scenarios)
    assert all(runs_on(s, KNOWN_SERVERS["hypercorn"]()) for s in h2_scenarios)


@pytest.mark.parametrize("name", ["osmium", "hypercorn"])
def test_the_benchmark_records_a_websocket_run_over_h2(tmp_path: Path, name: str) -> None:
    """hypercorn serves RFC 8441 over h2c as the benchmark launches it, no flag needed."""
    if not available(name):
        pytest.skip(f"{name} is not installed")
    plan = EchoPlan(connections=2, messages=64, size=64 * 1024, window=2, binary=True, http2=True)
    scenario = WebSocketScenario("ws-h2-tiny", plan)
    record = run_websocket_once(KNOWN_SERVERS[name](loop="asyncio"), scenario, 0, tmp_path)
    assert (record["metrics"]["succeeded"], record["metrics"]["failed"]) == (128, 0)
    assert record["ws_client"]["plan"]["http2"] is True
    [row] = summarise([record])
    assert row["server_cpu_us_per_msg"]["median"] > 0
