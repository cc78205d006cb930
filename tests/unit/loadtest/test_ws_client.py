"""The WebSocket load client's checks, latency summary and aggregation, without a socket."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from loadtest.ws_client import (
    MAX_CONNECTIONS,
    MAX_IN_FLIGHT_BYTES,
    MAX_SIZE,
    MAX_TOTAL_MESSAGES,
    MIB,
    MODES,
    TEXT_ALPHABET,
    EchoPlan,
    Latency,
    Tally,
    WsClientError,
    aggregate,
    as_dict,
    check_plan,
    check_url,
    parse_arguments,
    payload,
    plan_from_arguments,
    summarise_latency,
)


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:8000/ws/echo", "ws://localhost:1/", "ws://[::1]:8000/ws/echo"]
)
def test_loopback_ws_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("wss://127.0.0.1:8000/ws/echo", "only ws:// URLs"),
        ("http://127.0.0.1:8000/ws/echo", "only ws:// URLs"),
        ("ws://example.com/ws/echo", "only loopback hosts"),
        ("ws://10.0.0.1:8000/ws/echo", "only loopback hosts"),
        ("ws://127.0.0.2:8000/ws/echo", "only loopback hosts"),
    ],
)
def test_other_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(WsClientError, match=reason):
        check_url(url)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_is_within_bounds(mode: str) -> None:
    assert check_plan(MODES[mode]) is MODES[mode]


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (EchoPlan(connections=0), "connections must be between 1 and 1000, not 0"),
        (EchoPlan(connections=MAX_CONNECTIONS + 1), "connections must be between"),
        (EchoPlan(messages=0), "messages must be between"),
        (
            EchoPlan(connections=10, messages=MAX_TOTAL_MESSAGES // 10 + 1),
            f"messages must be between 1 and {MAX_TOTAL_MESSAGES // 10}",
        ),
        (EchoPlan(size=0), "size must be between"),
        (EchoPlan(size=MAX_SIZE + 1), "size must be between"),
        (EchoPlan(window=0), "window must be between"),
        (EchoPlan(connections=200, window=8, size=MIB), "bytes in flight"),
    ],
)
def test_plans_out_of_bounds_are_refused(plan: EchoPlan, message: str) -> None:
    with pytest.raises(WsClientError, match=message):
        check_plan(plan)


def test_in_flight_bound_is_inclusive() -> None:
    plan = EchoPlan(connections=4, window=4, size=MAX_IN_FLIGHT_BYTES // 16)
    assert check_plan(plan) is plan


def test_latency_of_nothing_is_zero() -> None:
    assert summarise_latency([]) == Latency(0.0, 0.0, 0.0, 0.0)


def test_latency_of_one_sample_is_that_sample() -> None:
    assert summarise_latency([0.25]) == Latency(0.25, 0.25, 0.25, 0.25)


def test_latency_percentiles_interpolate_between_samples() -> None:
    latency = summarise_latency([float(value) for value in range(100, 0, -1)])
    assert latency.mean == pytest.approx(50.5)
    assert latency.p50 == pytest.approx(50.5)
    assert latency.p99 == pytest.approx(99.01)
    assert latency.max == 100.0


def test_what_a_connection_did_not_echo_counts_as_failed() -> None:
    plan = EchoPlan(connections=3, messages=10)
    tallies = [Tally(10), Tally(4, "ConnectionClosedError: lost"), Tally(0, "timed out after 1s")]
    result = aggregate(plan, tallies, 2.0, [0.001] * 14, "asyncio", client_cpu=0.5)
    assert (result.messages, result.failed) == (14, 16)
    assert result.errors == ("ConnectionClosedError: lost", "timed out after 1s")
    assert result.messages_per_second == 7.0
    assert result.megabytes_per_second == pytest.approx(7.0 * 64 / 1e6)
    assert result.client_busy == 0.25
    assert result.latency.mean == pytest.approx(0.001)


def test_errors_are_capped() -> None:
    plan = EchoPlan(connections=8, messages=1)
    tallies = [Tally(0, f"error {index}") for index in range(8)]
    result = aggregate(plan, tallies, 1.0, [], "uvloop", client_cpu=0.0, max_errors=3)
    assert result.errors == ("error 0", "error 1", "error 2")
    assert result.failed == 8


def test_a_run_that_took_no_time_has_zero_rates() -> None:
    result = aggregate(EchoPlan(), [Tally()], 0.0, [], "asyncio", client_cpu=0.0)
    assert (result.messages_per_second, result.megabytes_per_second, result.client_busy) == (
        0.0,
        0.0,
        0.0,
    )


def test_as_dict_is_json_with_the_derived_rates() -> None:
    plan = EchoPlan(connections=2, messages=5, size=1000, binary=True)
    result = aggregate(plan, [Tally(5), Tally(5)], 0.5, [0.01] * 10, "asyncio", client_cpu=0.1)
    document = json.loads(json.dumps(as_dict(result)))
    assert document["plan"]["binary"] is True
    assert document["messages_per_second"] == 20.0
    assert document["megabytes_per_second"] == pytest.approx(0.02)
    assert document["latency"]["p99"] == pytest.approx(0.01)


def test_text_payload_is_printable_and_deterministic() -> None:
    text = payload(EchoPlan(size=64))
    assert isinstance(text, str) and len(text) == 64
    assert set(text) <= set(TEXT_ALPHABET)
    assert payload(EchoPlan(size=64)) == text
    assert payload(EchoPlan(size=64), seed=1) != text


def test_binary_payload_has_the_planned_size() -> None:
    data = payload(EchoPlan(size=1000, binary=True))
    assert isinstance(data, bytes) and len(data) == 1000


def test_the_command_line_starts_from_the_mode_and_overrides_it() -> None:
    arguments = parse_arguments(["ws://127.0.0.1:1/ws/echo", "--mode", "big", "--messages", "2"])
    assert plan_from_arguments(arguments) == replace(MODES["big"], messages=2)
    arguments = parse_arguments(
        ["ws://127.0.0.1:1/", "--mode", "fanout", "--no-binary", "--deflate", "--window", "3"]
    )
    assert plan_from_arguments(arguments) == replace(MODES["fanout"], window=3, deflate=True)


def test_the_command_line_defaults_to_round_trips() -> None:
    assert plan_from_arguments(parse_arguments(["ws://127.0.0.1:1/"])) == MODES["roundtrip"]


def test_the_command_line_refuses_a_plan_out_of_bounds() -> None:
    arguments = parse_arguments(["ws://127.0.0.1:1/", "--mode", "big", "--window", "100"])
    with pytest.raises(WsClientError, match="bytes in flight"):
        plan_from_arguments(arguments)
