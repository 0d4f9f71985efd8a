"""The pharmacy side of a D.0 connection: send a framed message, read the framed answer.

One request then one response per connection at a time, as NCPDP over TCP
works. `Client` is blocking (the `send` command, tests), `AsyncClient` runs on
asyncio (the demo, the upstream payer pool, the adapter bench). Both read
through the same `framing` decoder and give the same answers: the frame, None
when the peer closed before a byte of it, or `ClientError`.
"""

from __future__ import annotations

import asyncio
import socket

from cashcapture.adapter import framing

READ_SIZE = 65536


class ClientError(Exception):
    """No usable answer: unreadable, or the peer closed the connection mid-answer."""


def _frame(decoder: framing.Decoder) -> bytes | None:
    frame = decoder.next_frame()
    if isinstance(frame, framing.FrameError):
        raise ClientError(f"unreadable answer: {frame.reason}")
    return frame


def _closed(decoder: framing.Decoder) -> None:
    if decoder.pending:
        raise ClientError("the connection was closed mid-answer")


class Client:
    """One blocking TCP connection in one framing."""

    def __init__(
        self,
        host: str,
        port: int,
        framing_name: str = "stx",
        *,
        timeout: float | None = 10.0,
        max_size: int = 65535,
    ) -> None:
        self.framing = framing_name
        self.decoder = framing.decoder(framing_name, max_size)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: bytes) -> None:
        self.sock.sendall(framing.encode(self.framing, message))

    def receive(self) -> bytes | None:
        """The next answer, or None when the peer closed before sending a byte of it."""
        while (frame := _frame(self.decoder)) is None:
            chunk = self.sock.recv(READ_SIZE)
            if not chunk:
                _closed(self.decoder)
                return None
            self.decoder.feed(chunk)
        return frame

    def exchange(self, message: bytes) -> bytes | None:
        """Send ``message`` and return its answer (None: closed without one)."""
        self.send(message)
        return self.receive()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """One asyncio TCP connection in one framing; open it with `AsyncClient.connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framing_name: str = "stx",
        *,
        max_size: int = 65535,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.framing = framing_name
        self.decoder = framing.decoder(framing_name, max_size)

    @classmethod
    async def connect(
        cls, host: str, port: int, framing_name: str = "stx", *, max_size: int = 65535
    ) -> AsyncClient:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, framing_name, max_size=max_size)

    @property
    def pending(self) -> int:
        """Bytes received past the last answer (a clean connection has none)."""
        return self.decoder.pending

    def send_raw(self, data: bytes) -> None:
        """Queue bytes already framed (a benchmark's pre-built frames)."""
        self.writer.write(data)

    async def receive(self) -> bytes | None:
        """The next answer, or None when the peer closed before sending a byte of it."""
        while (frame := _frame(self.decoder)) is None:
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                _closed(self.decoder)
                return None
            self.decoder.feed(chunk)
        return frame

    async def exchange(self, message: bytes) -> bytes | None:
        """Send ``message`` and return its answer (None: closed without one)."""
        self.writer.write(framing.encode(self.framing, message))
        await self.writer.drain()
        return await self.receive()

    def close(self) -> None:
        self.writer.close()
