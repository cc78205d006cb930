"""Helpers shared by the integration tests: external tools, h2load output, deadlines, clients."""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server_process import ServerProcess, osmium_command

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT = 120.0


def run_tool(
    *args: str, timeout: float = TOOL_TIMEOUT, text: bool = True
) -> subprocess.CompletedProcess:
    """Run curl/nghttp/h2load; stdout and stderr kept apart; killed at the deadline."""
    return subprocess.run(list(args), capture_output=True, text=text, timeout=timeout, check=False)


def run_osmium(
    *args: str,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """`python -m osmium *args` from the repository root, for CLI tests that expect it to exit;
    `env`: variables added to this process's environment; `pass_fds`: descriptors it inherits."""
    return subprocess.run(
        osmium_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, **env} if env else None,
        pass_fds=pass_fds,
        check=False,
    )


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `condition` until it holds; `TimeoutError` naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def h2c_client(server: ServerProcess, **kwargs: object) -> httpx.Client:
    """httpx speaking HTTP/2 with prior knowledge (cleartext) to the server."""
    return httpx.Client(http1=False, http2=True, base_url=server.url, timeout=30.0, **kwargs)


def h2c_async_client(server: ServerProcess, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=False, http2=True, base_url=server.url, timeout=30.0, **kwargs)


def header(headers: list[tuple[bytes, bytes]] | None, name: bytes) -> bytes | None:
    for key, value in headers or []:
        if key == name:
            return value
    return None


# -- generated payloads --------------------------------------------------------------------------


def payload_chunks(total: int, seed: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """`total` pseudo-random bytes, deterministic for `seed`, in chunks."""
    rng = random.Random(seed)
    remaining = total
    while remaining:
        size = min(chunk_size, remaining)
        yield rng.randbytes(size)
        remaining -= size


def payload_digest(total: int, seed: int) -> str:
    digest = hashlib.sha256()
    for chunk in payload_chunks(total, seed):
        digest.update(chunk)
    return digest.hexdigest()


# -- nghttp ---------------------------------------------------------------------------------------

_NGHTTP_ROW = re.compile(
    r"^\s*(?P<id>\d+)\s+\S+\s+\S+\s+\S+\s+(?P<code>\d{3})\s+(?P<size>\S+)\s+(?P<path>\S+)\s*$",
    re.MULTILINE,
)


def nghttp_rows(output: str) -> list[tuple[int, str, str]]:
    """(status, size, path) for each request in the statistics `nghttp -s` prints."""
    return [(int(m["code"]), m["size"], m["path"]) for m in _NGHTTP_ROW.finditer(output)]


# -- h2load --------------------------------------------------------------------------------------

_REQUESTS = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored, "
    r"(?P<timeout>\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(
    r"^status codes: (?P<s2xx>\d+) 2xx, (?P<s3xx>\d+) 3xx, (?P<s4xx>\d+) 4xx, (?P<s5xx>\d+) 5xx",
    re.MULTILINE,
)


@dataclass(frozen=True)
class H2LoadResult:
    total: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    output: str


def parse_h2load(output: str) -> H2LoadResult:
    requests = _REQUESTS.search(output)
    status = _STATUS.search(output)
    assert requests and status, f"h2load output without a summary:\n{output}"
    return H2LoadResult(
        total=int(requests["total"]),
        succeeded=int(requests["succeeded"]),
        failed=int(requests["failed"]),
        errored=int(requests["errored"]),
        timeout=int(requests["timeout"]),
        status_2xx=int(status["s2xx"]),
        status_3xx=int(status["s3xx"]),
        status_4xx=int(status["s4xx"]),
        status_5xx=int(status["s5xx"]),
        output=output,
    )


def h2load(*args: str, timeout: float = TOOL_TIMEOUT) -> H2LoadResult:
    result = run_tool("h2load", *args, timeout=timeout)
    assert result.returncode == 0, (
        f"h2load exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return parse_h2load(result.stdout)


def assert_all_succeeded(result: H2LoadResult, requests: int) -> None:
    detail = result.output
    assert result.total == requests, detail
    assert result.succeeded == requests, detail
    assert (result.failed, result.errored, result.timeout) == (0, 0, 0), detail
    assert result.status_2xx == requests, detail
    assert (result.status_3xx, result.status_4xx, result.status_5xx) == (0, 0, 0), detail
