"""RFC 9218 priority signals: the `priority` field, its server-side merge and PRIORITY_UPDATE.

Pure functions over bytes; the HTTP/2 core feeds them header values and frame payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

import http_sf

from osmium.protocol.events import ErrorCode

PRIORITY_UPDATE_TYPE = 0x10  # RFC 9218 §7.1 frame type
URGENCIES = range(8)  # RFC 9218 §4.1: 0 (most urgent) .. 7


@dataclass(frozen=True, slots=True)
class Priority:
    """A response's urgency (0 first .. 7 last) and whether it is useful as it arrives."""

    urgency: int = 3
    incremental: bool = False


DEFAULT_PRIORITY = Priority()  # RFC 9218 §4.1/§4.2 defaults: u=3, i=?0

# (urgency, incremental) a field value names; None where absent or ignored.
_Parameters = tuple[int | None, bool | None]
_ABSENT = (None, None)


def _parameters(value: bytes) -> _Parameters | None:
    """The u and i parameters of a `priority` field value (RFC 9218 §4, RFC 9651 Dictionary).

    A value that fails to parse is ignored whole (RFC 9651 §4.2); unknown keys, and u or i of the
    wrong type or out of range, are ignored one by one (RFC 9218 §4). Member parameters (`;k=v`)
    carry nothing for priority and are dropped. None: the value failed to parse.
    """
    try:
        members = http_sf.parse(value, tltype="dictionary")
    except ValueError:  # http_sf.StructuredFieldError, a ValueError
        return None
    urgency, _ = members.get("u", _ABSENT)
    incremental, _ = members.get("i", _ABSENT)
    # `type(...) is`: a Boolean is a Python int, and must not pass for an Integer u.
    if type(urgency) is not int or urgency not in URGENCIES:
        urgency = None
    if type(incremental) is not bool:
        incremental = None
    return urgency, incremental


def _common_values() -> dict[bytes, _Parameters | None]:
    """What browsers send, parsed once, so the per-request path is one dictionary look-up."""
    values = [b"i"]
    for urgency in URGENCIES:
        values += [b"u=%d" % urgency, b"u=%d, i" % urgency]
    return {value: _parameters(value) for value in values}


_COMMON = _common_values()


def parse_priority(value: bytes | None, base: Priority = DEFAULT_PRIORITY) -> Priority:
    """The `priority` field value applied over `base`: parameters it does not name keep base's.

    `value` is the whole field; several field lines are joined with b", " first (RFC 9110 §5.3).
    A malformed value changes nothing: `base` comes back.
    """
    if value is None:
        return base
    parameters = _COMMON[value] if value in _COMMON else _parameters(value)
    if parameters is None:
        return base
    return _applied(parameters, base)


def _applied(parameters: _Parameters, base: Priority) -> Priority:
    """`base` with the parameters that were named replaced."""
    urgency, incremental = parameters
    if urgency is None:
        urgency = base.urgency
    if incremental is None:
        incremental = base.incremental
    if urgency == base.urgency and incremental == base.incremental:
        return base
    return Priority(urgency, incremental)


def merge_response_priority(client: Priority, response_field: bytes | None) -> Priority:
    """RFC 9218 §8: the application's `priority` response field overrides what it names.

    Parameters the response leaves out keep the client's values (or the defaults the client's
    request implied).
    """
    return parse_priority(response_field, base=client)


@dataclass(frozen=True, slots=True)
class PriorityUpdate:
    """A PRIORITY_UPDATE frame: the new `priority` field value for another stream."""

    prioritized_stream_id: int
    field_value: bytes

    def priority(self, current: Priority) -> Priority:
        """The stream's priority after this update, which was `current`.

        RFC 9218 §7: the frame carries the complete set, so a parameter it leaves out takes its
        default, not the current value. A value that fails to parse MAY be a connection error;
        we ignore the frame instead (`current` stays), as a malformed request field is ignored.
        """
        parameters = _parameters(self.field_value)
        if parameters is None:
            return current
        return _applied(parameters, DEFAULT_PRIORITY)


class PriorityUpdateError(ValueError):
    """A PRIORITY_UPDATE frame the connection must die of, with the RFC 9113 error code to use."""

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code


_STREAM_ID_MASK = 0x7FFF_FFFF  # the reserved R bit is ignored on receipt (RFC 9113 §4.1)


def parse_priority_update(stream_id: int, payload: bytes) -> PriorityUpdate:
    """An RFC 9218 §7.1 PRIORITY_UPDATE received on `stream_id`: R + 31-bit id, then the value.

    The field value is returned unparsed (see `PriorityUpdate.priority`). The rules on the
    prioritized stream's state (closed, idle beyond MAX_CONCURRENT_STREAMS, a push stream not
    promised yet) are the caller's, which knows the streams.
    """
    if stream_id != 0:
        raise PriorityUpdateError(ErrorCode.PROTOCOL_ERROR, "PRIORITY_UPDATE on a stream")
    if len(payload) < 4:  # too short for its mandatory field (RFC 9113 §4.2)
        raise PriorityUpdateError(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY_UPDATE shorter than 4")
    prioritized_stream_id = int.from_bytes(payload[:4], "big") & _STREAM_ID_MASK
    if prioritized_stream_id == 0:
        raise PriorityUpdateError(ErrorCode.PROTOCOL_ERROR, "PRIORITY_UPDATE for stream 0")
    return PriorityUpdate(prioritized_stream_id, bytes(payload[4:]))
