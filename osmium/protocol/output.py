"""One stream's response waiting to go out: body bytes, then its end (END_STREAM or trailers).

The core queues what the application sends here and frames it only when the scheduler picks the
stream and the windows allow, so the order on the wire is the core's choice, not the order in
which application tasks happened to wake up.
"""

from __future__ import annotations

from collections import deque

from osmium.protocol.events import Headers
from osmium.protocol.priority import DEFAULT_PRIORITY, Priority


class StreamOutput:
    """Body chunks in order (kept as the app gave them: no copies), and how the stream ends."""

    __slots__ = (
        "_chunks",
        "end_stream",
        "priority",
        "progress_at",
        "reset_when_sent",
        "size",
        "trailers",
    )

    def __init__(self, priority: Priority = DEFAULT_PRIORITY) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        #: Body bytes queued and not yet framed.
        self.size = 0
        #: The body ends with the last queued byte (END_STREAM on its frame, or trailers after).
        self.end_stream = False
        self.trailers: Headers | None = None
        #: RST_STREAM with this code once the queued body is out (the app failed mid-response, or
        #: answered without reading the whole request).
        self.reset_when_sent: int | None = None
        self.priority = priority
        #: When the queue last moved (a frame went out, or it filled up after being empty);
        #: None until the core first sees it queued. send_timeout runs from here.
        self.progress_at: float | None = None

    def append(self, data: bytes | memoryview) -> None:
        self._chunks.append(data)
        self.size += len(data)

    def take(self, most: int) -> bytes | memoryview:
        """Up to `most` bytes from the front, never joining chunks (a frame per chunk at most)."""
        chunk = self._chunks[0]
        if len(chunk) <= most:
            self._chunks.popleft()
        else:
            view = memoryview(chunk)
            self._chunks[0] = view[most:]
            chunk = view[:most]
        self.size -= len(chunk)
        return chunk

    @property
    def finishing(self) -> bool:
        """Nothing more will be queued: the body's end, trailers or a reset are already known."""
        return self.end_stream or self.trailers is not None or self.reset_when_sent is not None
