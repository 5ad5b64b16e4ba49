"""Bounds-checked little-endian reading of a model file's bytes.

The readers never index the buffer themselves: every read goes through
:class:`Cursor`, so a truncated or corrupt file surfaces as one :class:`ModelError`
naming the file, never as ``struct.error`` or ``IndexError``.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np

from renderer.errors import ModelError

# numpy, struct and codec errors a corrupt buffer can provoke inside a reader
BOUNDARY_ERRORS = (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError,
                   UnicodeError, MemoryError)


@cache
def _layout(fmt: str) -> struct.Struct:
    return struct.Struct("<" + fmt)


class Cursor:
    """A read position over a byte buffer; reads past the end raise ModelError."""

    def __init__(self, data: bytes, path: str | None, offset: int = 0):
        self.data = data
        self.path = path
        self.pos = offset
        self.warnings: list[str] = []

    def error(self, reason: str) -> ModelError:
        return ModelError(self.path, reason)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def need(self, size: int, what: str) -> None:
        if size < 0 or self.pos + size > len(self.data):
            raise self.error(f"truncated file: {what} needs {size} bytes at offset {self.pos}, "
                             f"{max(self.remaining, 0)} left")

    def take(self, size: int, what: str) -> bytes:
        self.need(size, what)
        start = self.pos
        self.pos += size
        return self.data[start:self.pos]

    def skip(self, size: int, what: str) -> None:
        self.need(size, what)
        self.pos += size

    def unpack(self, fmt: str, what: str) -> tuple:
        """``fmt`` is a struct format without byte order; little-endian is implied."""
        layout = _layout(fmt)
        self.need(layout.size, what)
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def u8(self, what: str) -> int:
        return self.unpack("B", what)[0]

    def i32(self, what: str) -> int:
        return self.unpack("i", what)[0]

    def count(self, what: str, record_size: int = 1, fmt: str = "i") -> int:
        """An element count; rejected early when the rest of the file cannot hold that many."""
        value = self.unpack(fmt, f"{what} count")[0]
        if value < 0 or value * record_size > self.remaining:
            raise self.error(f"truncated file or bad {what} count {value} at offset "
                             f"{self.pos - _layout(fmt).size}")
        return value

    def array(self, dtype: np.dtype | str, count: int, what: str) -> np.ndarray:
        """``count`` records of ``dtype`` as a read-only view (copy before mutating)."""
        dtype = np.dtype(dtype)
        if count < 0:
            raise self.error(f"negative {what} count {count}")
        self.need(dtype.itemsize * count, what)
        out = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += dtype.itemsize * count
        return out

    def text(self, encoding: str, what: str) -> str:
        """A PMX string: int32 byte length, then the encoded text."""
        size = self.count(what)
        return self.decode(self.take(size, what), encoding, what)

    def fixed_text(self, size: int, what: str) -> str:
        """A PMD fixed-width Shift-JIS field read from the file."""
        return self.fixed_field(self.take(size, what), what)

    def fixed_field(self, raw: bytes, what: str) -> str:
        """A PMD fixed-width Shift-JIS field: ends at the first NUL; 0xFD padding is dropped."""
        return self.decode(raw.split(b"\0", 1)[0].rstrip(b"\xfd"), "cp932", what)

    def decode(self, raw: bytes, encoding: str, what: str) -> str:
        """Undecodable names are kept (with U+FFFD) and reported, not fatal."""
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            self.warnings.append(f"{what}: undecodable {encoding} text {raw[:40]!r}, replaced characters")
            return raw.decode(encoding, errors="replace")


@contextmanager
def file_boundary(path: str | None) -> Iterator[None]:
    """Turns any low-level error escaping a reader into a ModelError naming the file.

    Garbage floats (NaN, inf) in a corrupt file are data, not errors: numpy stays quiet.
    """
    try:
        with np.errstate(all="ignore"):
            yield
    except ModelError:
        raise
    except BOUNDARY_ERRORS as error:
        raise ModelError(path, f"corrupt file ({type(error).__name__}: {error})") from None


def check_range(cursor: Cursor, what: str, values: np.ndarray, count: int, *, allow_none: bool = False) -> None:
    """Vectorized index validation: every value in [0, count) (or -1 when allowed)."""
    values = np.asarray(values)
    if not values.size:
        return
    low = -1 if allow_none else 0
    bad = (values < low) | (values >= count)
    if bad.any():
        first = int(values.ravel()[np.argmax(bad.ravel())])
        raise cursor.error(f"{what} out of range: {first} (valid {low}..{count - 1}, "
                           f"{int(bad.sum())} bad)")
