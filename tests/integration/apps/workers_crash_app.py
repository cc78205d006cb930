"""An app whose workers die hard during start-up until a marker file exists.

The module imports fine (so the failure is not a "cannot import" fatal error); the worker process
exits with `os._exit(1)` as soon as the lifespan startup begins, before it can report ready,
while the file named by OSMIUM_TEST_MARKER is missing. Once the file exists, it is
`workers_app.app`.
"""

from __future__ import annotations

import os
from typing import Any

from tests.integration.apps.workers_app import app as _workers_app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan" and not os.path.exists(os.environ["OSMIUM_TEST_MARKER"]):
        os._exit(1)
    await _workers_app(scope, receive, send)
