"""The worker pool: one SO_REUSEPORT socket per worker, supervision, signals, recycling.

Every server here is a real `python -m osmium serve` process tree, the acceptor and its forked
workers. workers_app answers /pid with the serving worker's pid, so a connection can be pinned to
a known worker and traffic can be counted per worker.

What counts as a failed request: the server accepted it and did not answer 200 (a connection
refused or reset, a stream at or below a GOAWAY's last_stream_id left unanswered, another status).
A stream above the last_stream_id of a GOAWAY, or reset with REFUSED_STREAM, was never processed:
RFC 9113 §8.7 lets a client retry it on a new connection, and the load clients here do.
h2load never reconnects an HTTP/2 connection (after a GOAWAY or a reset it counts what it could
not send as failed), so where a worker is killed under h2load its failures are only bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from tests.integration.h2client import H2Client
from tests.integration.support import (
    H2LoadResult,
    assert_all_succeeded,
    h2load,
    parse_h2load,
    run_osmium,
    wait_until,
)
from tests.server_process import (
    LISTENING,
    ServerProcess,
    osmium_command,
    pump_output,
    running_server,
)

APP = "tests.integration.apps.workers_app:app"
CRASH_APP = "tests.integration.apps.workers_crash_app:app"
REQUEST_TIMEOUT = 10.0
#: Streams each load client keeps in flight on its connection.
LOAD_STREAMS = 4
MAX_STREAM_ID = 2**31 - 1


# -- processes and sockets -------------------------------------------------------------------------


def listening_sockets(port: int) -> set[int]:
    """Inodes of the TCP sockets in LISTEN state on `port` (any address), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == "0A" and local_port == port:  # 0A: TCP_LISTEN
                    inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """Inodes of every socket that process `pid` holds a descriptor for."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listening_ports(pid: int) -> set[int]:
    """Ports that process `pid` has a listening TCP socket on."""
    held = socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A" and int(fields[9]) in held:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextmanager
def unready_server(*args: str, app: str, env: dict[str, str]) -> Iterator[ServerProcess]:
    """`running_server`, but yielded at once: its workers may never get ready. Host/port unset."""
    command = osmium_command("serve", app, "--bind", "127.0.0.1:0", *args)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    server = ServerProcess(process)
    threading.Thread(target=pump_output, args=(server,), daemon=True).start()
    try:
        yield server
    finally:
        server.stop()


def start_h2load(server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["h2load", *args, f"{server.url}/pid"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_h2load(process: subprocess.Popen[str]) -> H2LoadResult:
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, f"h2load exited {process.returncode}:\n{output}"
    return parse_h2load(output)


def assert_only_lost_connections_failed(
    result: H2LoadResult, connections: int, streams: int
) -> None:
    """h2load's failures, when some of its connections were lost under it, are bounded.

    A lost connection costs at most the streams it had in flight plus the one request h2load
    then gives up on; nothing else may fail, time out or get a status other than 2xx.
    """
    detail = result.output
    assert result.succeeded > 0, detail
    assert result.timeout == 0, detail
    assert (result.status_3xx, result.status_4xx, result.status_5xx) == (0, 0, 0), detail
    assert result.status_2xx == result.succeeded, detail
    assert result.failed <= connections * (streams + 1), detail


# -- requests --------------------------------------------------------------------------------------

OK, REFUSED, FAILED = "ok", "refused", "failed"


def outcome(client: H2Client, stream_id: int, timeout: float = REQUEST_TIMEOUT) -> tuple[str, str]:
    """(OK, pid) once answered 200; (REFUSED, why) if never processed; (FAILED, what happened)."""
    stream = client.streams[stream_id]

    def never_processed() -> bool:
        if stream.headers is not None:
            return False
        return stream.reset_code == ErrorCodes.REFUSED_STREAM or any(
            goaway.last_stream_id < stream_id for goaway in client.goaways
        )

    error = ""
    try:
        client.wait_for(lambda: stream.done or never_processed(), timeout, f"stream {stream_id}")
    except (ConnectionError, TimeoutError) as problem:
        error = f"{type(problem).__name__}: {problem}"
    if stream.ended and stream.status == 200:
        return OK, bytes(stream.data).decode()
    if never_processed():
        return REFUSED, f"stream {stream_id} refused (goaways {client.goaways})"
    return FAILED, (
        f"stream {stream_id}: status {stream.status}, reset {stream.reset_code}, "
        f"goaways {client.goaways}, eof {client.eof} {error}"
    )


def final_goaway(client: H2Client) -> int | None:
    """last_stream_id of the GOAWAY that names the last stream served, once one came."""
    named = [g.last_stream_id for g in client.goaways if g.last_stream_id < MAX_STREAM_ID]
    return min(named, default=None)


def fresh_request(server: ServerProcess, path: str = "/pid") -> tuple[str, str]:
    """One request on a new connection: outcome() or (FAILED, why the connection failed)."""
    try:
        with H2Client(server.host, server.port) as client:
            return outcome(client, client.request("GET", path))
    except OSError as error:
        return FAILED, f"connection: {error!r}"


def fresh_pid(server: ServerProcess) -> int:
    """The pid of the worker that answers GET /pid on a new connection."""
    kind, detail = fresh_request(server)
    assert kind == OK, f"{detail}\nserver output:\n{server.output}"
    return int(detail)


def pinned_clients(
    server: ServerProcess, workers: set[int], per_worker: int = 1
) -> dict[int, list[H2Client]]:
    """Open connections until each worker has `per_worker` of them (per /pid); close the rest."""
    pinned: dict[int, list[H2Client]] = {pid: [] for pid in workers}
    for _ in range(200):
        if all(len(clients) >= per_worker for clients in pinned.values()):
            return pinned
        client = H2Client(server.host, server.port)
        response = client.get("/pid", REQUEST_TIMEOUT)
        pid = int(bytes(response.data))
        assert pid in pinned, f"answered by {pid}, not one of the workers {workers}"
        if len(pinned[pid]) < per_worker:
            pinned[pid].append(client)
        else:
            client.close()
    for clients in pinned.values():
        for client in clients:
            client.close()
    pytest.fail(f"200 connections did not reach every worker: {workers}")


@dataclass
class Tally:
    ok: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    #: (time.monotonic() when answered, pid) for every 200.
    answers: list[tuple[float, int]] = field(default_factory=list)
    connections: int = 0
    #: A pinned connection ended under the client without GOAWAY (its worker died).
    lost: bool = False

    def pids_since(self, moment: float) -> Counter[int]:
        return Counter(pid for at, pid in self.answers if at >= moment)


class LoadClient(threading.Thread):
    """Keeps LOAD_STREAMS requests for /pid in flight, batch after batch, until stopped.

    Given a connection, it stays on it and ends with it (pinned to that connection's worker).
    Otherwise each batch goes on a connection of its own, closed after it: the connections
    keep arriving through a reload, and none of them keeps an old worker busy.
    """

    def __init__(self, server: ServerProcess, client: H2Client | None = None) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.client = client
        self.pinned = client is not None
        self.tally = Tally(connections=int(self.pinned))
        self.stopping = threading.Event()

    def stop(self) -> Tally:
        self.stopping.set()
        self.join(REQUEST_TIMEOUT + 5)
        assert not self.is_alive(), "load client stuck"
        return self.tally

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # reported by the test, not lost in a thread
            self.tally.failures.append(f"load client crashed: {type(error).__name__}: {error}")
        finally:
            if self.client is not None:
                self.client.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self.client is None:
                try:
                    self.client = H2Client(self.server.host, self.server.port)
                except OSError as error:
                    self.tally.failures.append(f"connection: {error!r}")
                    return
                self.tally.connections += 1
            client = self.client
            stream_ids = [client.request("GET", "/pid") for _ in range(LOAD_STREAMS)]
            for stream_id in stream_ids:
                kind, detail = outcome(client, stream_id)
                if kind == OK:
                    self.tally.ok += 1
                    self.tally.answers.append((time.monotonic(), int(detail)))
                elif kind == REFUSED:
                    self.tally.refused += 1  # never processed: the next batch asks again
                else:
                    self.tally.failures.append(detail)
            if self.pinned and (client.goaways or client.eof):
                # Between two batches the end shows as EOF alone, with no request failed.
                self.tally.lost = not client.goaways
                return
            if not self.pinned:
                client.close()
                self.client = None


@contextmanager
def load_clients(clients: list[LoadClient]) -> Iterator[list[LoadClient]]:
    for client in clients:
        client.start()
    try:
        yield clients
    finally:
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.join(REQUEST_TIMEOUT + 5)


# -- the tests -------------------------------------------------------------------------------------


def test_one_listening_socket_per_worker() -> None:
    with running_server("--workers", "3", app=APP) as server:
        workers = server.worker_pids()
        assert len(workers) == 3, workers
        sockets = listening_sockets(server.port)
        assert len(sockets) == 3, f"LISTEN sockets on port {server.port}: {sockets}"
        held = {pid: socket_inodes(pid) & sockets for pid in workers}
        assert all(len(inodes) == 1 for inodes in held.values()), held
        assert set.union(*held.values()) == sockets, f"each worker a socket of its own: {held}"
        # The acceptor keeps its copy of every one of them.
        assert socket_inodes(server.process.pid) & sockets == sockets
        assert server.stop() == 0, server.output


def test_new_connections_are_spread_over_the_workers() -> None:
    with running_server("--workers", "2", app=APP) as server:
        workers = set(server.worker_pids())
        served = Counter(fresh_pid(server) for _ in range(100))
        assert set(served) == workers, served
        assert min(served.values()) >= 30, f"100 connections over 2 workers: {served}"


def test_sigkill_worker_under_load() -> None:
    """The killed worker is replaced at once; the other worker's connections see nothing."""
    with running_server("--workers", "2", app=APP) as server:
        before = set(server.worker_pids())
        pinned = pinned_clients(server, before)
        victim, survivor = sorted(before)
        loads = {pid: LoadClient(server, clients[0]) for pid, clients in pinned.items()}
        h2load_process = start_h2load(server, "-D", "3", "-c", "8", "-m", "4")
        try:
            with load_clients(list(loads.values())):
                wait_until(
                    lambda: all(load.tally.ok >= 20 for load in loads.values()),
                    10,
                    "requests on the pinned connections",
                )
                assert h2load_process.poll() is None, "h2load finished before the kill"
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
                # Fresh connections land on either slot; the victim's slot answers again once
                # its replacement runs (connections queued meanwhile wait in the kept socket).
                replacement = None
                while replacement is None:
                    assert time.monotonic() - killed_at < 10, server.output
                    pid = fresh_pid(server)
                    if pid not in before:
                        replacement = pid
                replaced_after = time.monotonic() - killed_at
                # Keep the load going on the surviving worker for a moment after the kill.
                wait_until(
                    lambda: loads[survivor].tally.pids_since(killed_at)[survivor] >= 20,
                    10,
                    "requests on the survivor's pinned connection after the kill",
                )
            result = finish_h2load(h2load_process)
        finally:
            if h2load_process.poll() is None:
                h2load_process.kill()
                h2load_process.wait()

        assert replaced_after < 1.0, f"replacement answered {replaced_after:.2f} s after the kill"
        assert server.process.poll() is None, "the acceptor died"
        died = rf"worker {victim} \(slot \d\) died \(signal 9\); restarting"
        assert re.search(died, server.output), server.output
        assert set(server.worker_pids()) == {survivor, replacement}

        survived = loads[survivor].tally
        assert survived.failures == [], survived.failures
        assert survived.refused == 0
        assert {pid for _, pid in survived.answers} == {survivor}
        lost = loads[victim].tally
        assert lost.failures or lost.lost, "the killed worker's connection did not notice"

        assert_only_lost_connections_failed(result, connections=8, streams=4)
        assert_all_succeeded(h2load("-n", "2000", "-c", "4", "-m", "4", f"{server.url}/pid"), 2000)
        assert server.stop() == 0, server.output


def test_sigterm_finishes_100_streams_in_flight_over_two_workers() -> None:
    with running_server("--workers", "2", "--graceful-timeout", "10", app=APP) as server:
        pinned = pinned_clients(server, set(server.worker_pids()), per_worker=2)
        clients = {client: pid for pid, group in pinned.items() for client in group}
        try:
            stream_ids = {
                client: [client.request("GET", "/slow?ms=2000") for _ in range(25)]
                for client in clients
            }
            for client in clients:
                client.ping()  # each worker has seen (and started) its 50 streams
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)
            server.wait_for_line(r"stopping", 5)
            for client in clients:
                # The GOAWAY naming the last stream served (after a GOAWAY(2^31-1), if two-step).
                client.wait_for(lambda c=client: final_goaway(c) is not None, 5, "final GOAWAY")
                assert {goaway.error_code for goaway in client.goaways} == {ErrorCodes.NO_ERROR}
                assert final_goaway(client) == max(stream_ids[client])
            # Both workers have closed their listeners (GOAWAY comes after), the acceptor too.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((server.host, server.port), timeout=5).close()

            answered = 0
            for client, pid in clients.items():
                for stream_id in stream_ids[client]:
                    response = client.response(stream_id, timeout=15)
                    assert response.status == 200, f"stream {stream_id}: {response}"
                    assert bytes(response.data) == str(pid).encode()
                    answered += 1
            assert answered == 100
            code = server.process.wait(15)
            stopped_after = time.monotonic() - signalled
        finally:
            for client in clients:
                client.close()
        assert code == 0, server.output
        assert stopped_after < 10, f"exit {stopped_after:.1f} s after SIGTERM"
        assert "Traceback" not in server.output


