"""Locust users that speak HTTP/2 through httpx, one connection each, over the demo app's routes.

`loadtest.locust_run` starts locust on this file; each request fires locust's request event.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from locust import User, between, task

# Importing locust monkey-patches the stdlib for gevent, removing select.epoll. httpcore imports
# trio whenever it is installed, and trio then fails with AttributeError where httpcore only
# expects ImportError; this process never runs trio, so make its import an ImportError.
if "trio" not in sys.modules:
    sys.modules["trio"] = None  # type: ignore[assignment]

import httpx  # after the guard: httpx < 0.28 imports httpcore at once

# httpx logs every request at INFO: under load that is the load generator's main cost.
logging.getLogger("httpx").setLevel(logging.WARNING)

REQUEST_TIMEOUT = 30.0
BROWSE_PAGES = 3
BIG_SIZE = 64 * 1024
UPLOAD_BODY = bytes(range(256)) * 64  # 16 KiB, not all one byte: a shifted echo would show
STREAM_CHUNKS, STREAM_SIZE = 16, 4096
SLOW_MS = 50

Check = Callable[[httpx.Response], None]


class ResponseError(Exception):
    """The server answered, but not what the journey expects; locust records it as a failure."""


class Http2User(User):
    """A locust User whose `request` goes over its own httpx HTTP/2 connection to `--host`.

    http:// hosts get h2c with prior knowledge, https:// hosts h2 by ALPN (test certificates are
    not verified). Subclasses add tasks; `request` times and reports every call.
    """

    abstract = True
    client: httpx.Client | None = None

    def on_start(self) -> None:
        """One client per simulated user, so each user is one HTTP/2 connection to the server."""
        if not self.host:
            raise ValueError("Http2User needs a host: pass locust's --host")
        self.client = httpx.Client(
            base_url=self.host, http1=False, http2=True, verify=False, timeout=REQUEST_TIMEOUT
        )

    def on_stop(self) -> None:
        """Close the connection with GOAWAY rather than leaving it to the server's timeouts."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def request(
        self,
        method: str,
        path: str,
        *,
        name: str | None = None,
        check: Check | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Send one request and fire locust's request event; failures are reported, not raised.

        A failure is an exception from httpx, a status outside 2xx/3xx, or `check` raising.
        The response time covers the whole body, as the user waits for all of it.
        """
        assert self.client is not None, "on_start has not run"
        started_at = time.time()
        started = time.perf_counter()
        response: httpx.Response | None = None
        exception: Exception | None = None
        try:
            response = self.client.request(method, path, **kwargs)
            if not 200 <= response.status_code < 400:
                raise ResponseError(f"HTTP {response.status_code}")
            if check is not None:
                check(response)
        except Exception as error:  # every client-side error is a failed request, not a crash
            exception = error
        self.environment.events.request.fire(
            request_type=method,
            name=name or path,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(response.content) if response is not None else 0,
            response=response,
            exception=exception,
            context=self.context(),
            start_time=started_at,
            url=str(response.url) if response is not None else self.host + path,
        )
        return response


def body_is(expected: bytes) -> Check:
    """A check that the body is exactly `expected` (the echo must not drop or reorder bytes)."""

    def check(response: httpx.Response) -> None:
        if response.content != expected:
            raise ResponseError(f"body of {len(response.content)} bytes is not the expected one")

    return check


def length_is(expected: int) -> Check:
    """A check on the body length only, for generated bodies."""

    def check(response: httpx.Response) -> None:
        if len(response.content) != expected:
            raise ResponseError(f"body of {len(response.content)} bytes, expected {expected}")

    return check


class DemoUser(Http2User):
    """Journeys over osmium.demo:app, weighted like a site: mostly pages, some transfers.

    Each journey's requests share its name in locust's stats: browse, download, upload, stream,
    slow.
    """

    wait_time = between(0.01, 0.05)

    @task(5)
    def browse(self) -> None:
        for _ in range(BROWSE_PAGES):
            self.request("GET", "/", name="browse", check=body_is(b"hello world"))

    @task(2)
    def download(self) -> None:
        self.request("GET", f"/big?size={BIG_SIZE}", name="download", check=length_is(BIG_SIZE))

    @task(2)
    def upload(self) -> None:
        self.request(
            "POST", "/echo", name="upload", content=UPLOAD_BODY, check=body_is(UPLOAD_BODY)
        )

    @task(1)
    def stream(self) -> None:
        path = f"/stream?chunks={STREAM_CHUNKS}&size={STREAM_SIZE}"
        self.request("GET", path, name="stream", check=length_is(STREAM_CHUNKS * STREAM_SIZE))

    @task(1)
    def slow(self) -> None:
        self.request("GET", f"/slow?ms={SLOW_MS}", name="slow", check=body_is(b"slow response"))
