"""The HTTP/2 settings and windows a server connection advertises.

Named values with documented defaults, shared by the configuration file, the CLI and the core.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_FRAME_SIZE = 16_384
MAX_FRAME_SIZE = 16_777_215
MAX_WINDOW_SIZE = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    #: SETTINGS_MAX_CONCURRENT_STREAMS: streams over it are refused with REFUSED_STREAM.
    max_concurrent_streams: int = 100
    #: SETTINGS_INITIAL_WINDOW_SIZE: request bytes a client may send per stream before a read.
    initial_window_size: int = 256 * 1024
    #: Receive window of the whole connection, opened with a WINDOW_UPDATE right after SETTINGS.
    connection_window_size: int = 1024 * 1024
    #: SETTINGS_MAX_FRAME_SIZE: the largest frame payload we accept.
    max_frame_size: int = MIN_FRAME_SIZE
    #: SETTINGS_MAX_HEADER_LIST_SIZE: decoded request header bytes (RFC 9113 §6.5.2 accounting).
    max_header_list_size: int = 64 * 1024

    def problems(self) -> list[str]:
        """Every value that RFC 9113 forbids, as a message naming the setting."""
        problems = []
        if not 0 < self.max_concurrent_streams < 2**31:
            problems.append("max_concurrent_streams must be between 1 and 2^31-1")
        if not 0 < self.initial_window_size <= MAX_WINDOW_SIZE:
            problems.append("initial_window_size must be between 1 and 2^31-1")
        if not 65_535 <= self.connection_window_size <= MAX_WINDOW_SIZE:
            problems.append("connection_window_size must be between 65535 and 2^31-1")
        if not MIN_FRAME_SIZE <= self.max_frame_size <= MAX_FRAME_SIZE:
            problems.append("max_frame_size must be between 16384 and 16777215")
        if self.max_header_list_size < 1:
            problems.append("max_header_list_size must be positive")
        return problems