def test_sighup_replaces_every_worker_without_failed_requests() -> None:
    """A rolling reload under steady load: h2load's connections (which it never replaces) and
    connections arriving all along see no failure; then only new workers are left."""
    with running_server("--workers", "2", app=APP) as server:
        before = set(server.worker_pids())
        h2load_process = start_h2load(server, "-D", "3", "-c", "8", "-m", "4")
        try:
            with load_clients([LoadClient(server) for _ in range(2)]) as loads:
                wait_until(lambda: all(load.tally.ok >= 20 for load in loads), 10, "load under way")
                assert h2load_process.poll() is None, "h2load finished before the reload"
                server.signal(signal.SIGHUP)
                reloaded_at = time.monotonic()

                def new_workers_serving() -> bool:
                    return all(
                        sum(
                            n
                            for pid, n in load.tally.pids_since(reloaded_at).items()
                            if pid not in before
                        )
                        >= 20
                        for load in loads
                    )

                wait_until(new_workers_serving, 10, "new connections served by new workers")
                assert h2load_process.poll() is None, "h2load finished before the new workers ran"
                tallies = [load.stop() for load in loads]
            result = finish_h2load(h2load_process)
        finally:
            if h2load_process.poll() is None:
                h2load_process.kill()
                h2load_process.wait()

        def replaced() -> bool:
            pids = set(server.worker_pids())
            return len(pids) == 2 and not pids & before

        wait_until(replaced, 15, "every old worker gone")
        after = set(server.worker_pids())
        failures = [failure for tally in tallies for failure in tally.failures]
        assert failures == [], "\n".join(failures) + f"\nserver output:\n{server.output}"
        # With the two-step GOAWAY (RFC 9113 §6.8) every stream sent before the client saw the
        # first GOAWAY is served: none had to be retried.
        refused = sum(tally.refused for tally in tallies)
        assert refused == 0, f"{refused} stream(s) refused\nserver output:\n{server.output}"
        assert result.total > 0
        assert (result.failed, result.errored, result.timeout) == (0, 0, 0), result.output
        assert result.status_2xx == result.succeeded == result.total, result.output
        answered_by = {pid for tally in tallies for _, pid in tally.answers}
        assert after <= answered_by, "a new worker never answered"
        assert after.isdisjoint(before)
        assert not any(alive(pid) for pid in before)
        assert "reloading: replacing 2 worker(s) one by one" in server.output
        assert server.stop() == 0, server.output


