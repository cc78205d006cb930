"""Seeds and dictionaries for libFuzzer: a valid start for each frame type and request shape,
written as the targets read inputs, made afresh at every run (never committed)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from pathlib import Path

import hpack

from osmium.protocol.events import ErrorCode, Headers
from tests.fuzz import oracle
from tests.fuzz.inputs import InputBuilder
from tests.fuzz.targets import (
    H1_HEADER_LIMITS,
    H2_PROFILES,
    MAX_READ,
    TRAILERS,
    H1Action,
    H2Action,
)

END_STREAM_FLAG, ACK_FLAG, END_HEADERS_FLAG, PADDED_FLAG, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9
)  # fmt: skip
PRIORITY_UPDATE = 0x10
STEP = 10  # hundredths of a second between the seeds' reads: well inside the flood budgets

Reads = list[tuple[bytes, int]]  # each read and the actions after it


def _add_h2_reads(builder: InputBuilder, reads: Reads) -> None:
    for data, actions in reads:
        parts = [data[index : index + MAX_READ] for index in range(0, len(data), MAX_READ)] or [b""]
        for index, part in enumerate(parts):
            builder.int_in_range(len(part), 0, MAX_READ)
            builder.bytes(part)
            builder.int_in_range(STEP, 0, 255)
            builder.int_in_range(actions if index == len(parts) - 1 else 0, 0, 255)


def h2_input(reads: Reads, *, preface: bool = True, profile: int = 0) -> bytes:
    """The HTTP/2 target's input for these reads (after the preface and SETTINGS if `preface`)."""
    builder = InputBuilder()
    builder.int_in_range(profile, 0, len(H2_PROFILES) - 1)
    builder.bool(preface)
    _add_h2_reads(builder, reads)
    return builder.build()


def _request(stream_id: int, encoder: hpack.Encoder, *, method: bytes = b"GET", flags: int = 0,
             fields: Headers = ()) -> bytes:  # fmt: skip
    """A request's HEADERS frame (END_HEADERS added; END_STREAM is the caller's)."""
    pseudo = [(b":method", method), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]
    block = encoder.encode([*pseudo, *fields])
    return oracle.frame(HEADERS, END_HEADERS_FLAG | flags, stream_id, block)


def h2_seeds() -> dict[str, bytes]:
    """A valid start for each kind of frame, and for the paths the application takes."""
    frame = oracle.frame
    answer = H2Action.ANSWER | H2Action.END_WITH_HEADERS
    respond = H2Action.SEND_DATA | H2Action.END_STREAM
    get = _request(1, hpack.Encoder(), flags=END_STREAM_FLAG)
    post_encoder = hpack.Encoder()
    post = _request(1, post_encoder, method=b"POST", fields=[(b"content-length", b"5")])
    trailers = frame(HEADERS, END_STREAM_FLAG | END_HEADERS_FLAG, 1, post_encoder.encode(TRAILERS))
    split = _request(1, hpack.Encoder(), flags=END_STREAM_FLAG, fields=[(b"user-agent", b"f" * 40)])
    block = split[9:]
    continued = [
        frame(HEADERS, END_STREAM_FLAG, 1, block[:20]),
        frame(CONTINUATION, 0, 1, block[20:40]),
        frame(CONTINUATION, END_HEADERS_FLAG, 1, block[40:]),
    ]
    prioritized = _request(1, hpack.Encoder(), flags=END_STREAM_FLAG)
    padded = frame(
        HEADERS,
        END_STREAM_FLAG | END_HEADERS_FLAG | PADDED_FLAG | PRIORITY_FLAG,
        1,
        bytes([3]) + struct.pack(">IB", 0, 15) + prioritized[9:] + bytes(3),
    )
    settings = b"".join(
        struct.pack(">HI", code, value)
        for code, value in ((0x1, 4096), (0x2, 0), (0x4, 65_535), (0x5, 16_384), (0x6, 8192))
    )
    encoder = hpack.Encoder()
    three_gets = b"".join(_request(n, encoder, flags=END_STREAM_FLAG) for n in (1, 3, 5))
    encoder = hpack.Encoder()
    first, second = (_request(n, encoder, flags=END_STREAM_FLAG) for n in (1, 3))
    window = struct.pack(">I", 100_000)
    reads: dict[str, Reads] = {
        "get": [(get, answer)],
        "post": [
            (post, H2Action.ANSWER),
            (frame(DATA, END_STREAM_FLAG, 1, b"hello"), H2Action.ACKNOWLEDGE),
            (b"", respond),
        ],
        "ping": [(frame(PING, 0, 0, b"12345678") + frame(PING, ACK_FLAG, 0, b"8" * 8), 0)],
        "settings": [(frame(SETTINGS, 0, 0, settings) + frame(SETTINGS, ACK_FLAG, 0, b""), 0)],
        "rst": [
            (_request(1, hpack.Encoder()), 0),
            (frame(RST_STREAM, 0, 1, struct.pack(">I", ErrorCode.CANCEL)), 0),
        ],
        "goaway": [
            (get, H2Action.ANSWER),
            (frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)), respond),
        ],
        "continuation": [(continued[0], 0), (continued[1], 0), (continued[2], answer)],
        "trailers": [
            (post, H2Action.ANSWER),
            (frame(DATA, 0, 1, b"hello"), H2Action.ACKNOWLEDGE),
            (trailers, H2Action.END_STREAM),
        ],
        "priority": [
            (padded, 0),
            (frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 200)), 0),
            (frame(PRIORITY_UPDATE, 0, 0, struct.pack(">I", 1) + b"u=1, i"), answer),
        ],
        "graceful-close": [
            (first, answer | H2Action.CLOSE),
            (frame(PING, ACK_FLAG, 0, b"osmGOAWY"), 0),
            (second, answer),
        ],
    }
    tight: dict[str, Reads] = {
        "flow-control": [
            (get, H2Action.ANSWER),
            (b"", H2Action.SEND_DATA | H2Action.LARGE),
            (frame(WINDOW_UPDATE, 0, 0, window), 0),
            (frame(WINDOW_UPDATE, 0, 1, window), H2Action.END_STREAM),
        ],
        "refused-stream": [(three_gets, answer), (b"", answer | H2Action.RESET)],
        "ping-flood": [(frame(PING, 0, 0, b"12345678") * 10, 0)],
        "continuation-flood": [
            (frame(HEADERS, 0, 1, block[:20]) + frame(CONTINUATION, 0, 1, bytes(100)) * 6, 0)
        ],
    }
    no_preface: dict[str, Reads] = {
        "preface-in-pieces": [
            (oracle.PREFACE[:10], 0),
            (oracle.PREFACE[10:] + oracle.SETTINGS, 0),
        ],
        "http1-on-h2": [(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0)],
    }
    return {
        **{name: h2_input(steps) for name, steps in reads.items()},
        **{name: h2_input(steps, profile=1) for name, steps in tight.items()},
        **{name: h2_input(steps, preface=False) for name, steps in no_preface.items()},
    }


