"""The objects every request touches keep fewer than 30 instance attributes.

CPython 3.11 shares one key table among a class's instances ("split" dicts) for at most 29
attribute names; from the 30th, every instance has its own dict and every attribute access on
it takes a slower path (LOAD_ATTR_WITH_HINT instead of LOAD_ATTR_INSTANCE_VALUE): measured as
+0.6 % instructions per request when the HTTP/2 protocol object reached 30. Group new state
(as ConnectionTally does) instead of adding attributes to these.
"""

from __future__ import annotations

import asyncio

from osmium.protocol.settings import ProtocolSettings
from osmium.transport.context import ServerContext
from osmium.transport.h1 import H1ServerProtocol
from osmium.transport.h2 import H2ServerProtocol
from tests.support.h2_peer import Peer

#: CPython's SHARED_KEYS_MAX_SIZE is 30: a 30th name already leaves the shared table.
MOST_ATTRIBUTES = 29


def test_the_protocol_core_and_transports_stay_under_the_split_dict_limit() -> None:
    async def attribute_counts() -> dict[str, int]:
        context = ServerContext(app=None, protocol=ProtocolSettings(), keep_alive_timeout=5.0)
        return {
            "ServerConnection": len(vars(Peer().server)),
            "H2ServerProtocol": len(vars(H2ServerProtocol(context))),
            "H1ServerProtocol": len(vars(H1ServerProtocol(context))),
            "ServerContext": len(vars(context)),
        }

    counts = asyncio.run(attribute_counts())
    assert all(count <= MOST_ATTRIBUTES for count in counts.values()), counts
