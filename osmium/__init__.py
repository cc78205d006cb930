"""osmium: a fast, correct HTTP/2 server for ASGI applications."""

__version__ = "0.1.0"
