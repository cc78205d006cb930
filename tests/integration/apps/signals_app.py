"""The demo app, plus a line per request in the file named by OSMIUM_TEST_RECORD.

The line is written when the app starts the request, so a test knows the request is in flight
(whichever worker took it) before it sends a signal.
"""

from __future__ import annotations

import os
from typing import Any

from osmium.demo import app as demo_app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        with open(os.environ["OSMIUM_TEST_RECORD"], "a") as record:
            record.write(f"started {scope['path']}\n")
    await demo_app(scope, receive, send)
