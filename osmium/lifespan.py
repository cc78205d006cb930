"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last.

An app that does not speak lifespan (returns, or raises before it ever calls receive()) is served
without it, as the spec asks. An app that reports `lifespan.startup.failed`, or raises once it
received `lifespan.startup`, stops the server: that is a startup failure, not a missing feature.
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
    """`mode` (--lifespan): "auto" runs it if the app speaks it, "on" makes an app that does not
    a startup failure, "off" never starts it (nor the app's state)."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], mode: str = "auto") -> None:
        self._app = app
        self._mode = mode
        self._state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outcome: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        #: The last event the app received ("lifespan.startup", ...) and its answer to it.
        self._received: str | None = None
        self._answered: str | None = None
        self.supported = mode != "off"

    async def startup(self) -> None:
        if not self.supported:
            return
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._exchange("startup")
        if self._mode == "on" and not self.supported:
            raise LifespanFailure("the app does not speak the lifespan protocol (--lifespan on)")

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
            await self._app(scope, self._receive, self._send)
        except Exception as error:
            await self._on_error(error)
        else:
            self.supported = False
        finally:
            # Whoever waits for a reply must not wait forever on an app that stopped answering.
            await self._outcome.put({"type": "lifespan.unsupported"})

    async def _on_error(self, error: Exception) -> None:
        event = self._received
        if event is None:
            # It raised before asking for an event: it does not speak lifespan (ASGI spec).
            self.supported = False
            log.info("lifespan not supported by the app (%s: %s)", type(error).__name__, error)
        elif self._answered is None:
            log.error("the app raised during %s", event, exc_info=error)
            message = f"{type(error).__name__}: {error}"
            await self._outcome.put({"type": f"{event}.failed", "message": message})
        elif self._answered != f"{event}.failed":
            log.error("the app raised after %s", self._answered, exc_info=error)
        # Else it reported the failure, then raised it too (as Starlette does): reported once.

    async def _receive(self) -> Message:
        message = await self._inbox.get()
        self._received, self._answered = message["type"], None
        return message

    async def _send(self, message: Message) -> None:
        self._answered = message["type"]
        await self._outcome.put(message)
