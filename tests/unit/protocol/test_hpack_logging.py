"""hpack's per-field debug logging is silenced only where it would not print anything."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import hpack.hpack
import pytest

from osmium.protocol.hpack_logging import QUIET_LOGGER, quiet_hpack_debug_logging


@pytest.fixture
def hpack_logger() -> Iterator[logging.Logger]:
    """hpack's own logger, put back (and its level) after the test."""
    original = hpack.hpack.log
    level = original.level
    yield original
    hpack.hpack.log = original
    original.setLevel(level)


def test_hpack_still_has_the_module_logger_we_replace(hpack_logger: logging.Logger) -> None:
    """Fails loudly if an hpack release renames `hpack.hpack.log`: the silencing would be moot."""
    assert isinstance(hpack_logger, logging.Logger)
    assert hpack_logger.name == "hpack.hpack"


def test_debug_calls_cost_nothing_when_debug_is_off(hpack_logger: logging.Logger) -> None:
    hpack_logger.setLevel(logging.WARNING)
    assert quiet_hpack_debug_logging()
    assert hpack.hpack.log is QUIET_LOGGER
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    assert decoder.decode(encoder.encode([(b"x-a", b"1")])) == [("x-a", "1")]


def test_debug_logging_is_kept_when_asked_for(
    hpack_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    hpack_logger.setLevel(logging.DEBUG)
    assert not quiet_hpack_debug_logging()
    assert hpack.hpack.log is hpack_logger
    with caplog.at_level(logging.DEBUG, logger="hpack.hpack"):
        hpack.Encoder().encode([(b"x-a", b"1")])
    assert any(record.name == "hpack.hpack" for record in caplog.records)
