"""Per-connection budgets against HTTP/2 floods: what a peer may make us do per second.

Sans-IO: the caller passes the time. A connection over budget is answered with
GOAWAY(ENHANCE_YOUR_CALM) and closed; each budget is a named setting with a documented default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    #: RST_STREAM frames from the peer per second (rapid reset, CVE-2023-44487).
    max_resets_per_second: int = 200
    #: PING, SETTINGS, PRIORITY and empty DATA frames per second (CVE-2019-9512 ping flood,
    #: 9513 priority churn, 9515 settings flood, 9518 empty frames).
    max_control_frames_per_second: int = 500

    def problems(self) -> list[str]:
        return [
            f"{name} must be positive"
            for name in ("max_resets_per_second", "max_control_frames_per_second")
            if getattr(self, name) < 1
        ]


class RateBudget:
    """At most `limit` spends per one-second window."""

    __slots__ = ("_limit", "_spent", "_window_start", "name")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self._limit = limit
        self._spent = 0
        self._window_start = 0.0

    def spend(self, now: float) -> bool:
        """Count one; False once this second's budget is gone."""
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._spent = 0
        self._spent += 1
        return self._spent <= self._limit
