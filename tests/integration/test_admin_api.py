"""The admin API against reality: what it lists is what clients hold open, and what it does
reaches exactly the client it names (README: Admin plane)."""

from __future__ import annotations

import os
import re
import ssl
import stat
import subprocess
import threading

import httpx
import pytest
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame
from prometheus_client.parser import text_string_to_metric_families

from osmium.protocol.events import ErrorCode
from tests.conformance.frames import RawClient
from tests.conftest import TLSFiles
from tests.integration.support import h2load, run_osmium, wait_until
from tests.server_process import running_server
from tests.support.admin import TOKEN, AdminServer, admin_server

pytestmark = pytest.mark.timeout(90)

SLOW_PATH = "/slow?ms=60000&secret=query"


def open_slow_streams(port: int, connections: int, streams: int) -> list[RawClient]:
    clients = []
    for _ in range(connections):
        client = RawClient("127.0.0.1", port)
        client.handshake()
        for _ in range(streams):
            client.request(SLOW_PATH)
        clients.append(client)
    return clients


def load_in_background(admin: AdminServer, *args: str) -> tuple[threading.Thread, list]:
    """h2load with `args` against the server, in a thread; its result lands in the list."""
    results: list = []
    load = threading.Thread(target=lambda: results.append(h2load(*args, admin.server.url + "/")))
    load.start()
    return load, results


def test_the_api_lists_connections_and_their_streams_as_they_are() -> None:
    with admin_server() as admin:
        clients = open_slow_streams(admin.server.port, connections=5, streams=3)
        try:
            wait_until(
                lambda: sum(c["streams_open"] for c in admin.connections()) == 15,
                10,
                "15 streams open in the API",
            )
            listed = admin.connections()
            assert len(listed) == 5
            peers = {f"127.0.0.1:{client.sock.getsockname()[1]}" for client in clients}
            assert {c["peer"] for c in listed} == peers
            for connection in listed:
                assert connection["protocol"] == "h2c"
                assert connection["streams_open"] == 3
                assert connection["windows"]["receive"] > 0
                assert connection["windows"]["send"] == 65_535
                detail = admin.get(f"/api/connections/{connection['id']}")
                streams = detail["streams"]
                assert [s["id"] for s in streams] == [1, 3, 5]
                for stream in streams:
                    # The path without its query string: queries are never shown.
                    assert stream["path"] == "/slow"
                    assert stream["method"] == "GET"
                    assert stream["waiting"] == "app"
                    assert stream["send_window"] == 65_535
                    assert stream["urgency"] == 3
            text = admin.api.get("/api/connections").text
            assert "secret" not in text
            by_peer = admin.connections(peer=f":{clients[0].sock.getsockname()[1]}")
            assert len(by_peer) == 1
            assert admin.connections(protocol="http/1.1") == []
            assert len(admin.connections(**{"idle-for": 0})) == 5
            assert admin.connections(**{"older-than": 3600}) == []
        finally:
            for client in clients:
                client.close()


def test_closing_a_connection_through_the_api_sends_goaway_to_that_client_only() -> None:
    with admin_server() as admin:
        clients = open_slow_streams(admin.server.port, connections=3, streams=1)
        try:
            wait_until(lambda: len(admin.connections()) == 3, 10, "three connections")
            target_port = clients[0].sock.getsockname()[1]
            (target,) = admin.connections(peer=f":{target_port}")
            response = admin.post(f"/api/connections/{target['id']}/close", mode="graceful")
            assert response.status_code == 200, response.text
            goaway = clients[0].wait_for(lambda f: isinstance(f, GoAwayFrame), "GOAWAY")
            assert goaway.error_code == ErrorCode.NO_ERROR
            for other in clients[1:]:
                other.send_ping(b"otherok!")
                other.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, "PING ACK")
                assert not any(isinstance(f, GoAwayFrame) for f in other.received)
            now = admin.post(f"/api/connections/{admin.connections()[0]['id']}/close", mode="now")
            assert now.status_code == 200
            wait_until(lambda: len(admin.connections()) <= 2, 10, "the closed connection gone")
            missing = admin.post("/api/connections/0-1-999999/close")
            assert missing.status_code == 404
            closed = [
                e for e in admin.get("/api/events")["events"] if e["kind"] == "connection-closed"
            ]
            assert closed[0]["connection"] == target["id"]
            assert len(closed) == 2 and all(e["by"] == "operator" for e in closed)
        finally:
            for client in clients:
                client.close()


