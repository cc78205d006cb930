"""Start any HTTP/2 server command as a separate process on a free loopback port, and stop it.

A server counts as up once it answers an HTTP/2 connection preface with SETTINGS; stopping is
SIGTERM, then SIGKILL after a timeout. Its output goes to a log file kept with the results.
The known peers (KNOWN_SERVERS) serve osmium's demo app, each on the run's event loop.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_TYPE = 0x4
DEMO_APP = "osmium.demo:app"
HYPERCORN_CONFIG = Path(__file__).with_name("hypercorn.toml")


class LaunchError(Exception):
    """The server did not come up; the message ends with the tail of its log."""


@dataclass(frozen=True)
class ServerSpec:
    """A server command line; `{host}`, `{port}`, `{certfile}`, `{keyfile}` are filled in."""

    name: str
    command: tuple[str, ...]
    tls_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Working directory of the server process (None: ours).
    cwd: Path | None = None
    #: False for a server that speaks only HTTP/1.1: it runs the `h1` scenarios alone.
    http2: bool = True
    #: False for a server that speaks only HTTP/2 (bare-h2): it skips the `h1` scenarios and
    #: WebSockets over HTTP/1.1.
    http1: bool = True
    #: Whether it serves WebSockets over HTTP/2 (RFC 8441 extended CONNECT).
    websocket_h2: bool = True
    #: The event loop it runs on, for the report; None for a command line given as is.
    loop: str | None = None

    def argv(self, port: int, tls: TLSFiles | None) -> list[str]:
        values = {"host": "127.0.0.1", "port": port}
        if tls is not None:
            values |= {"certfile": tls.certfile, "keyfile": tls.keyfile}
        parts = self.command + (self.tls_args if tls is not None else ())
        return [part.format(**values) for part in parts]


@dataclass(frozen=True)
class TLSFiles:
    certfile: str
    keyfile: str


CERT_ARGS = ("--certfile", "{certfile}", "--keyfile", "{keyfile}")
#: uvicorn serves HTTP/2 from 0.54 on, with its compiled zttp core.
UVICORN_HTTP2_VERSION = (0, 54)


def resolved_loop(loop: str | None) -> str:
    """The event loop a run uses: "auto" (or none) is uvloop where it is installed, as osmium's
    own `auto` picks, so every server of the run can be given the same one."""
    if loop in (None, "auto"):
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return loop


def osmium(
    workers: int = 1, *extra: str, source: Path | None = None, loop: str | None = None
) -> ServerSpec:
    """osmium serving the demo app; from the checkout `source` instead of the installed one.

    `--loop` only when asked: osmium's default resolves like `resolved_loop`, and the
    checkouts the gate compares may predate the flag."""
    command = [sys.executable, "-m", "osmium", "serve", DEMO_APP, "--bind", "{host}:{port}"]
    command += ["--workers", str(workers), *(("--loop", loop) if loop else ()), *extra]
    # Benchmarks measure serving, not logging (uvicorn runs with --no-access-log too); set in
    # the environment, which osmium checkouts from before the setting existed ignore.
    env = {"OSMIUM_ACCESS_LOG": "false"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    # `python -m` puts the working directory first on sys.path: run in `source`, or this
    # checkout's osmium would shadow it.
    return ServerSpec(
        "osmium", tuple(command), CERT_ARGS, env, cwd=source, loop=resolved_loop(loop)
    )


def hypercorn(workers: int = 1, loop: str | None = None) -> ServerSpec:
    loop = resolved_loop(loop)
    command = [sys.executable, "-m", "hypercorn", "--bind", "{host}:{port}"]
    command += ["--config", str(HYPERCORN_CONFIG), "--workers", str(workers)]
    command += ["--worker-class", loop, DEMO_APP]
    return ServerSpec("hypercorn", tuple(command), CERT_ARGS, loop=loop)


def granian(workers: int = 1, loop: str | None = None) -> ServerSpec:
    """granian's `auto` serves HTTP/1.1 and h2c on one port (`--http 2` refuses HTTP/1.1)."""
    loop = resolved_loop(loop)
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "auto"]
    command += ["--host", "{host}", "--port", "{port}", "--workers", str(workers)]
    command += ["--loop", loop, DEMO_APP]
    tls = ("--ssl-certificate", "{certfile}", "--ssl-keyfile", "{keyfile}")
    return ServerSpec("granian", tuple(command), tls, websocket_h2=False, loop=loop)


def _uvicorn(name: str, http: tuple[str, ...], workers: int, loop: str | None) -> ServerSpec:
    loop = resolved_loop(loop)
    command = [sys.executable, "-m", "uvicorn", "--host", "{host}", "--port", "{port}"]
    command += [*http, "--workers", str(workers), "--loop", loop, "--no-access-log", DEMO_APP]
    tls = ("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}")
    http2 = "--http2" in http
    return ServerSpec(name, tuple(command), tls, http2=http2, websocket_h2=False, loop=loop)


def uvicorn(workers: int = 1, loop: str | None = None) -> ServerSpec:
    """uvicorn's compiled zttp core: HTTP/2 (h2c and ALPN) and HTTP/1.1 on one port; on this
    repository's `items-h1` it is at least as fast as httptools."""
    return _uvicorn("uvicorn", ("--http", "zttp", "--http2"), workers, loop)


def uvicorn_httptools(workers: int = 1, loop: str | None = None) -> ServerSpec:
    """uvicorn as most deploy it: HTTP/1.1 only, on httptools."""
    return _uvicorn("uvicorn-httptools", ("--http", "httptools"), workers, loop)