FAILED_START = re.compile(
    r"^(?P<at>\S+ \S+) \[\d+\] ERROR osmium: worker (?P<pid>\d+) \(slot 0\) failed during "
    r"start-up \(exit status 1\), (?P<count>\d+) time\(s\) in a row; "
    r"restarting in (?P<delay>[\d.]+) s$",
    re.MULTILINE,
)


def test_worker_crashing_at_startup_is_restarted_with_backoff(tmp_path: Path) -> None:
    marker = tmp_path / "may-start"
    env = {"OSMIUM_TEST_MARKER": str(marker)}
    with unready_server("--workers", "1", app=CRASH_APP, env=env) as server:
        server.wait_for_line(r"3 time\(s\) in a row", 10)
        failures = list(FAILED_START.finditer(server.output))
        assert [int(f["count"]) for f in failures] == [1, 2, 3], server.output
        assert [float(f["delay"]) for f in failures] == [0.25, 0.5, 1.0], server.output
        assert len({f["pid"] for f in failures}) == 3, "each restart is a new process"
        times = [datetime.strptime(f["at"], "%Y-%m-%d %H:%M:%S,%f") for f in failures]
        gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
        # No busy loop: each restart waited its back-off (to log precision).
        assert gaps[0] >= 0.25 - 0.002 and gaps[1] >= 0.5 - 0.002, gaps
        assert server.process.poll() is None, "the acceptor gave up"
        assert "listening on" not in server.output

        # The acceptor holds the socket meanwhile: a client connecting now is queued, not refused.
        [port] = listening_ports(server.process.pid)
        server.host, server.port = "127.0.0.1", port
        early = H2Client(server.host, server.port)
        try:
            early_stream = early.request("GET", "/pid")
            marker.touch()
            match = server.wait_for_line(LISTENING.pattern, 10)
            assert int(match["port"]) == port
            kind, detail = outcome(early, early_stream)
            assert kind == OK, detail
        finally:
            early.close()
        [worker] = server.worker_pids()
        assert int(detail) == worker
        assert fresh_pid(server) == worker
        # Restarts were 0.25, 0.5 and 1 s apart: 3 or 4 crashes in all, not a storm.
        assert len(FAILED_START.findall(server.output)) <= 4, server.output
        assert server.stop() == 0, server.output


