"""The acceptor's end of the admin plane: per-second history, the event log, and the queries of
the admin process, answered from the workers' reports or by commands sent to the workers.

It runs inside the acceptor's select loop and never blocks it: a query that needs the workers
sends them commands and is answered when they all replied or COMMAND_TIMEOUT passed, whichever
comes first; a worker that did not answer is named in the answer, never waited on.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from osmium import __version__
from osmium.admin.stats import LATENCY_BOUNDS, STATUS_CLASSES, quantile
from osmium.channel import CommandWriter

#: Seconds the acceptor waits for workers to answer a command before it answers without them.
COMMAND_TIMEOUT = 1.0
#: Events kept in the log.
EVENT_LOG_SIZE = 1000
#: Seconds between history points.
HISTORY_INTERVAL = 1.0
#: Commands the admin API may forward to one worker about one connection.
CONNECTION_OPS = ("connection", "close", "ping", "reset")


class Worker(Protocol):
    """What the hub reads of one of the acceptor's worker handles."""

    pid: int
    slot: int
    generation: int
    ready: bool
    retiring: bool
    started_at: float
    last_seen: float
    stats: dict[str, Any]
    commands: CommandWriter | None


class Acceptor(Protocol):
    """What the hub reads of the acceptor and asks it to do."""

    url: str
    started_at: float
    respawns: dict[str, int]
    reloads: int
    slots_added: int
    slots_removed: int

    @property
    def slots(self) -> int: ...
    def live_workers(self) -> Iterable[Worker]: ...
    def served_requests(self) -> int: ...
    def drain_worker(self, pid: int) -> bool: ...
    def add_slot(self) -> None: ...
    def remove_slot(self) -> bool: ...
    def reload(self) -> None: ...


@dataclass
class PendingQuery:
    """A query of the admin process waiting for workers' replies."""

    query_id: int
    op: str
    deadline: float
    started: float
    waiting: set[int]
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    answer_ms: dict[int, float] = field(default_factory=dict)
    #: For an action on a connection: its id, the close mode, the stream.
    target: tuple[str | None, str | None, str | None] = (None, None, None)