def test_a_stream_reset_through_the_api_reaches_that_client_as_rst_stream() -> None:
    with admin_server() as admin:
        (client,) = open_slow_streams(admin.server.port, connections=1, streams=2)
        try:
            wait_until(
                lambda: sum(c["streams_open"] for c in admin.connections()) == 2, 10, "2 streams"
            )
            (connection,) = admin.connections()
            response = admin.post(f"/api/connections/{connection['id']}/streams/3/reset")
            assert response.status_code == 200, response.text
            reset = client.wait_for(lambda f: isinstance(f, RstStreamFrame), "RST_STREAM")
            assert (reset.stream_id, reset.error_code) == (3, ErrorCode.CANCEL)
            # The handler runs on (ASGI: it learns of the reset when it next receives or sends).
            detail = admin.get(f"/api/connections/{connection['id']}")
            states = {s["id"]: s["state"] for s in detail["streams"]}
            assert states == {1: "half-closed", 3: "closed"}
            gone = admin.post(f"/api/connections/{connection['id']}/streams/7/reset")
            assert gone.status_code == 404
            pings: list[httpx.Response] = []
            pinger = threading.Thread(
                target=lambda: pings.append(admin.post(f"/api/connections/{connection['id']}/ping"))
            )
            pinger.start()
            # The client answers the server's PING (wait_for ACKs PINGs as it reads them).
            client.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" not in f.flags, "PING")
            pinger.join(10)
            assert pings[0].status_code == 200 and pings[0].json()["rtt_ms"] > 0
        finally:
            client.close()


def test_draining_a_worker_under_load_fails_no_request() -> None:
    with admin_server("--workers", "2") as admin:
        wait_until(lambda: len(admin.state()["workers"]) == 2, 10, "two workers")
        before = set(admin.worker_pids())
        load, results = load_in_background(admin, "-n", "20000", "-c", "8", "-m", "10")
        try:
            wait_until(lambda: admin.state()["totals"]["rps"] > 0, 20, "load arriving")
            victim = sorted(before)[0]
            assert admin.post(f"/api/workers/{victim}/drain").status_code == 200
            wait_until(
                lambda: victim not in admin.worker_pids() and len(admin.worker_pids()) == 2,
                30,
                "the drained worker replaced",
            )
        finally:
            load.join(60)
        (result,) = results
        assert result.succeeded == 20000 and result.failed == 0 and result.errored == 0
        state = admin.state()
        assert state["server"]["respawns"]["drain"] == 1
        kinds = [event["kind"] for event in admin.get("/api/events")["events"]]
        assert "worker-drained" in kinds and "worker-exited" in kinds