@pytest.mark.parametrize(
    ("app", "code", "message"),
    [
        ("tests.integration.apps.asgi_apps:failing_lifespan_app", 3, "application startup failed"),
        ("tests.integration.apps.broken_app:app", 2, "broken on purpose"),
    ],
    ids=["lifespan-startup-failed", "app-import-fails"],
)
def test_fatal_startup_error_stops_the_server(app: str, code: int, message: str) -> None:
    result = run_osmium("serve", app, "--bind", "127.0.0.1:0", "--workers", "2")
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("osmium: error:")]
    assert len(errors) == 1, output
    assert message in errors[0]
    assert "restarting" not in output
    assert "listening on" not in output
    assert "Traceback" not in output


def test_ttin_adds_a_worker_and_ttou_removes_it() -> None:
    with running_server("--workers", "2", app=APP) as server:
        before = set(server.worker_pids())
        server.signal(signal.SIGTTIN)
        wait_until(lambda: len(server.worker_pids()) == 3, 10, "a third worker")
        [added] = set(server.worker_pids()) - before
        server.wait_for_line(r"adding a worker: 3 slot\(s\)", 5)
        sockets = listening_sockets(server.port)
        assert len(sockets) == 3
        assert len(socket_inodes(added) & sockets) == 1
        wait_until(lambda: fresh_pid(server) == added, 10, "the added worker answering")

        server.signal(signal.SIGTTOU)
        server.wait_for_line(r"removing a worker: 2 slot\(s\)", 5)
        wait_until(lambda: set(server.worker_pids()) == before, 10, "the added worker gone")
        wait_until(lambda: len(listening_sockets(server.port)) == 2, 5, "its socket closed")
        served = Counter(fresh_pid(server) for _ in range(40))
        assert set(served) == before, served
        assert server.stop() == 0, server.output


