"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last.

An app that does not speak lifespan (raises or returns at once) is served without it, as the spec
asks; an app that reports `lifespan.startup.failed` stops the server with its message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from osmium.asgi import ASGI_VERSION, ASGIApp, Message

log = logging.getLogger("osmium.error")


class LifespanFailure(Exception):
    """The app reported that startup or shutdown failed; the message is the app's."""


class Lifespan:
    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self._app = app
        self._state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outcome: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.supported = True

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if self.supported and self._task is not None and not self._task.done():
            await self._exchange("shutdown")

    async def _exchange(self, phase: str) -> None:
        await self._inbox.put({"type": f"lifespan.{phase}"})
        reply = await self._outcome.get()
        if reply["type"] == f"lifespan.{phase}.failed":
            raise LifespanFailure(reply.get("message") or f"lifespan {phase} failed")

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self._state}
        try:
            await self._app(scope, self._inbox.get, self._send)
        except Exception as error:
            self.supported = False
            log.info("lifespan not supported by the app (%s: %s)", type(error).__name__, error)
        else:
            self.supported = False
        finally:
            # Whoever waits for a reply must not wait forever on an app that stopped answering.
            await self._outcome.put({"type": "lifespan.unsupported"})

    async def _send(self, message: Message) -> None:
        await self._outcome.put(message)
