"""A third-party TLS back-end, named by dotted path: the stdlib one, with a marker in the log."""

from __future__ import annotations

import logging

from osmium.tls import Listener, TLSSettings
from osmium.tls.stdlib import StdlibTLS


class MarkedTLS:
    name = "marked"

    def listener(self, settings: TLSSettings) -> Listener:
        logging.getLogger("osmium").info("custom TLS back-end loaded for %s", settings.certfile)
        return StdlibTLS().listener(settings)
