"""Prometheus text exposition (format 0.0.4) of the admin state document.

Pure: the /api/state document goes in, the /metrics body comes out; the admin listener serves it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (sample name, labels, value): one line of a family; a histogram's lines carry suffixed names.
Sample = tuple[str, dict[str, object], float]

# Per-worker series read from one number of the worker's snapshot: name, type, field, help.
_WORKER_NUMBERS = (
    ("osmium_requests_total", "counter", "requests", "Requests handled by the worker."),
    ("osmium_connections", "gauge", "connections", "Connections open in the worker."),
    # Not osmium_connections_total: OpenMetrics names that counter's family osmium_connections,
    # the gauge's name, and parsers (prometheus_client's among them) then see one family twice.
    ("osmium_connections_accepted_total", "counter", "connections_total", "Connections accepted."),
    ("osmium_streams", "gauge", "streams", "Streams open in the worker."),
    ("osmium_bytes_received_total", "counter", "bytes_received", "Bytes received from clients."),
    ("osmium_bytes_sent_total", "counter", "bytes_sent", "Bytes sent to clients."),
    ("osmium_cpu_seconds_total", "counter", "cpu_seconds", "CPU time the worker used, in seconds."),
    ("osmium_resident_memory_bytes", "gauge", "rss_bytes", "Resident memory of the worker."),
)
# Per-worker counters read from a mapping of the snapshot, one series per key:
# name, field, label, help.
_WORKER_BREAKDOWNS = (
    ("osmium_responses_total", "responses", "class", "Responses sent, by status class."),
    ("osmium_errors_total", "errors", "code", "HTTP/2 errors sent (GOAWAY, RST_STREAM), by code."),
    ("osmium_defences_total", "defences", "defence", "Times a defence fired, by defence."),
)
_DURATION = "osmium_request_duration_seconds"


def render_metrics(state: dict[str, Any]) -> str:
    """The /metrics body for one /api/state document (see the admin API)."""
    server, workers = state["server"], state["workers"]
    lines = [
        *_family("osmium_up", "gauge", "1 while the server answers.", [("osmium_up", {}, 1)]),
        *_server_counter("osmium_reloads_total", "Rolling reloads started.", server["reloads"]),
        *_server_counter("osmium_ttin_total", "Worker slots added (TTIN).", server["ttin"]),
        *_server_counter("osmium_ttou_total", "Worker slots removed (TTOU).", server["ttou"]),
        *_family(
            "osmium_worker_respawns_total",
            "counter",
            "Workers replaced, by cause.",
            [
                ("osmium_worker_respawns_total", {"cause": cause}, count)
                for cause, count in server["respawns"].items()
            ],
        ),
        *_family(
            "osmium_workers",
            "gauge",
            "Worker processes (starting, ready or retiring).",
            [("osmium_workers", {}, len(workers))],
        ),
    ]
    for name, kind, field, help_text in _WORKER_NUMBERS:
        samples = [(name, _worker_labels(worker), worker[field]) for worker in workers]
        lines += _family(name, kind, help_text, samples)
    for name, field, label, help_text in _WORKER_BREAKDOWNS:
        samples = [
            (name, {**_worker_labels(worker), label: key}, count)
            for worker in workers
            for key, count in worker[field].items()
        ]
        lines += _family(name, "counter", help_text, samples)
    lines += _family(
        _DURATION,
        "histogram",
        "Request durations, in seconds.",
        [sample for worker in workers for sample in _duration_samples(worker)],
    )
    return "\n".join(lines) + "\n"


def _server_counter(name: str, help_text: str, value: float) -> list[str]:
    return _family(name, "counter", help_text, [(name, {}, value)])


def _worker_labels(worker: dict[str, Any]) -> dict[str, object]:
    return {"worker": worker["pid"], "slot": worker["slot"]}


def _duration_samples(worker: dict[str, Any]) -> Iterator[Sample]:
    """One worker's histogram: the state's counts are per bucket, the format's are cumulative."""
    labels = _worker_labels(worker)
    latency = worker["latency"]
    cumulative = list(accumulate(latency["counts"]))
    for bound, count in zip([*latency["bounds"], math.inf], cumulative, strict=True):
        yield f"{_DURATION}_bucket", {**labels, "le": _number(float(bound))}, count
    yield f"{_DURATION}_sum", labels, latency["sum"]
    # The +Inf bucket, not the reported count: the format requires the two equal, and a snapshot
    # taken between the updates of both must not make an invalid histogram.
    yield f"{_DURATION}_count", labels, cumulative[-1]


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    """A family's lines: HELP, TYPE, then its samples together, as the format requires.

    The help texts are this module's constants, free of the backslash and line feed HELP escapes.
    """
    return [
        f"# HELP {name} {help_text}",
        f"# TYPE {name} {kind}",
        *(f"{sample}{_labels(labels)} {_number(value)}" for sample, labels, value in samples),
    ]


def _labels(labels: dict[str, object]) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items())
    return "{" + pairs + "}"


def _number(value: float) -> str:
    """Integers exact, floats as the shortest round trip, the last bucket's bound as "+Inf"."""
    if value == math.inf:
        return "+Inf"
    return str(value) if isinstance(value, int) else repr(value)


def _escape_label(value: str) -> str:
    # Format 0.0.4: in label values backslash, double quote and line feed are escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
