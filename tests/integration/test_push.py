"""Server push (ASGI http.response.push) and 103 Early Hints, against the demo's `/push`.

The page hints at two resources and pushes both; the promised requests run through the app like
any other. nghttp and a raw h2 client see the PUSH_PROMISEs (or none, when they disable push);
curl shows the 103 over HTTP/2 and HTTP/1.1.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import h2.events
import pytest
from h2.settings import SettingCodes

from osmium.demo import PUSH_LINKS, PUSH_PAGE, PUSHED
from tests.integration.h2client import H2Client, StreamState
from tests.integration.support import run_osmium, run_tool
from tests.server_process import ServerProcess, running_server

ASGI_APPS = "tests.integration.apps.asgi_apps:app"
#: A row of `nghttp -s` statistics for a pushed stream: its requestStart is marked `*`.
PUSHED_ROW = re.compile(
    r"^\s*(?P<id>\d+)\s+\S+\s+\*\s+\S+\s+\S+\s+(?P<code>\d{3})\s+(?P<size>\d+)\s+(?P<path>\S+)\s*$",
    re.MULTILINE,
)


class PushClient(H2Client):
    """The raw h2 client, also keeping what the server pushes: promises and their streams."""

    def __init__(self, server: ServerProcess, settings: dict[int, int]) -> None:
        self.promises: list[h2.events.PushedStreamReceived] = []
        self.informational: list[h2.events.InformationalResponseReceived] = []
        super().__init__(server.host, server.port, settings=settings)

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.PushedStreamReceived):
            self.promises.append(event)
            self.streams[event.pushed_stream_id] = StreamState(event.pushed_stream_id)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self.informational.append(event)
        super()._handle(event)

    def page_and_pushes(self, path: str = "/push") -> tuple[StreamState, dict[str, StreamState]]:
        """GET `path`; once the page and every pushed response are complete: the page, and the
        pushed responses by promised path."""
        page = self.get(path)
        self.wait_for(
            lambda: all(self.streams[p.pushed_stream_id].done for p in self.promises),
            timeout=10,
            what="the pushed responses",
        )
        pushed = {
            dict(p.headers)[b":path"].decode(): self.streams[p.pushed_stream_id]
            for p in self.promises
        }
        return page, pushed


@pytest.fixture(scope="module")
def capped_server() -> Iterator[ServerProcess]:
    """One push a request, and one app handler at a time: pushed requests wait their turn."""
    with running_server("--max-pushes-per-request", "1", "--max-active-handlers", "1") as process:
        yield process


@pytest.fixture(autouse=True)
def _no_traceback(server: ServerProcess) -> Iterator[None]:
    seen = len(server.lines)
    yield
    assert "Traceback" not in "".join(server.lines[seen:]), server.output


# -- nghttp ----------------------------------------------------------------------------------------


def test_nghttp_receives_the_promised_streams(server: ServerProcess) -> None:
    result = run_tool("nghttp", "-n", "-s", f"{server.url}/push")
    assert result.returncode == 0, result.stdout + result.stderr
    pushed = {(m["path"], m["code"], int(m["size"])) for m in PUSHED_ROW.finditer(result.stdout)}
    assert pushed == {(path, "200", len(body)) for path, (_, body) in PUSHED.items()}, result.stdout

    verbose = run_tool("nghttp", "-n", "-v", f"{server.url}/push").stdout
    promised = re.findall(r"recv PUSH_PROMISE frame <[^>]*>\s+; END_HEADERS\s+\(padlen=0, "
                          r"promised_stream_id=(\d+)\)", verbose)  # fmt: skip
    assert promised == ["2", "4"], verbose


def test_nghttp_without_push_gets_no_push_promise(server: ServerProcess) -> None:
    result = run_tool("nghttp", "-n", "-v", "--no-push", f"{server.url}/push")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SETTINGS_ENABLE_PUSH(0x02):0" in result.stdout  # what nghttp told the server
    assert "PUSH_PROMISE" not in result.stdout
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", result.stdout), result.stdout


# -- a raw h2 client -------------------------------------------------------------------------------


def test_pushed_responses_come_from_the_app(server: ServerProcess) -> None:
    with PushClient(server, {SettingCodes.ENABLE_PUSH: 1}) as client:
        page, pushed = client.page_and_pushes()
    assert (page.status, bytes(page.data)) == (200, PUSH_PAGE)
    assert [p.parent_stream_id for p in client.promises] == [page.stream_id] * 2
    assert set(pushed) == set(PUSHED)
    for path, (content_type, body) in PUSHED.items():
        assert (pushed[path].status, bytes(pushed[path].data)) == (200, body)
        assert pushed[path].header(b"content-type") == content_type
    promise = dict(client.promises[0].headers)
    assert promise[b":method"] == b"GET"
    assert promise[b":authority"] == client.authority.encode()


def test_a_promised_request_is_complete_for_a_handler_that_reads_its_body() -> None:
    """§8.4: a promised request has no content; its handler reads the empty body at once."""
    with (
        running_server(app=ASGI_APPS) as server,
        PushClient(server, {SettingCodes.ENABLE_PUSH: 1}) as client,
    ):
        page, pushed = client.page_and_pushes("/push-sha256")
    assert page.status == 200
    assert json.loads(pushed["/sha256"].data) == {
        "length": 0,
        "sha256": hashlib.sha256().hexdigest(),
    }


def test_no_push_promise_when_the_client_disabled_push(server: ServerProcess) -> None:
    with PushClient(server, {SettingCodes.ENABLE_PUSH: 0}) as client:
        page, pushed = client.page_and_pushes()
        # Promises precede the page's own HEADERS: by the page's end, any would be here.
    assert (page.status, bytes(page.data)) == (200, PUSH_PAGE)
    assert client.promises == [] and pushed == {}
    assert len(client.informational) == 1  # the early hint still came


def test_pushes_stop_at_the_client_s_max_concurrent_streams(server: ServerProcess) -> None:
    settings = {SettingCodes.ENABLE_PUSH: 1, SettingCodes.MAX_CONCURRENT_STREAMS: 1}
    with PushClient(server, settings) as client:
        page, pushed = client.page_and_pushes()
    assert page.status == 200
    assert list(pushed) == ["/push/style.css"]  # the second push found the first still open


def test_max_pushes_per_request_caps_them_and_pushes_wait_for_admission(
    capped_server: ServerProcess,
) -> None:
    with PushClient(capped_server, {SettingCodes.ENABLE_PUSH: 1}) as client:
        page, pushed = client.page_and_pushes()
    assert page.status == 200
    assert list(pushed) == ["/push/style.css"]
    assert bytes(pushed["/push/style.css"].data) == PUSHED["/push/style.css"][1]


def test_push_off_is_not_offered_to_the_app() -> None:
    with running_server("--max-pushes-per-request", "0") as process:
        result = run_tool("nghttp", "-n", "-v", f"{process.url}/push")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PUSH_PROMISE" not in result.stdout
    assert re.search(r"recv \(stream_id=\d+\) :status: 103", result.stdout), result.stdout


def test_a_negative_max_pushes_per_request_is_a_one_line_error() -> None:
    result = run_osmium("serve", "--max-pushes-per-request", "-1")
    assert result.returncode == 2
    assert result.stderr == (
        "osmium: error: max_pushes_per_request must be 0 (push off) or a positive number\n"
    )


# -- early hints with curl -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "hint_line", "final_line"),
    [
        ("--http2-prior-knowledge", "< HTTP/2 103", "< HTTP/2 200"),
        ("--http1.1", "< HTTP/1.1 103 Early Hints", "< HTTP/1.1 200 OK"),
    ],
)
def test_curl_sees_the_103_before_the_page(
    server: ServerProcess, flag: str, hint_line: str, final_line: str
) -> None:
    result = run_tool("curl", "-sS", "-v", flag, "-o", "/dev/null", f"{server.url}/push")
    assert result.returncode == 0, result.stderr
    lines = [line.rstrip() for line in result.stderr.splitlines() if line.startswith("< ")]
    hint = lines.index(hint_line)
    assert lines[hint + 1 : hint + 3] == [f"< link: {link.decode()}" for link in PUSH_LINKS]
    assert lines.index(final_line) > hint
