"""`osmium top` as a person runs it: in a terminal (tmux), against a real server's admin API.

tmux gives top a terminal of a known size and `capture-pane` reads its screen as text. Each test
runs its own tmux server on its own socket, killed at the end with what it runs. top's command
line in the pane is wrapped so that its exit status and the terminal's mode before and after
(`stty -g`) land in files: quitting must leave the terminal as it found it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from osmium.admin.client import SERVER_HINT, TOKEN_HINT
from tests.integration.h2client import H2Client
from tests.integration.support import REPO_ROOT, h2c_client, run_osmium, wait_until
from tests.server_process import osmium_command
from tests.support.admin import TOKEN, AdminServer, admin_server

SESSION = "top"
COLUMNS, ROWS = 160, 50
DEADLINE = 8.0
TOTAL_REQUESTS = re.compile(r"^total\s+requests (\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def admin() -> Iterator[AdminServer]:
    with admin_server() as admin:
        yield admin


@dataclass
class Terminal:
    """top running in a tmux pane; `status` and the stty files appear when it has exited."""

    #: This test's own tmux server (in the test's directory, which pytest removes later).
    socket: Path
    directory: Path

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)

    def start(self, *top_args: str) -> None:
        files = {name: shlex.quote(str(self.directory / name)) for name in ("before", "after")}
        status = shlex.quote(str(self.directory / "status"))
        top = shlex.join(osmium_command("top", *top_args))
        script = (
            f"stty -g > {files['before']}; {top}; code=$?; stty -g > {files['after']}; "
            f"echo $code > {status}.part; mv {status}.part {status}"
        )
        started = self.tmux(
            "new-session", "-d", "-s", SESSION, "-x", str(COLUMNS), "-y", str(ROWS),
            "-c", str(REPO_ROOT), script,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr

    def running(self) -> bool:
        return self.tmux("has-session", "-t", SESSION).returncode == 0

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", SESSION).stdout

    def press(self, *keys: str) -> None:
        pressed = self.tmux("send-keys", "-t", SESSION, *keys)
        assert pressed.returncode == 0, pressed.stderr

    def wait_for(self, shown: Callable[[str], object], what: str) -> str:
        """The screen once `shown(screen)` holds; at the deadline, an error with the screen."""
        screens = [""]

        def condition() -> bool:
            screens[0] = self.screen()
            return bool(shown(screens[0]))

        try:
            wait_until(condition, DEADLINE, what)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; the screen:\n{screens[0]}") from None
        return screens[0]

    def wait_for_exit(self) -> int:
        """top's exit status, once it has quit, its pane has closed and the terminal is checked."""
        status = self.directory / "status"
        wait_until(status.exists, DEADLINE, "top to exit")
        wait_until(lambda: not self.running(), DEADLINE, "the tmux session to end with top")
        before, after = ((self.directory / name).read_text() for name in ("before", "after"))
        assert after == before, "top left the terminal in another mode"
        return int(status.read_text())


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    assert shutil.which("tmux"), "these tests need tmux (Debian package tmux)"
    terminal = Terminal(tmp_path / "tmux.sock", tmp_path)
    try:
        yield terminal
    finally:
        terminal.tmux("kill-server")


def start_top(terminal: Terminal, admin: AdminServer) -> str:
    """top against `admin`, once it shows the data: returns that first screen."""
    terminal.start("--admin", admin.admin_url, "--token", TOKEN)
    return terminal.wait_for(TOTAL_REQUESTS.search, "top's totals line")


def displayed_requests(screen: str) -> int:
    match = TOTAL_REQUESTS.search(screen)
    assert match, screen
    return int(match[1])


def test_shows_the_workers_and_follows_the_traffic(terminal: Terminal, admin: AdminServer) -> None:
    pids = admin.worker_pids()
    start_top(terminal, admin)
    screen = terminal.wait_for(
        lambda screen: all(re.search(rf"^\s*{pid}\s+\d+\s+ready\b", screen, re.M) for pid in pids),
        f"the workers {pids} listed as ready",
    )
    assert "worker-spawned" in screen, screen
    before = displayed_requests(screen)
    requests = 20
    with h2c_client(admin.server) as client:
        for _ in range(requests):
            assert client.get("/").status_code == 200
    terminal.wait_for(
        lambda screen: displayed_requests(screen) >= before + requests,
        f"the total to pass {before} + {requests} requests",
    )
    terminal.press("q")
    assert terminal.wait_for_exit() == 0


def test_ctrl_c_quits_and_restores_the_terminal(terminal: Terminal, admin: AdminServer) -> None:
    start_top(terminal, admin)
    terminal.press("C-c")
    assert terminal.wait_for_exit() == 0


def test_ping_and_close_the_selected_connection(terminal: Terminal, admin: AdminServer) -> None:
    with H2Client(admin.server.host, admin.server.port) as client:
        client.ping()  # the server has taken the connection in
        peer = f"127.0.0.1:{client.local_port}"
        start_top(terminal, admin)
        # Alone on the server, the connection is the one selected.
        terminal.wait_for(
            lambda screen: "connections: 1," in screen and peer in screen,
            f"the connection from {peer}, alone",
        )
        round_trip = re.compile(r"ping \S+: \d+\.\d+ ms")

        def answered(screen: str) -> bool:
            client.read_for(0.05)  # the client answers the server's PING while it reads
            return bool(round_trip.search(screen))

        terminal.press("p")
        terminal.wait_for(answered, "the ping's round trip")
        terminal.press("c")
        client.wait_for(lambda: bool(client.goaways), DEADLINE, "GOAWAY")
        assert client.goaways[0].error_code == ErrorCodes.NO_ERROR
        terminal.wait_for(lambda screen: "connection-closed" in screen, "the close in the events")
    terminal.press("q")
    assert terminal.wait_for_exit() == 0


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, detail
    assert result.stdout == "", detail
    lines = result.stderr.splitlines()
    assert len(lines) == 1, detail
    assert lines[0].startswith("osmium top: "), detail
    assert fragment in lines[0], detail


def test_a_wrong_token_is_one_line_and_exit_2(admin: AdminServer) -> None:
    result = run_osmium("top", "--admin", admin.admin_url, "--token", "not-the-token")
    assert_one_line_error(result, TOKEN_HINT)


def test_an_unreachable_admin_api_is_one_line_and_exit_2() -> None:
    # Bound but not listening: connections to the port are refused while we hold it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = run_osmium("top", "--admin", url, "--token", TOKEN)
    assert_one_line_error(result, f"cannot reach the admin API at {url}: connection refused")
    assert SERVER_HINT in result.stderr
