"""SIGHUP loads new code; a reload whose new code is broken keeps the workers that serve."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.integration.support import REPO_ROOT, h2c_client, wait_until
from tests.server_process import running_server

APP = """\
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def test_broken_reload_keeps_serving_and_a_fixed_one_replaces_every_worker(
    tmp_path: Path,
) -> None:
    module = tmp_path / "reloadable.py"
    module.write_text(APP.format(version="v1"))
    # osmium importable as if installed; no .pyc, whose mtime check could miss a same-size edit
    env = {"PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    launch = running_server("--workers", "2", app="reloadable:app", cwd=str(tmp_path), env=env)
    with launch as server, h2c_client(server) as client:
        first_workers = set(server.worker_pids())
        assert client.get("/").text == "v1"

        module.write_text(APP.format(version="v1") + "raise RuntimeError('broken on purpose')\n")
        server.signal(signal.SIGHUP)
        server.wait_for_line(r"reload abandoned.*broken on purpose", timeout=10)
        assert client.get("/").text == "v1"
        # The failed worker is gone once reaped; the serving ones were never touched.
        wait_until(lambda: set(server.worker_pids()) == first_workers, 5, "failed worker reaped")

        module.write_text(APP.format(version="v2"))
        server.signal(signal.SIGHUP)
        wait_until(
            lambda: not first_workers & set(server.worker_pids()), 15, "every worker replaced"
        )
        with h2c_client(server) as fresh:
            assert fresh.get("/").text == "v2"
        assert server.stop() == 0
    # The acceptor sums the workers' reports: every request above, old and new workers alike.
    served = re.search(r"stopped after (\d+) requests on (\d+) connections", server.output)
    assert served is not None, server.output
    assert int(served[1]) >= 3 and int(served[2]) >= 2
