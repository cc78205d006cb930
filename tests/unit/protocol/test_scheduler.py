"""The RFC 9218 sending order: urgency first, then a round of incremental streams and the group of
non-incremental ones (lowest stream id first), each member's turn one quantum of bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from osmium.protocol.priority import DEFAULT_PRIORITY, URGENCIES, Priority
from osmium.protocol.scheduler import DEFAULT_QUANTUM, Scheduler

FRAME = DEFAULT_QUANTUM  # a full default-size DATA frame: one turn
INCREMENTAL = Priority(3, True)


def serve(scheduler: Scheduler, frames: int, size: int = FRAME) -> list[int | None]:
    """The streams that send the next `frames` DATA frames, all staying ready."""
    order = []
    for _ in range(frames):
        stream_id = scheduler.next()
        order.append(stream_id)
        if stream_id is not None:
            scheduler.sent(stream_id, size)
    return order


def scheduler_with(*streams: tuple[int, Priority]) -> Scheduler:
    scheduler = Scheduler()
    for stream_id, priority in streams:
        scheduler.push(stream_id, priority)
    return scheduler


def test_empty() -> None:
    scheduler = Scheduler()
    assert scheduler.next() is None
    assert len(scheduler) == 0
    scheduler.discard(1)
    scheduler.sent(1, FRAME)
    scheduler.reprioritise(1, INCREMENTAL)  # not ready: stays out
    assert scheduler.next() is None
    assert 1 not in scheduler


def test_next_leaves_the_stream_in_place() -> None:
    scheduler = scheduler_with((1, DEFAULT_PRIORITY))
    assert [scheduler.next(), scheduler.next()] == [1, 1]
    assert len(scheduler) == 1
    assert 1 in scheduler


def test_lower_urgency_first() -> None:
    scheduler = scheduler_with(
        (1, Priority(5)), (3, Priority(0)), (5, Priority(3)), (7, Priority(7))
    )
    order = []
    while (stream_id := scheduler.next()) is not None:
        order.append(stream_id)
        scheduler.discard(stream_id)
    assert order == [3, 5, 1, 7]


def test_more_urgent_stream_preempts_and_the_other_resumes() -> None:
    scheduler = scheduler_with((1, Priority(3)))
    assert serve(scheduler, 2) == [1, 1]
    scheduler.push(3, Priority(1, True))
    assert serve(scheduler, 2) == [3, 3]
    scheduler.discard(3)
    assert serve(scheduler, 1) == [1]


def test_non_incremental_in_stream_id_order_each_to_completion() -> None:
    scheduler = scheduler_with((7, DEFAULT_PRIORITY), (3, DEFAULT_PRIORITY), (5, DEFAULT_PRIORITY))
    assert serve(scheduler, 3) == [3, 3, 3]  # no rotation for non-incremental streams
    scheduler.discard(3)
    assert serve(scheduler, 2) == [5, 5]
    scheduler.discard(5)
    assert serve(scheduler, 1) == [7]


def test_lower_stream_id_ready_again_goes_first() -> None:
    # Request order, not arrival in the scheduler: stream 1 got window back while 3 was sending.
    scheduler = scheduler_with((3, DEFAULT_PRIORITY))
    assert serve(scheduler, 1) == [3]
    scheduler.push(1, DEFAULT_PRIORITY)
    assert serve(scheduler, 1) == [1]


def test_incremental_round_robin_per_full_frame() -> None:
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL), (5, INCREMENTAL))
    assert serve(scheduler, 6) == [1, 3, 5, 1, 3, 5]


def test_incremental_stream_joins_at_the_back_of_the_round() -> None:
    scheduler = scheduler_with((5, INCREMENTAL), (7, INCREMENTAL))
    assert serve(scheduler, 1) == [5]
    scheduler.push(1, INCREMENTAL)
    assert serve(scheduler, 4) == [7, 5, 1, 7]  # 5 went last, so it is ahead of 1


def test_turn_lasts_a_quantum_of_bytes() -> None:
    # Short frames do not cost a stream its share: it keeps the turn until it sent a quantum.
    short = 1000
    frames_per_turn = -(-DEFAULT_QUANTUM // short)
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL))
    assert serve(scheduler, frames_per_turn, short) == [1] * frames_per_turn
    assert serve(scheduler, 1, short) == [3]


def test_byte_share_is_fair_with_unequal_frames() -> None:
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL))
    frame_size = {1: 1000, 3: FRAME}
    sent = {1: 0, 3: 0}
    for _ in range(200):
        stream_id = scheduler.next()
        assert stream_id is not None
        scheduler.sent(stream_id, frame_size[stream_id])
        sent[stream_id] += frame_size[stream_id]
    assert abs(sent[1] - sent[3]) <= 2 * DEFAULT_QUANTUM


def test_allowance_keeps_a_turn_to_its_quantum() -> None:
    """A frame cut short (by a window) leaves the rest of the turn, not a whole frame more."""
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL))
    assert scheduler.allowance() == DEFAULT_QUANTUM
    scheduler.sent(1, DEFAULT_QUANTUM - 4)
    assert (scheduler.next(), scheduler.allowance()) == (1, 4)
    scheduler.sent(1, scheduler.allowance())
    assert (scheduler.next(), scheduler.allowance()) == (3, DEFAULT_QUANTUM)


def test_custom_quantum() -> None:
    scheduler = Scheduler(quantum=1)
    scheduler.push(1, INCREMENTAL)
    scheduler.push(3, INCREMENTAL)
    assert serve(scheduler, 4, size=1) == [1, 3, 1, 3]


def test_non_incremental_group_and_incremental_streams_share_an_urgency() -> None:
    # RFC 9218 §10: neither kind starves the other; non-incremental ones still go one at a time.
    scheduler = scheduler_with((1, DEFAULT_PRIORITY), (3, INCREMENTAL), (5, DEFAULT_PRIORITY))
    assert serve(scheduler, 4) == [1, 3, 1, 3]
    scheduler.discard(1)
    assert serve(scheduler, 4) == [5, 3, 5, 3]
    scheduler.discard(5)
    assert serve(scheduler, 2) == [3, 3]


def test_leaving_mid_turn_gives_the_next_member_a_fresh_turn() -> None:
    half = DEFAULT_QUANTUM // 2 + 1
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL), (5, INCREMENTAL))
    assert serve(scheduler, 1, half) == [1]
    scheduler.discard(1)
    assert serve(scheduler, 2, half) == [3, 3]  # 3 did not inherit 1's bytes
    assert serve(scheduler, 1, half) == [5]


def test_sent_for_a_stream_out_of_turn_changes_nothing() -> None:
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL))
    scheduler.sent(3, FRAME)
    scheduler.sent(9, FRAME)
    assert serve(scheduler, 2) == [1, 3]


def test_push_of_a_ready_stream_keeps_its_place() -> None:
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL))
    scheduler.push(1, INCREMENTAL)
    assert len(scheduler) == 2
    assert serve(scheduler, 2) == [1, 3]


def test_reprioritise_moves_a_ready_stream() -> None:
    scheduler = scheduler_with((1, Priority(3)), (3, Priority(3)))
    assert serve(scheduler, 1) == [1]
    scheduler.reprioritise(3, Priority(0))  # PRIORITY_UPDATE mid-response
    assert serve(scheduler, 1) == [3]
    scheduler.reprioritise(3, Priority(7))
    assert serve(scheduler, 1) == [1]
    scheduler.discard(1)
    assert serve(scheduler, 1) == [3]
    assert len(scheduler) == 1


def test_reprioritise_to_incremental_and_back() -> None:
    scheduler = scheduler_with((1, Priority(3)), (3, Priority(3)), (5, INCREMENTAL))
    assert serve(scheduler, 2) == [1, 5]
    scheduler.reprioritise(1, INCREMENTAL)  # 1 joins the round behind 5; 3 leads the group
    assert serve(scheduler, 3) == [3, 5, 1]
    scheduler.reprioritise(1, Priority(3))
    assert serve(scheduler, 1) == [1]


def test_reprioritise_to_the_same_priority_keeps_the_turn() -> None:
    scheduler = scheduler_with((1, INCREMENTAL), (3, INCREMENTAL))
    scheduler.reprioritise(1, INCREMENTAL)
    assert serve(scheduler, 2) == [1, 3]


def test_reprioritise_does_not_make_a_stream_ready() -> None:
    scheduler = scheduler_with((1, INCREMENTAL))
    scheduler.discard(1)
    scheduler.reprioritise(1, Priority(0))
    assert scheduler.next() is None
    scheduler.push(1, Priority(0))  # the core passes the new priority when it is ready again
    assert scheduler.next() == 1


def test_churn_never_returns_a_discarded_stream() -> None:
    scheduler = Scheduler()
    for stream_id in range(1, 200, 2):
        scheduler.push(stream_id, Priority(stream_id % 8, stream_id % 3 == 0))
    for stream_id in range(1, 200, 4):
        scheduler.discard(stream_id)
    seen = set()
    while (stream_id := scheduler.next()) is not None:
        assert stream_id % 4 == 3
        seen.add(stream_id)
        scheduler.sent(stream_id, FRAME)
        scheduler.discard(stream_id)
    assert seen == set(range(3, 200, 4))
    assert len(scheduler) == 0


NON_INCREMENTAL = "non-incremental"  # the reference model's member for the group


class Reference:
    """The same policy written for reading, not speed: lists and scans, no bitmask, no sentinel."""

    def __init__(self, quantum: int) -> None:
        self.quantum = quantum
        self.ready: dict[int, Priority] = {}
        self.rounds: dict[int, list[int | str]] = {urgency: [] for urgency in URGENCIES}
        self.turn = dict.fromkeys(URGENCIES, 0)

    @staticmethod
    def member(stream_id: int, priority: Priority) -> int | str:
        return stream_id if priority.incremental else NON_INCREMENTAL

    def push(self, stream_id: int, priority: Priority) -> None:
        if self.ready.get(stream_id) == priority:
            return
        self.discard(stream_id)
        self.ready[stream_id] = priority
        round_ = self.rounds[priority.urgency]
        if self.member(stream_id, priority) not in round_:
            round_.append(self.member(stream_id, priority))

    def discard(self, stream_id: int) -> None:
        priority = self.ready.pop(stream_id, None)
        if priority is None:
            return
        member = self.member(stream_id, priority)
        if member == NON_INCREMENTAL and self.non_incremental(priority.urgency):
            return
        round_ = self.rounds[priority.urgency]
        if round_[0] == member:
            self.turn[priority.urgency] = 0
        round_.remove(member)

    def reprioritise(self, stream_id: int, priority: Priority) -> None:
        if stream_id in self.ready:
            self.push(stream_id, priority)

    def non_incremental(self, urgency: int) -> list[int]:
        return sorted(s for s, p in self.ready.items() if p == Priority(urgency, False))

    def next(self) -> int | None:
        for urgency in URGENCIES:
            if self.rounds[urgency]:
                head = self.rounds[urgency][0]
                return self.non_incremental(urgency)[0] if head == NON_INCREMENTAL else int(head)
        return None

    def sent(self, stream_id: int, size: int) -> None:
        priority = self.ready.get(stream_id)
        if priority is None:
            return
        round_ = self.rounds[priority.urgency]
        if round_[0] != self.member(stream_id, priority):
            return
        self.turn[priority.urgency] += size
        if self.turn[priority.urgency] >= self.quantum:
            round_.append(round_.pop(0))
            self.turn[priority.urgency] = 0


stream_ids = st.integers(1, 12)
priorities = st.builds(Priority, st.sampled_from(URGENCIES), st.booleans())
sizes = st.sampled_from([0, 1, 1000, DEFAULT_QUANTUM - 1, DEFAULT_QUANTUM, 70_000])
operations = st.one_of(
    st.tuples(st.just("push"), stream_ids, priorities),
    st.tuples(st.just("discard"), stream_ids),
    st.tuples(st.just("reprioritise"), stream_ids, priorities),
    st.tuples(st.just("sent"), stream_ids, sizes),
    st.tuples(st.just("send_next"), sizes),  # what the core does: serve next() one frame
)


@settings(max_examples=400)
@given(st.lists(operations, max_size=80), st.sampled_from([1, 5000, DEFAULT_QUANTUM]))
def test_matches_the_reference_model(operations: list[tuple], quantum: int) -> None:
    scheduler, reference = Scheduler(quantum), Reference(quantum)
    for name, *arguments in operations:
        if name == "send_next":
            stream_id = scheduler.next()
            if stream_id is None:
                continue
            name, arguments = "sent", [stream_id, *arguments]
        getattr(scheduler, name)(*arguments)
        getattr(reference, name)(*arguments)
        chosen = scheduler.next()
        assert chosen == reference.next()
        assert len(scheduler) == len(reference.ready)
        check_invariants(chosen, reference.ready)


def check_invariants(chosen: int | None, ready: dict[int, Priority]) -> None:
    """What RFC 9218 §10 asks of any choice, whatever the round's state."""
    if not ready:
        assert chosen is None
        return
    assert chosen in ready  # work-conserving, and never a discarded stream
    priority = ready[chosen]
    assert priority.urgency == min(p.urgency for p in ready.values())
    if not priority.incremental:
        assert chosen == min(s for s, p in ready.items() if p == priority)


@given(st.lists(priorities, min_size=1, max_size=10, unique=True), st.integers(1, 5))
def test_every_member_of_the_most_urgent_round_gets_one_turn_per_round(
    stream_priorities: list[Priority], rounds: int
) -> None:
    scheduler = Scheduler()
    for index, priority in enumerate(stream_priorities):
        scheduler.push(2 * index + 1, priority)
    urgency = min(p.urgency for p in stream_priorities)
    members = [p for p in stream_priorities if p.urgency == urgency]
    # One member per incremental stream, one for all the non-incremental ones.
    round_size = sum(p.incremental for p in members) + (not all(p.incremental for p in members))
    order = serve(scheduler, round_size * rounds)
    turns = [order[i : i + round_size] for i in range(0, len(order), round_size)]
    assert all(turn == turns[0] for turn in turns)
    assert len(set(turns[0])) == round_size