def test_max_requests_recycles_the_worker() -> None:
    """Each worker serves 50 to 60 requests; 200 sequential requests need 4 workers.

    One client, one request at a time, each on a new connection: after its last request a worker
    stops accepting (a connection it accepted just then may still be served: +1).
    """
    with running_server(
        "--workers", "1", "--max-requests", "50", "--max-requests-jitter", "10", app=APP
    ) as server:
        served: list[int] = []
        refused = 0
        failures = []
        while len(served) < 200 and len(failures) < 5:
            kind, detail = fresh_request(server)
            if kind == OK:
                served.append(int(detail))
            elif kind == REFUSED:
                refused += 1  # the retiring worker's GOAWAY came first: ask again
            else:
                failures.append(detail)
        assert failures == [], f"{failures}\nserver output:\n{server.output}"
        runs = [pid for index, pid in enumerate(served) if index == 0 or served[index - 1] != pid]
        per_worker = Counter(served)
        assert len(runs) == len(per_worker), f"a worker came back: {runs}"
        recycled = re.findall(r"worker recycling after (\d+) requests", server.output)
        detail = f"requests per worker {per_worker}, logged {recycled}, {refused} refused"
        assert len(runs) >= 3, f"pid changed {len(runs) - 1} time(s) in 200 requests; {detail}"
        assert all(50 <= per_worker[pid] <= 61 for pid in runs[:-1]), detail
        assert per_worker[runs[-1]] <= 61, detail
        assert len(re.findall(r"retiring \(max-requests\)", server.output)) >= 2
        assert server.stop() == 0, server.output