class AdminHub:
    """History, events and queries for the admin process; `answer` sends its answers."""

    def __init__(
        self,
        acceptor: Acceptor,
        history_seconds: int,
        answer: Callable[[int, int, dict[str, Any]], None],
        ping_timeout: float,
    ) -> None:
        self._acceptor = acceptor
        self._ping_timeout = ping_timeout
        self._answer = answer
        self.history_seconds = history_seconds
        #: One tuple a second: (t, rps, p50_ms, p99_ms, connections, streams,
        #: ((pid, cpu_percent, rss_bytes, rps), ...)): tuples, not dicts, to keep an hour small.
        self.history: deque[tuple[Any, ...]] = deque(maxlen=history_seconds)
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG_SIZE)
        self._event_seq = 0
        self._next_sample = 0.0
        self._last_sample_at = 0.0
        #: Each live worker's cumulative numbers at the last sample, by pid.
        self._previous: dict[int, tuple[int, float, list[int]]] = {}
        self._pending: dict[int, PendingQuery] = {}
        #: Command id -> the query it serves.
        self._commands: dict[int, int] = {}
        self._command_seq = 0

    # -- the event log ---------------------------------------------------------------------------

    def record(self, kind: str, message: str, **fields: Any) -> None:
        self._event_seq += 1
        self.events.append(
            {"seq": self._event_seq, "t": time.time(), "kind": kind, "message": message, **fields}
        )

    # -- history ---------------------------------------------------------------------------------

    def sample(self, now: float) -> None:
        """Add a history point once a second (`now`: monotonic time)."""
        if now < self._next_sample:
            return
        elapsed = now - self._last_sample_at if self._last_sample_at else HISTORY_INTERVAL
        self._last_sample_at = now
        self._next_sample = now + HISTORY_INTERVAL
        requests = connections = streams = 0
        latency = [0] * (len(LATENCY_BOUNDS) + 1)
        per_worker = []
        current: dict[int, tuple[int, float, list[int]]] = {}
        for worker in self._acceptor.live_workers():
            stats = worker.stats
            counts = stats.get("latency_counts") or [0] * len(latency)
            now_values = (stats.get("requests", 0), stats.get("cpu_seconds", 0.0), counts)
            current[worker.pid] = now_values
            before = self._previous.get(worker.pid, (0, now_values[1], [0] * len(latency)))
            worker_requests = now_values[0] - before[0]
            requests += worker_requests
            for index, (after, earlier) in enumerate(zip(counts, before[2], strict=False)):
                latency[index] += after - earlier
            connections += stats.get("connections", 0)
            streams += stats.get("streams", 0)
            cpu_percent = (now_values[1] - before[1]) / elapsed * 100
            per_worker.append(
                (worker.pid, round(cpu_percent, 1), stats.get("rss_bytes", 0),
                 round(worker_requests / elapsed, 1))
            )  # fmt: skip
        self._previous = current
        p50, p99 = quantile(latency, 0.5), quantile(latency, 0.99)
        self.history.append(
            (
                round(time.time(), 3),
                round(requests / elapsed, 1),
                None if p50 is None else round(p50 * 1000, 3),
                None if p99 is None else round(p99 * 1000, 3),
                connections,
                streams,
                tuple(per_worker),
            )
        )

    def history_since(self, since: float) -> list[dict[str, Any]]:
        return [_point(point) for point in self.history if point[0] > since]

    # -- queries from the admin process ----------------------------------------------------------

    def on_query(self, query: dict[str, Any], now: float) -> None:
        """Answer at once, or send the workers commands and answer once they replied."""
        query_id = int(query.get("id", 0))
        op = query.get("op")
        try:
            self._dispatch(query_id, str(op), query, now)
        except (KeyError, TypeError, ValueError) as error:
            self._answer(query_id, 400, {"error": f"bad request: {error}"})

    def _dispatch(self, query_id: int, op: str, query: dict[str, Any], now: float) -> None:
        acceptor = self._acceptor
        if op == "state":
            self._answer(query_id, 200, self.state())
        elif op == "history":
            points = self.history_since(float(query.get("since") or 0))
            self._answer(query_id, 200, {"interval": HISTORY_INTERVAL, "points": points})
        elif op == "events":
            since = int(query.get("since") or 0)
            events = [event for event in self.events if event["seq"] > since]
            self._answer(query_id, 200, {"next": self._event_seq, "events": events})
        elif op == "connections":
            pid = int(query["worker"]) if query.get("worker") else None
            workers = [w for w in acceptor.live_workers() if pid is None or w.pid == pid]
            filters = {k: query[k] for k in ("peer", "protocol", "older_than", "idle_for", "limit")
                       if query.get(k)}  # fmt: skip
            self._send(query_id, op, workers, now, "snapshot", **filters)
        elif op in CONNECTION_OPS:
            slot, pid, serial = (int(part) for part in str(query["connection"]).split("-"))
            worker = next((w for w in acceptor.live_workers() if w.pid == pid), None)
            if worker is None or worker.slot != slot:
                self._answer(query_id, 404, {"error": "no such connection"})
                return
            fields = {k: query[k] for k in ("mode", "stream") if k in query}
            pending = self._send(query_id, op, [worker], now, op, connection=serial, **fields)
            pending.target = (query["connection"], query.get("mode"), query.get("stream"))
        elif op == "drain":
            found = acceptor.drain_worker(int(query["worker"]))
            self._answer(query_id, 200 if found else 404,
                         {"ok": True} if found else {"error": "no such worker"})  # fmt: skip
        elif op == "add":
            acceptor.add_slot()
            self._answer(query_id, 200, {"ok": True, "slots": acceptor.slots})
        elif op == "remove":
            if acceptor.remove_slot():
                self._answer(query_id, 200, {"ok": True, "slots": acceptor.slots})
            else:
                self._answer(query_id, 409, {"error": "not removing the last worker"})
        elif op == "reload":
            acceptor.reload()
            self._answer(query_id, 200, {"ok": True})
        else:
            self._answer(query_id, 404, {"error": "not found"})

    def _send(
        self, query_id: int, op: str, workers: list[Worker], now: float, command: str, **fields: Any
    ) -> PendingQuery:
        # A ping's answer is the peer's PING ACK: it may take up to the ping timeout.
        timeout = self._ping_timeout + COMMAND_TIMEOUT if op == "ping" else COMMAND_TIMEOUT
        pending = PendingQuery(query_id, op, now + timeout, now, set())
        for worker in workers:
            self._command_seq += 1
            # A worker whose pipe is full (or gone) stays "waiting": named when the time is up.
            pending.waiting.add(worker.pid)
            writer = worker.commands
            if writer is not None and writer.send(self._command_seq, command, **fields):
                self._commands[self._command_seq] = query_id
        self._pending[query_id] = pending
        if not pending.waiting:
            self._finish(pending)
        return pending

    def on_reply(self, pid: int, reply: dict[str, Any], now: float) -> None:
        query_id = self._commands.pop(int(reply.get("id", 0)), None)
        pending = self._pending.get(query_id) if query_id is not None else None
        if pending is None or pid not in pending.waiting:
            return
        pending.waiting.discard(pid)
        pending.replies[pid] = reply
        pending.answer_ms[pid] = round((now - pending.started) * 1000, 2)
        if not pending.waiting:
            self._finish(pending)

    def expire(self, now: float) -> None:
        """Answer the queries whose workers did not all reply in time."""
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            self._finish(pending)

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def _finish(self, pending: PendingQuery) -> None:
        del self._pending[pending.query_id]
        self._commands = {c: q for c, q in self._commands.items() if q != pending.query_id}
        unanswered = sorted(pending.waiting)
        if pending.op == "connections":
            connections = [c for reply in pending.replies.values() for c in reply["connections"]]
            body = {
                "connections": connections,
                "unanswered": unanswered,
                "answer_ms": {str(pid): ms for pid, ms in pending.answer_ms.items()},
            }
            self._answer(pending.query_id, 200, body)
            return
        if unanswered:
            self._answer(pending.query_id, 504, {"error": "the worker did not answer in time"})
            return
        reply = next(iter(pending.replies.values()))
        reply = {k: v for k, v in reply.items() if k not in ("type", "id", "pid")}
        if "error" in reply:
            self._answer(pending.query_id, int(reply.pop("status", 500)), reply)
            return
        body = reply["connection"] if pending.op == "connection" else reply
        self._record_action(pending)
        self._answer(pending.query_id, 200, body)

    def _record_action(self, pending: PendingQuery) -> None:
        """An operator's close or reset that took effect goes into the event log."""
        connection, mode, stream = pending.target
        if pending.op == "close":
            self.record(
                "connection-closed", f"connection {connection} closed by an operator ({mode})",
                connection=connection, by="operator",
            )  # fmt: skip
        elif pending.op == "reset":
            self.record(
                "stream-reset", f"stream {stream} of connection {connection} reset by an operator",
                connection=connection, stream=stream, by="operator",
            )  # fmt: skip

    # -- the state document ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        acceptor = self._acceptor
        now = time.time()
        monotonic = time.monotonic()
        last = _point(self.history[-1]) if self.history else None
        rps_by_pid = {pid: rps for pid, _cpu, _rss, rps in self.history[-1][6]} if last else {}
        cpu_by_pid = {pid: cpu for pid, cpu, _rss, _rps in self.history[-1][6]} if last else {}
        workers = [
            _worker_view(worker, now, monotonic, rps_by_pid.get(worker.pid, 0.0),
                         cpu_by_pid.get(worker.pid, 0.0))
            for worker in sorted(acceptor.live_workers(), key=lambda w: (w.slot, w.pid))
        ]  # fmt: skip
        return {
            "server": {
                "pid": os.getpid(),
                "version": __version__,
                "url": acceptor.url,
                "started_at": acceptor.started_at,
                "uptime": now - acceptor.started_at,
                "slots": acceptor.slots,
                "history_seconds": self.history_seconds,
                "respawns": dict(acceptor.respawns),
                "reloads": acceptor.reloads,
                "ttin": acceptor.slots_added,
                "ttou": acceptor.slots_removed,
            },
            "totals": {
                "requests": acceptor.served_requests() + sum(w["requests"] for w in workers),
                "rps": last["rps"] if last else 0.0,
                "connections": sum(w["connections"] for w in workers),
                "streams": sum(w["streams"] for w in workers),
                "p50_ms": last["p50_ms"] if last else None,
                "p99_ms": last["p99_ms"] if last else None,
            },
            "workers": workers,
        }


