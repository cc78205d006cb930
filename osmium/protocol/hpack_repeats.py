"""Header blocks that repeat, coded once.

Once a client's request fields sit in the HPACK dynamic table, it sends the same few header
blocks again and again (a load generator always; a browser for its polls, an API client for
each call): runs of indexed fields whose decoding changes nothing. Responses repeat the same
way (`:status 200`, a content type, a length). hpack codes every field in Python, a sixth of a
small request's cost. Here a block that left the table as it found it is kept, and handed out
again for the same input while the table is still the one it was coded against.
"""

from __future__ import annotations

from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable

#: Blocks kept per connection and direction, and the largest kept: a handful of short blocks
#: repeat (indexed fields take a byte or two each), and an idle connection should stay small.
MAX_BLOCKS = 8
MAX_BLOCK_SIZE = 256


class CountingHeaderTable(HeaderTable):
    """hpack's dynamic table, counting the changes to it (entries added, size changed)."""

    changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    def snapshot(self) -> tuple:
        """What the table holds and how it is sized: for `restore` on a table as new as this
        one was before the coding that filled it."""
        state = (self._current_size, self._maxsize, self.resized, self.changes)
        return tuple(self.dynamic_entries), state

    def restore(self, snapshot: tuple) -> None:
        """A new table set up as the `snapshot` of another one."""
        entries, state = snapshot
        self.dynamic_entries.extend(entries)
        self._current_size, self._maxsize, self.resized, self.changes = state

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self.changes += 1
        HeaderTable.maxsize.fset(self, value)  # type: ignore[attr-defined]


#: First blocks kept for all connections (see `RepeatingBlockDecoder._decode_first`).
MAX_FIRST_BLOCKS = 32


def keep(blocks: dict, key: object, coded: tuple, limit: int = MAX_BLOCKS) -> None:
    """Remembers a coded block; a full memory starts afresh (what repeats comes back at once)."""
    if len(blocks) >= limit:
        blocks.clear()
    blocks[key] = coded


#: Blocks decoded (by block and limits) and header lists encoded on a table nothing had changed
#: yet: what they decoded or encoded to and the table they left, for every connection of the
#: worker.
_first_decoded: dict[tuple[bytes, int, int], tuple] = {}
_first_encoded: dict[tuple, tuple] = {}


class RepeatingBlockDecoder(Decoder):
    """hpack's Decoder, answering a block it decoded before from what it read then, as long as
    neither the dynamic table nor the limits the decoding checked have changed since.

    `memo`, after each `decode`: a dict kept with the header list it returned and every equal
    one this decoder (or, for a connection's first block, any) returns for the same block, for
    what the caller finds out about that list; None when the list is not kept."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self.header_table = CountingHeaderTable()
        self._blocks: dict[bytes, tuple[tuple[int, int, int], list[HeaderTuple], dict]] = {}
        self.memo: dict | None = None

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:  # type: ignore[override]
        self.memo = None
        if not raw or type(data) is not bytes or len(data) > MAX_BLOCK_SIZE:
            return super().decode(data, raw)  # type: ignore[return-value]
        table = self.header_table
        if not table.changes:
            return self._decode_first(data, table)
        context = (table.changes, self.max_header_list_size, self.max_allowed_table_size)
        kept = self._blocks.get(data)
        if kept is not None and kept[0] == context:
            self.memo = kept[2]
            return list(kept[1])
        headers: list[HeaderTuple] = super().decode(data, raw)  # type: ignore[assignment]
        if table.changes == context[0]:
            self.memo = {}
            keep(self._blocks, data, (context, headers, self.memo))
            return list(headers)
        return headers

    def _decode_first(self, data: bytes, table: CountingHeaderTable) -> list[HeaderTuple]:
        """A block on a table as new as every connection's: the first request of a connection
        is the same block from each connection of a client, and fills the table; it is decoded
        once, and the table it leaves set up again from what that decoding left."""
        key = (data, self.max_header_list_size, self.max_allowed_table_size)
        first = _first_decoded.get(key)
        if first is None:
            headers: list[HeaderTuple] = super().decode(data, True)  # type: ignore[assignment]
            self.memo = {}
            keep(_first_decoded, key, (headers, table.snapshot(), self.memo), MAX_FIRST_BLOCKS)
            return list(headers)
        headers, snapshot, self.memo = first
        table.restore(snapshot)
        return list(headers)


class RepeatingBlockEncoder(Encoder):
    """hpack's Encoder, answering a header list it encoded before with the same bytes, as long
    as its dynamic table has not changed since. Only lists of plain tuples are kept: a
    NeverIndexedHeaderTuple compares equal to a plain one but must be coded differently."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table = CountingHeaderTable()
        self._blocks: dict[tuple, tuple[int, bytes]] = {}

    def encode(self, headers: list, huffman: bool = True) -> bytes:  # type: ignore[override]
        table = self.header_table
        if type(headers) is not list or not huffman or table.resized:
            return super().encode(headers, huffman)
        for field in headers:
            if type(field) is not tuple:
                return super().encode(headers, huffman)
        key = tuple(headers)
        changes = table.changes
        if not changes:
            return self._encode_first(key, table)
        kept = self._blocks.get(key)
        if kept is not None and kept[0] == changes:
            return kept[1]
        block = super().encode(headers, huffman)
        if table.changes == changes and len(block) <= MAX_BLOCK_SIZE:
            keep(self._blocks, key, (changes, block))
        return block

    def _encode_first(self, key: tuple, table: CountingHeaderTable) -> bytes:
        """A header list on a table as new as every connection's (a connection's first
        response, the same on each): encoded once, and the table it leaves set up again."""
        first = _first_encoded.get(key)
        if first is None:
            block = super().encode(list(key), True)
            if len(block) <= MAX_BLOCK_SIZE:
                keep(_first_encoded, key, (block, table.snapshot()), MAX_FIRST_BLOCKS)
            return block
        block, snapshot = first
        table.restore(snapshot)
        return block