def test_unresponsive_worker_is_killed_and_replaced() -> None:
    with running_server("--workers", "1", "--worker-timeout", "2", app=APP) as server:
        [worker] = server.worker_pids()
        with H2Client(server.host, server.port) as client:
            blocked = client.request("GET", "/block?s=8")
            sent_at = time.monotonic()
            match = server.wait_for_line(rf"worker {worker} silent for ([\d.]+) s; killing it", 8)
            killed_after = time.monotonic() - sent_at
            server.wait_for_line(rf"worker {worker} \(slot 0\) died \(signal 9\); restarting", 5)
            client.wait_for_eof(5)
            assert client.streams[blocked].status is None  # it died with the worker
        assert float(match[1]) >= 2.0
        assert killed_after < 5, f"killed {killed_after:.1f} s after its event loop blocked"
        replacement = fresh_pid(server)
        assert replacement != worker
        assert server.worker_pids() == [replacement]
        assert server.process.poll() is None
        assert server.stop() == 0, server.output


def test_draining_worker_is_not_killed_as_unresponsive() -> None:
    """A worker replaced by SIGHUP drains: its stream in flight must finish, although that
    takes longer than --worker-timeout (but less than --graceful-timeout); then it exits."""
    with running_server("--workers", "1", "--worker-timeout", "2", app=APP) as server:
        [old] = server.worker_pids()
        with H2Client(server.host, server.port) as client:
            in_flight = client.request("GET", "/slow?ms=5000")
            client.ping()
            server.signal(signal.SIGHUP)
            kind, detail = outcome(client, in_flight, timeout=15)
        assert kind == OK, f"{detail}\nserver output:\n{server.output}"
        assert int(detail) == old
        wait_until(lambda: not alive(old), 10, "the old worker gone once drained")
        assert "silent for" not in server.output
        assert server.stop() == 0, server.output


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_stop_when_the_acceptor_is_killed() -> None:
    with running_server("--workers", "2", app=APP) as server:
        workers = server.worker_pids()
        assert len(workers) == 2
        server.process.kill()
        server.process.wait()
        try:
            # Heartbeats notice the lost parent within a second; the drain then takes a moment.
            wait_until(lambda: not any(_alive(pid) for pid in workers), 10, "orphans to exit")
        finally:
            for pid in workers:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
