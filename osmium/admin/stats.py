"""What a worker counts per request for the admin plane: latency in fixed log buckets and
responses by status class; kept only while the admin plane is on (a few attribute updates)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: Upper bounds of the latency buckets, seconds: roughly 1-2.5-5 per decade, 0.5 ms to 10 s;
#: a last bucket (+Inf) takes the rest. Fixed, so workers and history add up bucket by bucket.
LATENCY_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class RequestStats:
    """Cumulative per worker: a latency histogram and responses by status class."""

    __slots__ = ("count", "latency_counts", "latency_sum", "responses")

    def __init__(self) -> None:
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = 0.0
        self.count = 0
        #: By status class: index 0 is 1xx ... 4 is 5xx (a request without a response is not here).
        self.responses = [0] * len(STATUS_CLASSES)

    def record(self, status: int | None, seconds: float) -> None:
        """One request handled in `seconds`, answered with `status` (None: no response)."""
        self.latency_counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.latency_sum += seconds
        self.count += 1
        if status is not None:
            self.responses[status // 100 - 1] += 1

    def report(self) -> dict[str, object]:
        """The fields this adds to a worker's stats report."""
        return {
            "latency_counts": self.latency_counts,
            "latency_sum": self.latency_sum,
            "responses": dict(zip(STATUS_CLASSES, self.responses, strict=True)),
        }


def quantile(counts: Sequence[int], fraction: float) -> float | None:
    """The `fraction` quantile of a histogram over LATENCY_BOUNDS, in seconds, interpolated
    within its bucket (Prometheus' histogram_quantile); None without observations."""
    total = sum(counts)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[index - 1] if index else 0.0
            return lower + (LATENCY_BOUNDS[index] - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS[-1]
