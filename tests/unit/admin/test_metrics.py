"""`osmium.admin.metrics`: the /api/state document as Prometheus text, read back with the parser
Prometheus' own Python client ships, so the format is checked by someone else's reading of it."""

from __future__ import annotations

from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from osmium.admin.metrics import render_metrics

BOUNDS = [0.001, 0.01, 0.1, 1.0, 10.0]
ODD_CODE = 'say "hi" \\ then\nbreak'
# A series' labels, sorted, as a dictionary key.
Labels = tuple[tuple[str, str], ...]


def worker(pid: int, slot: int, counts: list[int], duration_sum: float) -> dict[str, Any]:
    """A worker's snapshot as /api/state gives it; `counts` per bucket, +Inf last."""
    requests = sum(counts)
    return {
        "pid": pid,
        "slot": slot,
        "generation": 0,
        "state": "ready",
        "started_at": 1764633600.2,
        "uptime": 12.2,
        "last_report_age": 0.4,
        "requests": requests,
        "rps": 125.0,
        "connections": 2 + slot,
        "connections_total": 10 + slot,
        "streams": 3 + slot,
        "bytes_received": 1234 + slot,
        "bytes_sent": 5678 + slot,
        "cpu_seconds": 1.5 + slot,
        "cpu_percent": 37.5,
        "rss_bytes": 31457280 + slot,
        "responses": {"1xx": 0, "2xx": requests - 10 * slot, "3xx": 0, "4xx": 10 * slot, "5xx": 0},
        "errors": {"PROTOCOL_ERROR": slot, "ENHANCE_YOUR_CALM": 0},
        "defences": {
            "timeouts": 0,
            "connections_dropped": 0,
            "protocol_errors": slot,
            "idle_ping": 0,
        },
        "latency": {
            "bounds": BOUNDS,
            "counts": counts,
            "sum": duration_sum,
            "count": requests,
            "p50_ms": 1.1,
            "p99_ms": 7.9,
        },
    }