def h1_input(reads: Reads, *, scheme: str = "http", after_upgrade: Reads = ()) -> bytes:
    """The HTTP/1.1 target's input; `after_upgrade` are the HTTP/2 reads after an h2c switch."""
    builder = InputBuilder()
    builder.bool(scheme == "http")
    builder.int_in_range(0, 0, len(H1_HEADER_LIMITS) - 1)
    for data, actions in reads:
        builder.int_in_range(len(data), 0, MAX_READ)
        builder.bytes(data)
        builder.int_in_range(actions, 0, 255)
    _add_h2_reads(builder, list(after_upgrade))
    return builder.build()


def h1_seeds() -> dict[str, bytes]:
    get = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = H1Action.ANSWER
    expect = b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    settings = base64.urlsafe_b64encode(struct.pack(">HI", 0x3, 100)).rstrip(b"=")
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + settings + b"\r\n\r\n"
    )
    after_upgrade = [
        (oracle.PREFACE + oracle.SETTINGS, H2Action.ANSWER),
        (b"", H2Action.SEND_DATA | H2Action.END_STREAM),
    ]
    return {
        "get": h1_input([(get, answer)]),
        "post": h1_input(
            [(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", answer)]
        ),
        "chunked": h1_input(
            [
                (chunked + b"5\r\nhel", 0),
                (b"lo\r\n0\r\nx-trailer: 1\r\n\r\n", answer | H1Action.CHUNKED | H1Action.TRAILERS),
            ]
        ),
        "pipelined": h1_input([(get * 3, answer)]),
        "expect-continue": h1_input(
            [
                (expect, H1Action.CONTINUE),
                (b"ok", answer | H1Action.CLOSE),
            ]
        ),
        "head": h1_input([(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", answer)], scheme="https"),
        "http10": h1_input([(b"GET / HTTP/1.0\r\n\r\n", answer | H1Action.CHUNKED)]),
        "h2c-upgrade": h1_input([(upgrade, 0)], after_upgrade=after_upgrade),
        "smuggling": h1_input(
            [(chunked.replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n"), 0)]
        ),
    }


SEEDS: dict[str, Callable[[], dict[str, bytes]]] = {"h2": h2_seeds, "h1": h1_seeds}

#: libFuzzer dictionaries: tokens it splices into inputs, which byte mutations would hardly find.
DICTIONARIES = {
    "h1": [
        b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\r\n\r\n", b"GET ", b"HEAD ", b"POST ", b"CONNECT ",
        b"OPTIONS * ", b"Host: ", b"Content-Length: ", b"Transfer-Encoding: chunked",
        b"Connection: close", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
        b"HTTP2-Settings: ", b"Expect: 100-continue", b"0\r\n\r\n", oracle.PREFACE,
    ],
    "h2": [oracle.PREFACE, oracle.SETTINGS, b"osmGOAWY"],
}  # fmt: skip


def write_seeds(target: str, corpus: Path) -> list[Path]:
    """The target's seeds as files in `corpus`, written afresh (libFuzzer adds its own beside)."""
    corpus.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in SEEDS[target]().items():
        path = corpus / f"seed-{name}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_dictionary(target: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = ("".join(f"\\x{byte:02x}" for byte in token) for token in DICTIONARIES[target])
    path.write_text("".join(f'"{entry}"\n' for entry in entries))
    return path
