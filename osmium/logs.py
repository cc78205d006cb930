"""osmium's logging: its own loggers only, never the root logger an app may have configured."""

from __future__ import annotations

import logging
import sys

from osmium.config import Config


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    access = logging.INFO if config.access_log else logging.WARNING
    logging.getLogger("osmium.access").setLevel(access)
    if config.debug_frames:
        logging.getLogger("osmium.frames").setLevel(logging.DEBUG)
    # hpack logs every header at debug level; frame-level detail is what --debug-frames is for.
    logging.getLogger("hpack").setLevel(logging.WARNING)
    # The WebSocket core logs each closed WebSocket at info level: noise at any volume.
    logging.getLogger("osmium.websocket").setLevel(logging.WARNING)
