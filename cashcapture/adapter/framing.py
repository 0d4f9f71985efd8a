"""TCP framings of NCPDP messages, kept apart from parsing (as h11's receive buffer).

Switches differ in how they delimit a D.0 message on a stream, so the framing
is a per-listener setting. Each framing is a pure, incremental decoder: feed it
whatever bytes arrived, then pull complete frames out. No sockets here.

- ``stx``: STX (0x02), 4 ASCII digits giving the message length, the message,
  ETX (0x03). The default.
- ``len2``: 2-byte big-endian length of the message, then the message.
- ``etx``: the raw message, ended by ETX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STX = 0x02
ETX = 0x03


@dataclass(frozen=True)
class FrameError:
    """A frame that cannot be read; the stream is no longer in step.

    ``payload`` holds the bytes that were meant to be the message, when they
    could be isolated (a header may still be readable, so the server can
    answer with a reject before closing); otherwise None.
    """

    reason: str
    payload: bytes | None = None


class Decoder:
    """Incremental frame decoder: ``feed`` bytes, then call ``next_frame``.

    ``next_frame`` returns the next message (bytes), a FrameError (after which
    the decoder is dead: the connection must be closed), or None when more
    bytes are needed.
    """

    framing = ""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._dead = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def next_frame(self) -> bytes | FrameError | None:
        if self._dead or not self._buf:
            return None
        result = self._decode()
        if isinstance(result, FrameError):
            self._dead = True
            self._buf.clear()
        return result

    def _decode(self) -> bytes | FrameError | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _take(self, start: int, end: int, consumed: int) -> bytes:
        frame = bytes(self._buf[start:end])
        del self._buf[:consumed]
        return frame


class StxDecoder(Decoder):
    framing = "stx"

    def _decode(self) -> bytes | FrameError | None:
        buf = self._buf
        if buf[0] != STX:
            return FrameError("frame does not start with STX")
        if len(buf) < 5:
            return None
        digits = bytes(buf[1:5])
        if not digits.isdigit():
            return FrameError("length after STX is not 4 ASCII digits")
        length = int(digits)
        if length > self.max_size:
            return FrameError(f"message length {length} exceeds maximum {self.max_size}")
        end = 5 + length
        if len(buf) < end + 1:
            return None
        if buf[end] != ETX:
            return FrameError("frame does not end with ETX", bytes(buf[5:end]))
        return self._take(5, end, end + 1)


class Len2Decoder(Decoder):
    framing = "len2"

    def _decode(self) -> bytes | FrameError | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        length = int.from_bytes(buf[:2], "big")
        if length == 0:
            return FrameError("zero-length frame")
        if length > self.max_size:
            return FrameError(f"message length {length} exceeds maximum {self.max_size}")
        if len(buf) < 2 + length:
            return None
        return self._take(2, 2 + length, 2 + length)


class EtxDecoder(Decoder):
    framing = "etx"

    def _decode(self) -> bytes | FrameError | None:
        buf = self._buf
        end = buf.find(ETX)
        if end < 0:
            if len(buf) > self.max_size:
                return FrameError(f"no ETX within maximum message size {self.max_size}")
            return None
        if end > self.max_size:
            return FrameError(f"message length {end} exceeds maximum {self.max_size}")
        if end == 0:
            return FrameError("empty frame")
        return self._take(0, end, end + 1)


def _encode_stx(message: bytes) -> bytes:
    if len(message) > 9999:
        raise ValueError("message too long for STX framing (max 9999 bytes)")
    return b"\x02%04d%b\x03" % (len(message), message)


def _encode_len2(message: bytes) -> bytes:
    if len(message) > 0xFFFF:
        raise ValueError("message too long for 2-byte length framing")
    return len(message).to_bytes(2, "big") + message


def _encode_etx(message: bytes) -> bytes:
    if ETX in message:
        raise ValueError("message contains ETX; cannot use ETX framing")
    return message + b"\x03"


# One table: framing name -> (decoder class, encoder).
FRAMINGS: dict[str, tuple[type[Decoder], Callable[[bytes], bytes]]] = {
    "stx": (StxDecoder, _encode_stx),
    "len2": (Len2Decoder, _encode_len2),
    "etx": (EtxDecoder, _encode_etx),
}
DEFAULT_FRAMING = "stx"


def check(name: str) -> str:
    """Return ``name`` if it is a known framing, else raise ValueError."""
    if name not in FRAMINGS:
        raise ValueError(f"unknown framing {name!r} (choose from {', '.join(FRAMINGS)})")
    return name


def decoder(name: str, max_size: int = 9999) -> Decoder:
    """A fresh incremental decoder for one connection."""
    return FRAMINGS[check(name)][0](max_size)


def encode(name: str, message: bytes) -> bytes:
    """Wrap one message in the framing ``name``."""
    return FRAMINGS[check(name)][1](message)
