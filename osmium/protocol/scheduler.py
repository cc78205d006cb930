"""Which ready stream sends the next DATA frame: RFC 9218 §10 urgency and incremental order.

Pure bookkeeping over stream ids; the HTTP/2 core says which streams are ready (data queued and
window open) and which frame went out, and asks whom to serve next.

The order, one round per urgency (nghttp2 keeps one queue per urgency too):
- a lower urgency is served first; a higher one gets bytes only while no lower one is ready;
- within an urgency, a round robin whose members are each incremental stream and, as one more
  member, the non-incremental streams together. That member always serves its lowest stream id,
  so non-incremental responses go one at a time in request order (§10 SHOULD), while incremental
  ones share bandwidth (§10 SHOULD); neither kind can starve the other (§10 RECOMMENDS avoiding
  that both ways: a large non-incremental response before a small incremental one, and an
  endless incremental one before a non-incremental one);
- a member keeps its turn until it has sent `quantum` bytes, and no frame takes it past that
  (`allowance`): one default-size frame, so full frames alternate one by one, and a member whose
  frames a window cut short still gets exactly its byte share.
Only ready streams are held, so the order is work-conserving: a stream blocked on its window
gives way to the next one until it is pushed again.
"""

from __future__ import annotations

from bisect import insort
from collections import deque

from osmium.protocol.priority import URGENCIES, Priority

DEFAULT_QUANTUM = 16_384  # RFC 9113 §6.5.2 default SETTINGS_MAX_FRAME_SIZE: one frame per turn
_NON_INCREMENTAL = 0  # the round member standing for all non-incremental streams (never an id)


class Scheduler:
    """The ready streams of one connection, in RFC 9218 sending order.

    The core's loop: `while budget and s.occupied: sid = s.next(); send one DATA frame of
    n <= s.allowance() bytes from sid; s.sent(sid, n); if sid has no data or window left:
    s.discard(sid)`.
    """

    __slots__ = ("_non_incremental", "_quantum", "_rounds", "_turn", "occupied", "ready")

    def __init__(self, quantum: int = DEFAULT_QUANTUM) -> None:
        self._quantum = quantum
        #: The ready streams and their priorities.
        self.ready: dict[int, Priority] = {}
        # Per urgency: the round's members in turn order, the head's bytes sent in its turn,
        # and the non-incremental stream ids, sorted. Rounds and lists are made for the
        # urgencies in use only: an empty deque is 600 bytes, and most connections use one.
        self._rounds: dict[int, deque[int]] = {}
        self._turn: list[int] = [0 for _ in URGENCIES]
        self._non_incremental: dict[int, list[int]] = {}
        #: Bit u set while urgency u's round has members: non-zero while any stream is ready, and
        #: next() is a lowest-set-bit look-up.
        self.occupied = 0

    def __len__(self) -> int:
        return len(self.ready)

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self.ready

    def push(self, stream_id: int, priority: Priority) -> None:
        """`stream_id` is ready to send; a ready one keeps its place unless `priority` changed."""
        ready = self.ready
        current = ready.get(stream_id)
        if current is not None:
            if current is priority or current == priority:
                return
            self.discard(stream_id)  # and in again below, where its new priority puts it
        ready[stream_id] = priority
        urgency = priority.urgency
        round_ = self._rounds.get(urgency)
        if round_ is None:
            round_ = self._rounds[urgency] = deque()
        if priority.incremental:
            round_.append(stream_id)
        else:
            waiting = self._non_incremental.get(urgency)
            if waiting is None:
                waiting = self._non_incremental[urgency] = []
            if not waiting:
                round_.append(_NON_INCREMENTAL)
            insort(waiting, stream_id)
        self.occupied |= 1 << urgency

    def discard(self, stream_id: int) -> None:
        """`stream_id` is not ready any more (no data, no window, or closed); no-op if absent."""
        current = self.ready.pop(stream_id, None)
        if current is None:
            return
        urgency = current.urgency
        member = stream_id
        if not current.incremental:
            waiting = self._non_incremental[urgency]
            waiting.remove(stream_id)
            if waiting:
                return  # the non-incremental member stays in the round for the others
            member = _NON_INCREMENTAL
        round_ = self._rounds[urgency]
        if round_[0] == member:
            round_.popleft()
            self._turn[urgency] = 0  # the next member starts a fresh turn
        else:
            round_.remove(member)
        if not round_:
            self.occupied &= ~(1 << urgency)

    def reprioritise(self, stream_id: int, priority: Priority) -> None:
        """A new priority (PRIORITY_UPDATE, response field) for a ready stream; others stay out.

        A stream that is not ready is not remembered: the core passes its priority to push().
        """
        if stream_id in self.ready:
            self.push(stream_id, priority)

    def next(self) -> int | None:
        """The stream to send one DATA frame from now, left in place; None when none is ready."""
        occupied = self.occupied
        if not occupied:
            return None  # the core checks `occupied` first; this is for other callers
        urgency = (occupied & -occupied).bit_length() - 1
        head = self._rounds[urgency][0]
        return self._non_incremental[urgency][0] if head == _NON_INCREMENTAL else head

    def allowance(self) -> int:
        """Bytes left in the current turn: the next frame should carry no more, or the member
        would take more than its share (a turn cut short by a window is not carried over)."""
        occupied = self.occupied
        urgency = (occupied & -occupied).bit_length() - 1
        return self._quantum - self._turn[urgency]

    def sent(self, stream_id: int, size: int) -> None:
        """A DATA frame of `size` bytes went out for `stream_id`: its member's turn may end."""
        priority = self.ready.get(stream_id)
        if priority is None:
            return
        urgency = priority.urgency
        round_ = self._rounds[urgency]
        member = stream_id if priority.incremental else _NON_INCREMENTAL
        if round_[0] != member:
            return  # not the member whose turn it is: nothing to account
        turn = self._turn[urgency] + size
        if turn >= self._quantum:
            round_.rotate(-1)
            turn = 0
        self._turn[urgency] = turn
