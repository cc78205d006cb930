"""RFC 9113 §3.4: the HTTP/2 connection preface, both directions."""

from __future__ import annotations

from hyperframe.frame import SettingsFrame, WindowUpdateFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    PREFACE,
    ErrorCode,
    FrameType,
    RawClient,
    Setting,
    raw_frame,
    settings_payload,
)
from tests.server_process import ServerProcess


def test_server_preface_is_a_settings_frame_first(connect: Connect) -> None:
    """§3.4: the server connection preface is a (possibly empty) SETTINGS frame, sent first."""
    client = connect(handshake=False)
    client.send_raw(PREFACE + raw_frame(FrameType.SETTINGS))
    first = client.read_frame()
    assert isinstance(first, SettingsFrame), first
    assert "ACK" not in first.flags
    assert first.stream_id == 0


def test_server_acknowledges_client_preface_settings(h2: RawClient) -> None:
    """§3.4: the SETTINGS frames of the preface MUST be acknowledged (the handshake saw the ACK)."""
    acks = [f for f in h2.received if isinstance(f, SettingsFrame) and "ACK" in f.flags]
    assert len(acks) == 1
    assert acks[0].stream_id == 0
    assert acks[0].settings == {}


def test_server_acknowledges_empty_client_settings(connect: Connect) -> None:
    """§3.4: the client preface's SETTINGS frame MAY be empty; it is still acknowledged."""
    client = connect(handshake=False)
    client.send_raw(PREFACE + raw_frame(FrameType.SETTINGS))
    client.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "SETTINGS ACK")


def test_server_acknowledges_client_preface_with_values(connect: Connect) -> None:
    """§3.4, §6.5.3: a preface SETTINGS with values is applied and acknowledged."""
    client = connect(
        settings={Setting.INITIAL_WINDOW_SIZE: 100_000, Setting.MAX_FRAME_SIZE: 32_768}
    )
    response = client.get("/")
    assert response.status == 200


def test_server_settings_advertise_documented_defaults(h2: RawClient) -> None:
    """§6.5.2: the server's preface SETTINGS values (osmium defaults)."""
    assert h2.server_settings[Setting.MAX_CONCURRENT_STREAMS] == 100
    assert h2.server_settings[Setting.INITIAL_WINDOW_SIZE] == 262_144
    assert h2.server_settings[Setting.MAX_FRAME_SIZE] == 16_384
    assert h2.server_settings[Setting.MAX_HEADER_LIST_SIZE] == 65_536


def test_server_never_enables_push(h2: RawClient) -> None:
    """§6.5.2: a server MUST NOT set SETTINGS_ENABLE_PUSH to 1 (absent or 0 is fine)."""
    assert h2.server_settings.get(Setting.ENABLE_PUSH, 0) == 0


def test_server_opens_connection_window_after_settings(h2: RawClient) -> None:
    """§6.9.2: the connection window is only changed by WINDOW_UPDATE on stream 0 (to 1 MiB)."""
    updates = [f for f in h2.received if isinstance(f, WindowUpdateFrame)]
    assert [(f.stream_id, f.window_increment) for f in updates] == [(0, 1_048_576 - 65_535)]


def test_preface_sent_in_single_bytes_is_accepted(connect: Connect) -> None:
    """§3.4: the preface is a byte sequence; TCP may deliver it in any segmentation."""
    client = connect(handshake=False)
    for byte in PREFACE + raw_frame(FrameType.SETTINGS):
        client.send_raw(bytes([byte]))
    client.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "SETTINGS ACK")
    assert client.get("/").status == 200


def test_invalid_preface_is_a_connection_error(connect: Connect) -> None:
    """§3.4: an invalid preface is a connection error PROTOCOL_ERROR (GOAWAY MAY be omitted)."""
    client = connect(handshake=False)
    client.send_raw(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + raw_frame(FrameType.SETTINGS))
    client.expect_error_or_close(ErrorCode.PROTOCOL_ERROR)


def test_http1_bytes_are_http1_on_cleartext_and_a_bad_preface_after_alpn_h2(
    connect: Connect, server: ServerProcess
) -> None:
    """§3.4, §3.2: without the preface a cleartext connection is HTTP/1.1 (answered in HTTP/1.1,
    not frames); once ALPN chose h2 the same bytes are an invalid preface, PROTOCOL_ERROR."""
    client = connect(handshake=False)
    client.send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    if server.scheme == "http":
        assert client.read_raw_until_closed().startswith(b"HTTP/1.1 200 OK\r\n")
    else:
        client.expect_error_or_close(ErrorCode.PROTOCOL_ERROR)


def test_preface_not_followed_by_settings_is_a_connection_error(connect: Connect) -> None:
    """§3.4: the preface MUST be followed by a SETTINGS frame; anything else -> PROTOCOL_ERROR."""
    client = connect(handshake=False)
    client.send_raw(PREFACE + raw_frame(FrameType.PING, 0, 0, b"\0" * 8))
    client.expect_error_or_close(ErrorCode.PROTOCOL_ERROR)


def test_preface_settings_with_invalid_value_is_a_connection_error(connect: Connect) -> None:
    """§3.4, §6.5.2: an invalid value in the preface SETTINGS -> GOAWAY(PROTOCOL_ERROR)."""
    client = connect(handshake=False)
    payload = settings_payload({Setting.ENABLE_PUSH: 2})
    client.send_raw(PREFACE + raw_frame(FrameType.SETTINGS, 0, 0, payload))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)