def h2corn(workers: int = 1, loop: str | None = None) -> ServerSpec:
    """h2corn runs its I/O on Tokio threads: one per worker, like granian's default, so a
    second core is not counted as a faster server."""
    loop = resolved_loop(loop)
    command = [sys.executable, "-m", "h2corn", "--bind", "{host}:{port}"]
    command += ["--workers", str(workers), "--runtime-threads", "1", "--loop", loop]
    command += ["--no-access-log", DEMO_APP]
    return ServerSpec("h2corn", tuple(command), CERT_ARGS, loop=loop)


def bare_h2(workers: int = 1, loop: str | None = None) -> ServerSpec:
    """The Python ceiling (loadtest/bare_h2.py): asyncio and h2 with no ASGI, HTTP/2 only."""
    loop = resolved_loop(loop)
    command = [sys.executable, "-m", "loadtest.bare_h2", "--host", "{host}", "--port", "{port}"]
    command += ["--workers", str(workers), "--loop", loop]
    return ServerSpec(
        "bare-h2", tuple(command), CERT_ARGS, http1=False, websocket_h2=False, loop=loop
    )


KNOWN_SERVERS = {
    "osmium": osmium,
    "hypercorn": hypercorn,
    "granian": granian,
    "uvicorn": uvicorn,
    "uvicorn-httptools": uvicorn_httptools,
    "h2corn": h2corn,
    "bare-h2": bare_h2,
}
#: What each peer imports, osmium's own dependencies aside (uvicorn's HTTP/2 is zttp's).
PEER_MODULES = {
    "hypercorn": ("hypercorn",),
    "granian": ("granian",),
    "uvicorn": ("uvicorn", "zttp"),
    "uvicorn-httptools": ("uvicorn", "httptools"),
    "h2corn": ("h2corn",),
}


def _version(package: str) -> tuple[int, ...]:
    """The installed version's leading numbers: "0.54.0" -> (0, 54, 0)."""
    numbers = []
    for part in importlib.metadata.version(package).split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def unavailable_reason(name: str) -> str | None:
    """Why the server cannot run here, in a few words with the fix; None when it can."""
    if name not in KNOWN_SERVERS:
        return f"unknown server {name!r}"
    for module in PEER_MODULES.get(name, ()):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed here (pip install {module})"
    if name == "uvicorn" and _version("uvicorn") < UVICORN_HTTP2_VERSION:
        return (
            f"uvicorn {importlib.metadata.version('uvicorn')} has no HTTP/2 "
            "(pip install 'uvicorn>=0.54' zttp)"
        )
    return None


def available(name: str) -> bool:
    """Whether the server can be started here (the peers are optional installs)."""
    return unavailable_reason(name) is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _connect(port: int, tls: bool, alpn: str, timeout: float) -> socket.socket:
    """A connection to the server, TLS offering `alpn` when `tls`."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if not tls:
        return raw
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    try:
        return context.wrap_socket(raw, server_hostname="localhost")  # takes over raw's fd
    except OSError:
        raw.close()
        raise


def _answer(port: int, tls: bool, alpn: str, request: bytes, size: int, timeout: float) -> bytes:
    """The first `size` bytes the server answers to `request` (fewer if it closes); b"" when
    nothing listens yet."""
    try:
        with _connect(port, tls, alpn, timeout) as sock:
            sock.sendall(request)
            answer = b""
            while len(answer) < size:
                chunk = sock.recv(size - len(answer))
                if not chunk:
                    break
                answer += chunk
            return answer
    except OSError:
        return b""


def speaks_http2(port: int, tls: bool, timeout: float = 1.0) -> bool:
    """Send the client preface; a SETTINGS frame back means the server is serving HTTP/2."""
    header = _answer(port, tls, "h2", PREFACE + EMPTY_SETTINGS, 9, timeout)
    return len(header) == 9 and header[3] == SETTINGS_TYPE


def speaks_http1(port: int, tls: bool, timeout: float = 1.0) -> bool:
    """An HTTP/1.1 status line back means the server is serving HTTP/1.1."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return _answer(port, tls, "http/1.1", request, 8, timeout) == b"HTTP/1.1"


class LaunchedServer:
    """A running server process; use as a context manager so it is always stopped."""

    def __init__(
        self,
        spec: ServerSpec,
        log_path: Path,
        tls: TLSFiles | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.spec = spec
        self.log_path = log_path
        self.tls = tls
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> LaunchedServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv = self.spec.argv(self.port, self.tls)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                self.process = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **self.spec.env},
                    cwd=self.spec.cwd,
                )
            except OSError as error:  # no such command, not executable, no such cwd
                raise LaunchError(f"{self.spec.name} cannot start {argv[0]}: {error}") from None
        deadline = time.monotonic() + self.startup_timeout
        serving = speaks_http2 if self.spec.http2 else speaks_http1
        while not serving(self.port, self.tls is not None):
            if self.process.poll() is not None:
                raise LaunchError(f"{self.spec.name} exited at start-up: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"{self.spec.name} not serving in time: {self.log_tail()}")
            time.sleep(0.05)  # polling the port with a deadline: the process has no other signal

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `stop_timeout`; its exit code."""
        process = self.process
        if process is None or self.exit_code is not None:
            return self.exit_code
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.exit_code = process.returncode
        return self.exit_code

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"