def state(workers: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(each["requests"] for each in workers)
    return {
        "server": {
            "pid": 123,
            "version": "0.1.0",
            "url": "http://127.0.0.1:8000",
            "started_at": 1764633600.1,
            "uptime": 12.3,
            "slots": len(workers),
            "history_seconds": 3600,
            "respawns": {"crash": 2, "timeout": 1, "max-requests": 5, "reload": 4},
            "reloads": 2,
            "ttin": 3,
            "ttou": 1,
        },
        "totals": {
            "requests": requests,
            "rps": 250.0,
            "connections": 5,
            "streams": 7,
            "p50_ms": 1.2,
            "p99_ms": 8.0,
        },
        "workers": workers,
    }


BUSY = worker(124, 0, [100, 250, 40, 8, 2, 0], duration_sum=6.25)
IDLE = worker(125, 1, [0, 0, 0, 0, 0, 0], duration_sum=0.0)


def parse(text: str) -> dict[str, Metric]:
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    # A family split in two (its lines apart), or a counter whose name less `_total` is another
    # family's name, comes back twice from the parser.
    assert len(names) == len(set(names)), names
    return {family.name: family for family in families}


def values(family: Metric, sample_name: str | None = None) -> dict[Labels, float]:
    """A family's samples by their sorted labels (only `sample_name`'s, when given)."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for sample in family.samples
        if sample_name is None or sample.name == sample_name
    }


def by_worker(pid: int, slot: int, **more: str) -> Labels:
    return tuple(sorted({"worker": str(pid), "slot": str(slot), **more}.items()))


def test_every_family_has_its_type_and_the_text_ends_with_a_line_feed() -> None:
    text = render_metrics(state([BUSY, IDLE]))

    # The parser names a counter family without `_total`, as OpenMetrics does.
    assert {name: family.type for name, family in parse(text).items()} == {
        "osmium_up": "gauge",
        "osmium_workers": "gauge",
        "osmium_worker_respawns": "counter",
        "osmium_reloads": "counter",
        "osmium_ttin": "counter",
        "osmium_ttou": "counter",
        "osmium_requests": "counter",
        "osmium_responses": "counter",
        "osmium_connections": "gauge",
        "osmium_connections_accepted": "counter",
        "osmium_streams": "gauge",
        "osmium_bytes_received": "counter",
        "osmium_bytes_sent": "counter",
        "osmium_errors": "counter",
        "osmium_defences": "counter",
        "osmium_cpu_seconds": "counter",
        "osmium_resident_memory_bytes": "gauge",
        "osmium_request_duration_seconds": "histogram",
    }
    assert text.endswith("\n")
    assert "# TYPE osmium_requests_total counter\n" in text


def test_server_series_come_from_the_server_section() -> None:
    families = parse(render_metrics(state([BUSY, IDLE])))

    assert values(families["osmium_up"]) == {(): 1}
    assert values(families["osmium_workers"]) == {(): 2}
    assert values(families["osmium_reloads"]) == {(): 2}
    assert values(families["osmium_ttin"]) == {(): 3}
    assert values(families["osmium_ttou"]) == {(): 1}
    assert values(families["osmium_worker_respawns"]) == {
        (("cause", "crash"),): 2,
        (("cause", "timeout"),): 1,
        (("cause", "max-requests"),): 5,
        (("cause", "reload"),): 4,
    }


def test_per_worker_series_carry_the_worker_pid_and_slot() -> None:
    families = parse(render_metrics(state([BUSY, IDLE])))

    assert values(families["osmium_requests"]) == {by_worker(124, 0): 400, by_worker(125, 1): 0}
    assert values(families["osmium_connections"]) == {by_worker(124, 0): 2, by_worker(125, 1): 3}
    assert values(families["osmium_connections_accepted"]) == {
        by_worker(124, 0): 10,
        by_worker(125, 1): 11,
    }
    assert values(families["osmium_cpu_seconds"]) == {
        by_worker(124, 0): 1.5,
        by_worker(125, 1): 2.5,
    }
    assert values(families["osmium_resident_memory_bytes"])[by_worker(125, 1)] == 31457281
    assert values(families["osmium_bytes_sent"])[by_worker(124, 0)] == 5678
    responses = values(families["osmium_responses"])
    assert responses[by_worker(124, 0, **{"class": "2xx"})] == 400
    assert responses[by_worker(125, 1, **{"class": "4xx"})] == 10
    assert len(responses) == 10
    errors = values(families["osmium_errors"])
    assert errors[by_worker(125, 1, code="PROTOCOL_ERROR")] == 1
    defences = values(families["osmium_defences"])
    assert defences[by_worker(125, 1, defence="protocol_errors")] == 1


def test_the_duration_histogram_is_cumulative_per_worker() -> None:
    histogram = parse(render_metrics(state([BUSY, IDLE])))["osmium_request_duration_seconds"]

    buckets = values(histogram, "osmium_request_duration_seconds_bucket")
    busy = [
        buckets[by_worker(124, 0, le=le)] for le in ("0.001", "0.01", "0.1", "1.0", "10.0", "+Inf")
    ]
    assert busy == [100, 350, 390, 398, 400, 400]
    counts = values(histogram, "osmium_request_duration_seconds_count")
    assert counts[by_worker(124, 0)] == busy[-1] == BUSY["latency"]["count"]
    assert values(histogram, "osmium_request_duration_seconds_sum")[by_worker(124, 0)] == 6.25
    # le="+Inf" closes each worker's buckets.
    les = [
        sample.labels["le"]
        for sample in histogram.samples
        if sample.name.endswith("_bucket") and sample.labels["worker"] == "124"
    ]
    assert les[-1] == "+Inf" and len(les) == len(BOUNDS) + 1


def test_a_worker_without_requests_has_zero_buckets() -> None:
    histogram = parse(render_metrics(state([BUSY, IDLE])))["osmium_request_duration_seconds"]

    idle = [sample for sample in histogram.samples if sample.labels["worker"] == "125"]
    assert len(idle) == len(BOUNDS) + 1 + 2  # the buckets, +Inf, _sum and _count
    assert all(sample.value == 0 for sample in idle)


def test_label_values_are_escaped() -> None:
    odd = worker(126, 2, [1, 0, 0, 0, 0, 0], duration_sum=0.0005)
    odd["errors"] = {ODD_CODE: 7}
    text = render_metrics(state([odd]))

    assert 'code="say \\"hi\\" \\\\ then\\nbreak"' in text
    errors = values(parse(text)["osmium_errors"])
    assert errors == {by_worker(126, 2, code=ODD_CODE): 7}


def test_no_workers_still_reports_up_and_a_worker_count_of_zero() -> None:
    families = parse(render_metrics(state([])))

    assert values(families["osmium_up"]) == {(): 1}
    assert values(families["osmium_workers"]) == {(): 0}
    assert families["osmium_requests"].samples == []
