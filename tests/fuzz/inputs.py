"""How a fuzzer's input is read (atheris.FuzzedDataProvider's calls) and how seeds are written.

`PlainDataProvider` reads an input as atheris does, so the targets also run without atheris
(replaying a finding, the unit tests) and an input means the same to both.
"""

from __future__ import annotations

from typing import Protocol


class DataProvider(Protocol):
    """The calls the targets make of atheris.FuzzedDataProvider."""

    def ConsumeBool(self) -> bool: ...
    def ConsumeBytes(self, count: int) -> bytes: ...
    def ConsumeIntInRange(self, low: int, high: int) -> int: ...
    def remaining_bytes(self) -> int: ...


class PlainDataProvider:
    """atheris.FuzzedDataProvider's reading of an input, in Python, for the calls the targets make.

    Booleans and bytes come from the front and integers from the back, as with libFuzzer's own
    provider: so the targets run without atheris, and an input means the same to both.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._front = 0
        self._end = len(data)

    def remaining_bytes(self) -> int:
        return self._end - self._front

    def ConsumeBool(self) -> bool:
        if self._front == self._end:
            return False
        self._front += 1
        return bool(self._data[self._front - 1] & 1)

    def ConsumeBytes(self, count: int) -> bytes:
        count = min(count, self._end - self._front)
        self._front += count
        return self._data[self._front - count : self._front]

    def ConsumeIntInRange(self, low: int, high: int) -> int:
        span = high - low
        value = 0
        offset = 0
        while span >> offset and self._end > self._front:
            self._end -= 1
            value = value << 8 | self._data[self._end]
            offset += 8
        return low + value % (span + 1)


class InputBuilder:
    """Writes an input the way the targets read it: how seeds are made."""

    def __init__(self) -> None:
        self._front = bytearray()
        self._back = bytearray()  # in the order it is read, from the input's last byte on

    def bool(self, value: bool) -> None:
        self._front.append(int(value))

    def bytes(self, data: bytes) -> None:
        self._front += data

    def int_in_range(self, value: int, low: int, high: int) -> None:
        assert low <= value <= high, (value, low, high)
        span = high - low
        self._back += (value - low).to_bytes((span.bit_length() + 7) // 8, "big")

    def build(self) -> bytes:
        return bytes(self._front) + bytes(reversed(self._back))