def test_commands_are_answered_within_100_ms_under_load() -> None:
    with admin_server("--workers", "2") as admin:
        wait_until(lambda: len(admin.state()["workers"]) == 2, 10, "two workers")
        load, _results = load_in_background(admin, "-n", "30000", "-c", "10", "-m", "10")
        try:
            wait_until(lambda: admin.state()["totals"]["rps"] > 0, 20, "load arriving")
            timings = []
            for _ in range(5):
                answer = admin.get("/api/connections")
                assert answer["unanswered"] == []
                timings.extend(answer["answer_ms"].values())
        finally:
            load.join(60)
        assert len(timings) == 10
        assert sorted(timings)[len(timings) // 2] < 100, timings
        assert max(timings) < 1000, timings


def test_prometheus_metrics_parse_and_count_what_h2load_sent() -> None:
    with admin_server("--workers", "2") as admin:
        result = h2load("-n", "3000", "-c", "4", "-m", "10", admin.server.url + "/")
        assert result.succeeded == 3000

        def requests_counted() -> float:
            text = admin.api.get("/metrics").text
            families = {f.name: f for f in text_string_to_metric_families(text)}
            return sum(s.value for s in families["osmium_requests"].samples)

        wait_until(lambda: requests_counted() == 3000, 10, "the workers' counters reported")
        response = admin.api.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        assert families["osmium_request_duration_seconds"].type == "histogram"
        count = sum(
            s.value
            for s in families["osmium_request_duration_seconds"].samples
            if s.name.endswith("_count")
        )
        assert count == 3000
        responses = families["osmium_responses"].samples
        assert sum(s.value for s in responses if s.labels["class"] == "2xx") == 3000
        workers = {s.labels["worker"] for s in families["osmium_requests"].samples}
        assert len(workers) == 2
        # What the workers count as sent is what h2load counts as received ("traffic: ... (N)"),
        # but for the closing frames (GOAWAY, PING) sent as h2load leaves: under 64 bytes each.
        received = int(re.search(r"traffic: .*?\((\d+)\) total", result.output)[1])
        sent = sum(s.value for s in families["osmium_bytes_sent"].samples)
        assert 0 <= sent - received < 4 * 64, (sent, received)


def test_a_wrong_or_missing_token_gets_401_and_nothing_else() -> None:
    with admin_server() as admin:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            for path in ("/api/state", "/api/connections", "/metrics"):
                response = httpx.get(admin.admin_url + path, headers=headers)
                assert response.status_code == 401
                assert response.json() == {"error": "unauthorized"}
            post = httpx.post(admin.admin_url + "/api/reload", headers=headers)
            assert post.status_code == 401
        assert admin.api.get("/api/state").status_code == 200
        # The dashboard's files hold no data: no token needed to load the page.
        page = httpx.get(admin.admin_url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert admin.api.get("/api/reload").status_code == 405


def test_a_generated_token_is_printed_and_required() -> None:
    with admin_server(token=None) as admin:
        token = admin.api.headers["authorization"].removeprefix("Bearer ")
        assert len(token) >= 24
        assert admin.api.get("/api/state").status_code == 200
        assert httpx.get(admin.admin_url + "/api/state").status_code == 401


def test_a_non_loopback_admin_bind_without_a_token_is_refused() -> None:
    result = run_osmium("serve", "--bind", "127.0.0.1:0", "--admin-bind", "0.0.0.0:0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--admin-token" in lines[0], result.stderr


def test_the_admin_port_in_use_is_a_one_line_error(unused_tcp_listener: int) -> None:
    result = run_osmium(
        "serve", "--bind", "127.0.0.1:0", "--admin-bind", f"127.0.0.1:{unused_tcp_listener}"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"osmium: error: cannot listen on 127.0.0.1:{unused_tcp_listener}: address already in use"
    )


@pytest.fixture
def unused_tcp_listener() -> int:
    import socket

    sock = socket.create_server(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_a_unix_socket_admin_is_owner_only_and_needs_no_token(tmp_path) -> None:
    path = tmp_path / "admin.sock"
    path.touch()  # a stale file that is not a socket is not removed: one-line error
    refused = run_osmium("serve", "--bind", "127.0.0.1:0", "--admin-bind", f"unix:{path}")
    assert refused.returncode == 2 and "not a socket" in refused.stderr
    path.unlink()
    with running_server("--admin-bind", f"unix:{path}") as server:
        server.wait_for_line(r"admin: unix:")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        curl = subprocess.run(
            ["curl", "-sf", "--unix-socket", str(path), "http://admin/api/state"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert curl.returncode == 0, curl.stderr
        assert '"workers"' in curl.stdout
    assert not path.exists()


def test_a_connection_closed_by_the_idle_ping_policy_is_in_the_event_log() -> None:
    with admin_server("--idle-ping", "0.3", "--ping-timeout", "0.3") as admin:
        client = RawClient("127.0.0.1", admin.server.port)
        client.handshake()  # then silent: the PING goes unanswered
        try:

            def closed_by_policy() -> list[dict]:
                events = admin.get("/api/events")["events"]
                return [e for e in events if e["kind"] == "connection-closed"]

            wait_until(lambda: closed_by_policy(), 10, "the idle-ping close in the event log")
            (event,) = closed_by_policy()
            assert event["by"] == "idle-ping"
            assert event["peer"] == "127.0.0.1"
            wait_until(
                lambda: admin.state()["workers"][0]["defences"]["timeouts"] == 1, 5, "counted"
            )
        finally:
            client.close()


@pytest.mark.parametrize("backend", ["stdlib", "pyopenssl"])
def test_a_tls_connection_shows_its_version_cipher_alpn_and_sni(
    tls_files: TLSFiles, backend: str
) -> None:
    tls_args = ("--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile))
    with admin_server(*tls_args, "--tls-backend", backend) as admin:
        context = ssl.create_default_context(cafile=str(tls_files.ca))
        context.set_alpn_protocols(["h2"])
        with RawClient("localhost", admin.server.port, tls=context) as client:
            client.handshake()
            client.request(SLOW_PATH)
            wait_until(lambda: admin.connections(), 10, "the TLS connection listed")
            (connection,) = admin.connections()
            version, (cipher, _, _) = client.sock.version(), client.sock.cipher()
        assert connection["protocol"] == "h2"
        assert connection["tls"] == {
            "version": version,
            "cipher": cipher,
            "alpn": "h2",
            "sni": "localhost",
        }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--admin-history", "0"), "admin_history must be between 1 and 86400 seconds"),
        (("--admin-bind", "nonsense"), "--admin-bind: invalid bind address 'nonsense'"),
        (("--admin-bind", "unix:"), "--admin-bind unix: needs a path"),
        (("--admin-bind", "unix:/nonexistent/dir/a.sock"), "No such file or directory"),
    ],
)
def test_bad_admin_settings_are_one_line_errors(args: tuple[str, ...], message: str) -> None:
    result = run_osmium("serve", "--bind", "127.0.0.1:0", *args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("osmium: error: ") and message in line, line