def _point(point: tuple[Any, ...]) -> dict[str, Any]:
    t, rps, p50, p99, connections, streams, workers = point
    return {
        "t": t,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "connections": connections,
        "streams": streams,
        "workers": {
            str(pid): {"cpu_percent": cpu, "rss_bytes": rss, "rps": worker_rps}
            for pid, cpu, rss, worker_rps in workers
        },
    }


def _worker_view(
    worker: Worker, now: float, monotonic: float, rps: float, cpu_percent: float
) -> dict[str, Any]:
    stats = worker.stats
    counts = stats.get("latency_counts") or [0] * (len(LATENCY_BOUNDS) + 1)
    p50, p99 = quantile(counts, 0.5), quantile(counts, 0.99)
    state = "retiring" if worker.retiring else "ready" if worker.ready else "starting"
    return {
        "pid": worker.pid,
        "slot": worker.slot,
        "generation": worker.generation,
        "state": state,
        "started_at": worker.started_at,
        "uptime": now - worker.started_at,
        "last_report_age": round(monotonic - worker.last_seen, 3),
        "requests": stats.get("requests", 0),
        "rps": rps,
        "connections": stats.get("connections", 0),
        "connections_total": stats.get("connections_total", 0),
        "streams": stats.get("streams", 0),
        "bytes_received": stats.get("bytes_received", 0),
        "bytes_sent": stats.get("bytes_sent", 0),
        "cpu_seconds": stats.get("cpu_seconds", 0.0),
        "cpu_percent": cpu_percent,
        "rss_bytes": stats.get("rss_bytes", 0),
        "responses": stats.get("responses") or dict.fromkeys(STATUS_CLASSES, 0),
        "errors": stats.get("errors", {}),
        "defences": {
            **stats.get("defences", {}),
            "timeouts": stats.get("timeouts", 0),
            "connections_dropped": stats.get("connections_dropped", 0),
            "protocol_errors": stats.get("protocol_errors", 0),
        },
        "latency": {
            "bounds": list(LATENCY_BOUNDS),
            "counts": counts,
            "sum": stats.get("latency_sum", 0.0),
            "count": sum(counts),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        },
    }
