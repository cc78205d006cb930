"""hpack logs at DEBUG for every integer and header field it codes: about 36 `log.debug` calls a
request, each a logging call even when nothing is logged at DEBUG (a few per cent of a worker's
instructions). Where DEBUG is off for hpack's logger, it gets one whose `debug` does nothing.

This reaches into hpack's module state (`hpack.hpack.log`); a test
(tests/unit/protocol/test_hpack_logging.py) fails if an hpack release renames it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import hpack.hpack

#: Stands in for hpack's module logger: hpack only ever calls its `debug`.
QUIET_LOGGER = SimpleNamespace(debug=lambda *args, **kwargs: None)


def quiet_hpack_debug_logging() -> bool:
    """Silence hpack's per-field debug calls unless its logger would print them; True if done.

    Call it once logging is configured (a worker, before it serves).
    """
    if hpack.hpack.log.isEnabledFor(logging.DEBUG):
        return False
    hpack.hpack.log = QUIET_LOGGER
    return True
