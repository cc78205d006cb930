"""Property tests: whatever bytes or frame sequences arrive, the core never raises, and all it
sends back are well-formed frames (a connection error is a GOAWAY, not an exception)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.oracle import PREFACE, SETTINGS, feed, frame

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames = st.builds(
    frame,
    kind=st.integers(0, 12),
    flags=st.integers(0, 255),
    stream_id=st.one_of(st.integers(0, 9), st.integers(0, 2**31 - 1)),
    payload=st.binary(max_size=64),
)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    feed(chunks)


@FUZZ
@given(st.lists(frames, max_size=30), st.integers(1, 40))
def test_random_frames_after_a_valid_preface_never_raise(sequence: list[bytes], cut: int) -> None:
    stream = PREFACE + SETTINGS + b"".join(sequence)
    feed([stream[index : index + cut] for index in range(0, len(stream), cut)])
