"""asyncio transports: socket bytes to the protocol core and back, with backpressure and timers."""
