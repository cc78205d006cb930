"""A 1 GiB response streams through the server without its memory growing with the body."""

from __future__ import annotations

import subprocess
import threading

from tests.server_process import running_server

GIB = 1024**3
#: Allowed RSS growth while 1 GiB flows: buffers are bounded, so this is about allocator noise.
RSS_GROWTH_LIMIT = 40 * 1024**2


def test_one_gib_download_keeps_memory_flat() -> None:
    with running_server() as server:
        baseline = server.rss_bytes()
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, server.rss_bytes())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            result = subprocess.run(
                [
                    "curl", "--http2-prior-knowledge", "-sS", "-o", "/dev/null",
                    "-w", "%{http_code} %{size_download}", f"{server.url}/big?size={GIB}",
                ],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
        finally:
            done.set()
            sampler.join()
        assert result.stdout == f"200 {GIB}"
        assert peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew {(peak - baseline) >> 20} MiB"
