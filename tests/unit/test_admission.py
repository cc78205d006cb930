"""`osmium.admission`: handler slots, waiting streams in fair order, and nothing left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from osmium.admission import Admission

A, B, C = "connection A", "connection B", "connection C"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Futures need a running loop; each scenario gets its own."""
    asyncio.run(scenario())


def admitted_order(admission: Admission, waiters: dict[str, asyncio.Future[bool]]) -> list[str]:
    """Release one slot at a time (as handlers finish) and name the waiters in admission order."""
    order = []
    while admission.waiting:
        admission.leave()
        order += [name for name, future in waiters.items() if future.done() and name not in order]
    return order


def test_below_the_limit_streams_enter_without_a_future() -> None:
    admission = Admission(2)
    assert admission.try_enter() and admission.try_enter()
    assert not admission.try_enter()
    admission.leave(None)
    assert admission.active == 1
    assert admission.try_enter()


def test_leaving_hands_the_slot_to_a_waiter() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        assert admission.try_enter()
        future = admission.wait(A, 3, 3)
        assert not future.done()
        admission.leave()
        assert future.result() is True
        assert admission.active == 1  # the slot changed hands; it was not freed
        admission.leave(future)
        assert admission.active == 0
        assert admission.try_enter()

    run(scenario)


def test_round_robin_over_connections() -> None:
    """One connection with many waiters gets one turn in each round, like every other."""

    async def scenario() -> None:
        admission = Admission(1)
        admission.try_enter()
        waiters = {f"A{i}": admission.wait(A, 1 + 2 * i, 3) for i in range(4)}
        waiters["B0"] = admission.wait(B, 1, 3)
        waiters["C0"] = admission.wait(C, 1, 3)
        waiters["B1"] = admission.wait(B, 3, 3)
        assert admitted_order(admission, waiters) == ["A0", "B0", "C0", "A1", "B1", "A2", "A3"]

    run(scenario)


def test_urgency_then_stream_order_within_a_connection() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        admission.try_enter()
        waiters = {f"u7 #{stream_id}": admission.wait(A, stream_id, 7) for stream_id in (1, 3, 5)}
        waiters["u0"] = admission.wait(A, 7, 0)
        waiters["u3 #9"] = admission.wait(A, 9, 3)
        waiters["u3 #11"] = admission.wait(A, 11, 3)
        assert admitted_order(admission, waiters) == [
            "u0", "u3 #9", "u3 #11", "u7 #1", "u7 #3", "u7 #5"
        ]  # fmt: skip

    run(scenario)


def test_cancel_takes_a_waiter_out_and_tells_it_not_to_run() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        admission.try_enter()
        first, second, third = (admission.wait(A, stream_id, 3) for stream_id in (1, 3, 5))
        admission.cancel(A, 3)
        assert second.result() is False
        admission.leave(second)  # its task ends: it held no slot
        assert admission.active == 1
        admission.leave()
        assert first.result() is True and not third.done()
        admission.cancel(A, 99)  # a stream that never waited: nothing happens
        admission.cancel(B, 1)
        admission.cancel(A, 5)
        assert admission.waiting == 0
        admission.leave()  # `first` finishes: with nobody waiting the slot is free
        assert admission.active == 0

    run(scenario)


def test_cancelling_a_connections_last_waiter_takes_it_off_the_ring() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        admission.try_enter()
        admission.wait(A, 1, 3)
        admission.cancel(A, 1)
        b = admission.wait(B, 1, 3)
        admission.leave()
        assert b.result() is True
        later = admission.wait(A, 3, 3)  # A joins the ring again, once
        admission.leave()
        assert later.result() is True
        assert admission.waiting == 0

    run(scenario)


def test_forget_refuses_every_waiter_of_a_connection() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        admission.try_enter()
        gone = [admission.wait(A, stream_id, 3) for stream_id in (1, 3, 5)]
        staying = admission.wait(B, 1, 3)
        admission.forget(A)
        admission.forget(C)  # a connection with nothing waiting
        assert [future.result() for future in gone] == [False, False, False]
        admission.leave()
        assert staying.result() is True
        assert admission.waiting == 0 and admission.active == 1

    run(scenario)


def test_a_task_cancelled_while_waiting_is_skipped_and_keeps_no_slot() -> None:
    async def scenario() -> None:
        admission = Admission(1)
        admission.try_enter()
        abandoned = admission.wait(A, 1, 3)
        abandoned.cancel()  # what cancelling the task that awaits it does
        admission.leave(abandoned)
        next_in_line = admission.wait(B, 1, 3)
        admission.leave()
        assert next_in_line.result() is True
        admission.leave(next_in_line)
        assert admission.active == 0 and admission.waiting == 0

    run(scenario)


def test_many_waiters_come_and_go_without_leaking() -> None:
    async def scenario() -> None:
        admission = Admission(4)
        for _ in range(4):
            admission.try_enter()
        connections = [f"connection {number}" for number in range(20)]
        futures = [
            admission.wait(connection, stream_id, stream_id % 8)
            for connection in connections
            for stream_id in range(1, 40, 2)
        ]
        for connection in connections[::2]:
            admission.cancel(connection, 7)
            admission.forget(connection)
        while admission.waiting:
            admission.leave()
        for _ in range(4):
            admission.leave()
        assert admission.active == 0
        assert sum(future.result() for future in futures) == 10 * 20  # the odd connections'
        assert admission.waiting == 0
        # No connection was left on the ring: the next waiter is the next one admitted.
        while admission.try_enter():
            pass
        last = admission.wait(connections[1], 1, 3)
        admission.leave()
        assert last.result() is True

    run(scenario)
