"""Start any HTTP/2 server command as a separate process on a free loopback port, and stop it.

A server counts as up once it answers an HTTP/2 connection preface with SETTINGS; stopping is
SIGTERM, then SIGKILL after a timeout. Its output goes to a log file kept with the results.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
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


def _loop(flag: str, loop: str | None) -> list[str]:
    """The flag choosing a server's event loop ("asyncio" or "uvloop"); none: its default."""
    return [flag, loop] if loop else []


def osmium(
    workers: int = 1, *extra: str, source: Path | None = None, loop: str | None = None
) -> ServerSpec:
    """osmium serving the demo app; from the checkout `source` instead of the installed one."""
    command = [sys.executable, "-m", "osmium", "serve", DEMO_APP, "--bind", "{host}:{port}"]
    command += ["--workers", str(workers), *_loop("--loop", loop), *extra]
    # Benchmarks measure serving, not logging (uvicorn runs with --no-access-log too); set in
    # the environment, which osmium checkouts from before the setting existed ignore.
    env = {"OSMIUM_ACCESS_LOG": "false"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    # `python -m` puts the working directory first on sys.path: run in `source`, or this
    # checkout's osmium would shadow it.
    return ServerSpec("osmium", tuple(command), CERT_ARGS, env, cwd=source)


def hypercorn(workers: int = 1, loop: str | None = None) -> ServerSpec:
    command = [sys.executable, "-m", "hypercorn", "--bind", "{host}:{port}"]
    command += ["--config", str(HYPERCORN_CONFIG), "--workers", str(workers)]
    command += [*_loop("--worker-class", loop), DEMO_APP]
    return ServerSpec("hypercorn", tuple(command), CERT_ARGS)


def granian(workers: int = 1, loop: str | None = None) -> ServerSpec:
    command = ["granian", "--interface", "asgi", "--http", "2", "--host", "{host}"]
    command += ["--port", "{port}", "--workers", str(workers), *_loop("--loop", loop), DEMO_APP]
    tls = ("--ssl-certificate", "{certfile}", "--ssl-keyfile", "{keyfile}")
    return ServerSpec("granian", tuple(command), tls)


def uvicorn(workers: int = 1, loop: str | None = None) -> ServerSpec:
    command = [sys.executable, "-m", "uvicorn", "--host", "{host}", "--port", "{port}"]
    command += ["--workers", str(workers), *_loop("--loop", loop), "--no-access-log", DEMO_APP]
    tls = ("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}")
    return ServerSpec("uvicorn", tuple(command), tls, http2=False)


KNOWN_SERVERS = {"osmium": osmium, "hypercorn": hypercorn, "granian": granian, "uvicorn": uvicorn}


def available(name: str) -> bool:
    """Whether the server can be started here (granian is an optional install)."""
    if name == "granian":
        return shutil.which("granian") is not None
    if name in ("hypercorn", "uvicorn"):
        return importlib.util.find_spec(name) is not None
    return name in KNOWN_SERVERS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answer(port: int, tls: bool, alpn: str, request: bytes, size: int, timeout: float) -> bytes:
    """The first `size` bytes the server answers to `request` (fewer if it closes); b"" when
    nothing listens yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            sock: socket.socket = raw
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols([alpn])
                sock = context.wrap_socket(raw, server_hostname="localhost")
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
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.spec.env},
                cwd=self.spec.cwd,
            )
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
