"""The sans-IO protocol core: bytes and events in, bytes and events out; no sockets, no asyncio."""
