"""RequestStats and quantile: the numbers the admin plane's latency figures come from."""

from __future__ import annotations

from osmium.admin.stats import LATENCY_BOUNDS, RequestStats, quantile


def test_record_counts_latency_buckets_and_status_classes() -> None:
    stats = RequestStats()
    stats.record(200, 0.0004)
    stats.record(404, 0.003)
    stats.record(None, 20.0)
    assert stats.count == 3
    assert stats.latency_counts[0] == 1  # <= 0.5 ms
    assert stats.latency_counts[LATENCY_BOUNDS.index(0.005)] == 1
    assert stats.latency_counts[-1] == 1  # over the last bound
    assert abs(stats.latency_sum - 20.0034) < 1e-9
    report = stats.report()
    assert report["responses"] == {"1xx": 0, "2xx": 1, "3xx": 0, "4xx": 1, "5xx": 0}


def test_a_bound_belongs_to_its_own_bucket() -> None:
    stats = RequestStats()
    stats.record(200, 0.001)
    assert stats.latency_counts[LATENCY_BOUNDS.index(0.001)] == 1


def test_quantile_interpolates_within_the_bucket() -> None:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    counts[LATENCY_BOUNDS.index(0.01)] = 100  # all between 5 and 10 ms
    assert quantile(counts, 0.5) == 0.0075
    assert quantile(counts, 1.0) == 0.01
    counts[-1] = 100
    assert quantile(counts, 0.99) == LATENCY_BOUNDS[-1]


def test_quantile_of_nothing_is_none() -> None:
    assert quantile([0] * (len(LATENCY_BOUNDS) + 1), 0.5) is None
