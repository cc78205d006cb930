"""Frame-level checks that h2's FrameBuffer leaves out, made on the 9-byte header alone.

Peeking at the header lets us reject a frame before its payload is buffered, and fix the few
places where RFC 9113 asks for a different error code than h2 and hyperframe give.
"""

from __future__ import annotations

import h2.exceptions
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import Frame

FRAME_HEADER_SIZE = 9
SETTINGS_TYPE = 0x4
WINDOW_UPDATE_TYPE = 0x8
ACK_FLAG = 0x1
HEADERS_TYPE = 0x1
PUSH_PROMISE_TYPE = 0x5
CONTINUATION_TYPE = 0x9
HEADER_BLOCK_TYPES = (HEADERS_TYPE, PUSH_PROMISE_TYPE, CONTINUATION_TYPE)


class FrameSizeError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.FRAME_SIZE_ERROR


class HeaderBlockTooLarge(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.ENHANCE_YOUR_CALM


class ServerFrameBuffer(FrameBuffer):
    """h2's frame buffer for the server side, with the checks RFC 9113 asks for up front.

    - §3.4: the first frame after the preface must be SETTINGS.
    - §4.2: a frame longer than our MAX_FRAME_SIZE is refused as soon as its header arrives,
      not after up to 16 MiB of payload has been buffered.
    - §6.5: a SETTINGS ACK with a payload is a FRAME_SIZE_ERROR (hyperframe calls it invalid data).
    - §6.9: the reserved bit of a WINDOW_UPDATE increment is ignored (hyperframe rejects it).
    - §10.5.1: a header block (HEADERS and its CONTINUATIONs) over `max_header_block_size` ends
      the connection before it is buffered further or decoded.
    """

    def __init__(self, max_header_block_size: int) -> None:
        super().__init__(server=True)
        self._awaiting_client_settings = True
        self._max_header_block_size = max_header_block_size
        self._header_block_size = 0

    @property
    def preface_received(self) -> bool:
        """The client preface and its SETTINGS frame have arrived."""
        return not self._awaiting_client_settings

    @property
    def header_block_pending(self) -> bool:
        """A header block has started and its END_HEADERS has not arrived yet."""
        return bool(self._headers_buffer)

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= FRAME_HEADER_SIZE and not self._preamble_len:
            length = int.from_bytes(data[0:3], "big")
            frame_type = data[3]
            if self._awaiting_client_settings:
                if frame_type != SETTINGS_TYPE or data[4] & ACK_FLAG:
                    raise h2.exceptions.ProtocolError("the preface must be followed by SETTINGS")
                self._awaiting_client_settings = False
            if length > self.max_frame_size:
                raise h2.exceptions.FrameTooLargeError(
                    f"frame of {length} bytes exceeds MAX_FRAME_SIZE {self.max_frame_size}"
                )
            if frame_type == SETTINGS_TYPE and data[4] & ACK_FLAG and length:
                raise FrameSizeError("SETTINGS with ACK must have an empty payload")
            if frame_type == WINDOW_UPDATE_TYPE and length == 4 and len(data) > FRAME_HEADER_SIZE:
                data[FRAME_HEADER_SIZE] &= 0x7F
            if frame_type in HEADER_BLOCK_TYPES and len(data) >= FRAME_HEADER_SIZE + length:
                # Counted once, when the whole frame is here (this header may be peeked again).
                size = length + (self._header_block_size if frame_type == CONTINUATION_TYPE else 0)
                if size > self._max_header_block_size:
                    raise HeaderBlockTooLarge(
                        f"header block over {self._max_header_block_size} bytes"
                    )
                self._header_block_size = size
        return super().__next__()
