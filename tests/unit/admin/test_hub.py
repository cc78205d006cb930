"""AdminHub without processes: history from cumulative reports, the event log, and queries
answered from workers' replies or without the workers that did not answer in time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from osmium.admin.hub import COMMAND_TIMEOUT, AdminHub
from osmium.admin.stats import LATENCY_BOUNDS


class RecordingWriter:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, dict[str, Any]]] = []

    def send(self, command_id: int, op: str, **fields: Any) -> bool:
        self.sent.append((command_id, op, fields))
        return True


@dataclass
class FakeWorker:
    pid: int
    slot: int
    generation: int = 0
    ready: bool = True
    retiring: bool = False
    started_at: float = 0.0
    last_seen: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    commands: RecordingWriter = field(default_factory=RecordingWriter)


@dataclass
class FakeAcceptor:
    workers: list[FakeWorker]
    url: str = "http://127.0.0.1:8000"
    started_at: float = 0.0
    respawns: dict[str, int] = field(default_factory=dict)
    reloads: int = 0
    slots_added: int = 0
    slots_removed: int = 0
    drained: list[int] = field(default_factory=list)

    @property
    def slots(self) -> int:
        return len(self.workers)

    def live_workers(self) -> list[FakeWorker]:
        return self.workers

    def served_requests(self) -> int:
        return 7

    def drain_worker(self, pid: int) -> bool:
        self.drained.append(pid)
        return any(w.pid == pid for w in self.workers)

    def add_slot(self) -> None: ...
    def remove_slot(self) -> bool:
        return False

    def reload(self) -> None: ...


def make_hub(workers: list[FakeWorker]) -> tuple[AdminHub, list[tuple[int, int, dict]]]:
    answers: list[tuple[int, int, dict]] = []
    hub = AdminHub(
        FakeAcceptor(workers), 60, lambda *answer: answers.append(answer), ping_timeout=10.0
    )
    return hub, answers


def latency(bucket_bound: float, count: int) -> list[int]:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    counts[LATENCY_BOUNDS.index(bucket_bound)] = count
    return counts


def test_history_points_are_per_second_deltas_of_the_reports() -> None:
    worker = FakeWorker(10, 0, stats={"requests": 100, "cpu_seconds": 1.0, "connections": 2})
    worker.stats["latency_counts"] = latency(0.01, 100)
    hub, _ = make_hub([worker])
    hub.sample(100.0)
    worker.stats.update(requests=600, cpu_seconds=1.5, latency_counts=latency(0.01, 600))
    hub.sample(100.5)  # under a second later: no point
    hub.sample(101.0)
    points = hub.history_since(0)
    assert len(points) == 2
    last = points[-1]
    assert last["rps"] == 500.0
    assert last["connections"] == 2
    assert last["workers"]["10"]["cpu_percent"] == 50.0
    assert 5.0 < last["p50_ms"] < 10.0
    assert hub.history_since(points[-1]["t"]) == []


def test_history_is_bounded_by_its_window() -> None:
    hub, _ = make_hub([FakeWorker(10, 0)])
    for second in range(200):
        hub.sample(float(second))
    assert len(hub.history) == 60


def test_events_since_a_sequence_number() -> None:
    hub, answers = make_hub([])
    hub.record("worker-spawned", "one", pid=1)
    hub.record("worker-ready", "two", pid=1)
    hub.on_query({"id": 1, "op": "events", "since": 1}, 0.0)
    ((query_id, status, body),) = answers
    assert (query_id, status, body["next"]) == (1, 200, 2)
    assert [event["message"] for event in body["events"]] == ["two"]


def test_connections_merge_the_replies_and_name_a_worker_that_did_not_answer() -> None:
    quick, slow = FakeWorker(10, 0), FakeWorker(11, 1)
    hub, answers = make_hub([quick, slow])
    hub.on_query({"id": 5, "op": "connections", "peer": "127.0.0.1"}, 50.0)
    ((command_id, op, fields),) = quick.commands.sent
    assert op == "snapshot" and fields == {"peer": "127.0.0.1"}
    hub.on_reply(10, {"id": command_id, "connections": [{"id": "0-10-1"}]}, 50.02)
    assert answers == []
    assert hub.next_deadline() == 50.0 + COMMAND_TIMEOUT
    hub.expire(50.0 + COMMAND_TIMEOUT)
    ((query_id, status, body),) = answers
    assert (query_id, status) == (5, 200)
    assert body["connections"] == [{"id": "0-10-1"}]
    assert body["unanswered"] == [11]
    assert body["answer_ms"] == {"10": 20.0}
    assert hub.next_deadline() is None


def test_a_connection_command_goes_to_its_worker_and_errors_keep_their_status() -> None:
    first, second = FakeWorker(10, 0), FakeWorker(11, 1)
    hub, answers = make_hub([first, second])
    hub.on_query({"id": 1, "op": "close", "connection": "1-11-4", "mode": "now"}, 0.0)
    assert first.commands.sent == []
    ((command_id, op, fields),) = second.commands.sent
    assert (op, fields) == ("close", {"connection": 4, "mode": "now"})
    hub.on_reply(11, {"id": command_id, "error": "no such connection", "status": 404}, 0.01)
    assert answers == [(1, 404, {"error": "no such connection"})]
    hub.on_query({"id": 2, "op": "close", "connection": "0-99-1"}, 0.0)
    assert answers[-1] == (2, 404, {"error": "no such connection"})
    hub.on_query({"id": 3, "op": "close", "connection": "not-an-id"}, 0.0)
    assert answers[-1][:2] == (3, 400)


def test_state_adds_up_the_workers() -> None:
    worker = FakeWorker(10, 0, stats={"requests": 5, "connections": 1, "streams": 2})
    hub, _ = make_hub([worker, FakeWorker(11, 1, ready=False)])
    state = hub.state()
    assert state["totals"]["requests"] == 12  # 7 from workers that exited
    assert [w["state"] for w in state["workers"]] == ["ready", "starting"]
    assert state["workers"][0]["latency"]["count"] == 0


def test_a_worker_whose_command_pipe_is_full_is_named_when_time_is_up() -> None:
    worker = FakeWorker(10, 0)
    worker.commands.send = lambda *args, **kwargs: False  # type: ignore[method-assign]
    hub, answers = make_hub([worker])
    hub.on_query({"id": 1, "op": "close", "connection": "0-10-1"}, 0.0)
    assert answers == []
    hub.expire(COMMAND_TIMEOUT)
    assert answers == [(1, 504, {"error": "the worker did not answer in time"})]
