"""The "normal client" that keeps using a server while a test attacks it, and an RSS sampler.

`normal_traffic(server)` runs one thread making sequential HTTP/2 (prior knowledge) GETs of `/`
with httpx and another sampling the server's resident memory; the yielded `Probe` reports the
success rate, latencies and RSS growth for the window in which the attack ran.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from tests.server_process import ServerProcess

REQUEST_TIMEOUT = 5.0
#: Pause between the normal client's requests: a busy but polite client, not a second flood.
REQUEST_GAP = 0.005
RSS_INTERVAL = 0.05
MIN_REQUESTS = 20
MB = 1024 * 1024


@dataclass
class Probe:
    server: ServerProcess
    #: The CA (an SSLContext trusting it) when the server speaks TLS.
    verify: ssl.SSLContext | bool = True
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_peak: int = 0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def requests(self) -> int:
        return len(self.latencies) + len(self.failures)

    @property
    def success_rate(self) -> float:
        return len(self.latencies) / self.requests if self.requests else 0.0

    @property
    def p99(self) -> float:
        if not self.latencies:
            return math.inf
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_start

    @property
    def cpu_used(self) -> float:
        """Server CPU seconds in the window: the attack's cost plus the normal client's."""
        return self.cpu_end - self.cpu_start if self.cpu_end else 0.0

    def summary(self) -> str:
        window = (self.ended or time.monotonic()) - self.started
        return (
            f"normal client: {len(self.latencies)}/{self.requests} ok in {window:.2f} s "
            f"({self.success_rate:.2%}), p99 {self.p99 * 1000:.1f} ms; "
            f"server RSS {self.rss_start / MB:.1f} MB -> peak {self.rss_peak / MB:.1f} MB "
            f"(+{self.rss_growth / MB:.1f} MB), CPU {self.cpu_used:.2f} s "
            f"({self.cpu_used / window:.0%} of one core)"
        )

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        """Poll until the client has made `count` requests in this window (deadline-bound)."""
        deadline = time.monotonic() + timeout
        while self.requests < count:
            assert time.monotonic() < deadline, f"normal client stalled: {self.summary()}"
            time.sleep(0.01)

    def assert_healthy(self) -> None:
        detail = f"{self.summary()}; first failures: {self.failures[:5]}"
        assert self.requests >= MIN_REQUESTS, f"too few requests to judge: {detail}"
        assert self.success_rate >= 0.99, f"normal client success rate < 99%: {detail}"
        assert self.p99 < 1.0, f"normal client p99 latency >= 1 s: {detail}"
        assert self.rss_growth < 100 * MB, f"server RSS grew >= 100 MB: {detail}"

    # -- the threads -----------------------------------------------------------------------------

    def _client_loop(self) -> None:
        with httpx.Client(
            base_url=self.server.url,
            http1=False,
            http2=True,
            timeout=REQUEST_TIMEOUT,
            verify=self.verify,
        ) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get("/")
                    if response.status_code == 200 and response.content == b"hello world":
                        self.latencies.append(time.monotonic() - started)
                    else:
                        self.failures.append(f"status {response.status_code}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self._stop.wait(REQUEST_GAP)

    def _rss_loop(self) -> None:
        while not self._stop.is_set():
            self.rss_peak = max(self.rss_peak, self.server.rss_bytes())
            self._stop.wait(RSS_INTERVAL)
        self.rss_peak = max(self.rss_peak, self.server.rss_bytes())


@contextmanager
def normal_traffic(
    server: ServerProcess, *, warmup: int = 5, verify: ssl.SSLContext | bool = True
) -> Iterator[Probe]:
    """Yield a running Probe; the window closes (threads joined) when the block exits.

    The warm-up requests (connection set-up) are not counted in the window; the window lasts at
    least until MIN_REQUESTS requests were made, so a short attack still gets judged.
    """
    probe = Probe(server, verify)
    threads = [
        threading.Thread(target=probe._client_loop, name="normal-client", daemon=True),
        threading.Thread(target=probe._rss_loop, name="rss-sampler", daemon=True),
    ]
    threads[0].start()
    try:
        probe.wait_for_requests(warmup)
        assert not probe.failures, f"normal client failed before the attack: {probe.failures}"
        probe.latencies.clear()
        probe.rss_start = probe.rss_peak = server.rss_bytes()
        probe.cpu_start = server.cpu_seconds()
        probe.started = time.monotonic()
        threads[1].start()
        yield probe
        probe.wait_for_requests(MIN_REQUESTS)
    finally:
        probe.ended = time.monotonic()
        probe.cpu_end = server.cpu_seconds()
        probe._stop.set()
        for thread in threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join(REQUEST_TIMEOUT + 2)
