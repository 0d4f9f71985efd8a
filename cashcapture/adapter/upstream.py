"""Forward insured claims to their payer, bytes unchanged, and bring the answer back.

One pool of persistent connections per payer; one exchange at a time on a
connection (NCPDP over TCP is request then response). A connection that timed
out or failed is dropped, never reused: a late answer must not be taken for
the next claim's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cashcapture.adapter import framing
from cashcapture.adapter.config import PayerRoute

TIME_OUT = "95"  # Time Out
PAYER_UNAVAILABLE = "97"  # Payer Unavailable: connected, but no usable answer
CONNECTION_DOWN = "98"  # Connection To Payer Is Down: could not connect


class UpstreamError(Exception):
    """The payer gave no answer; ``reject_code`` is what the pharmacy gets instead."""

    def __init__(self, reject_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reject_code = reject_code
        self.reason = reason


class _Closed(Exception):
    """The payer closed the connection before sending a byte of its answer."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    decoder: framing.Decoder

    def close(self) -> None:
        self.writer.close()


class Payer:
    """Connection pool and exchange for one payer route."""

    def __init__(self, route: PayerRoute, *, max_size: int = 65535, max_idle: int = 32) -> None:
        self.route = route
        self.max_size = max_size
        self.max_idle = max_idle
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(self.route.host, self.route.port)
        except OSError as exc:
            raise UpstreamError(CONNECTION_DOWN, f"cannot connect: {exc.strerror or exc}") from None
        return _Conn(reader, writer, framing.decoder(self.route.framing, self.max_size))

    async def _exchange(self, conn: _Conn, data: bytes) -> bytes:
        conn.writer.write(framing.encode(self.route.framing, data))
        await conn.writer.drain()
        while True:
            frame = conn.decoder.next_frame()
            if isinstance(frame, framing.FrameError):
                raise UpstreamError(PAYER_UNAVAILABLE, f"unreadable answer: {frame.reason}")
            if frame is not None:
                return frame
            chunk = await conn.reader.read(65536)
            if not chunk:
                if conn.decoder.pending == 0:
                    raise _Closed
                raise UpstreamError(PAYER_UNAVAILABLE, "payer closed the connection mid-answer")
            conn.decoder.feed(chunk)

    async def send(self, data: bytes) -> bytes:
        """The payer's response bytes, or UpstreamError (95 on timeout, 97, 98)."""
        try:
            async with asyncio.timeout(self.route.timeout):
                while True:
                    reused = bool(self._idle)
                    conn = self._idle.pop() if reused else await self._connect()
                    try:
                        answer = await self._exchange(conn, data)
                        break
                    except _Closed:
                        conn.close()
                        if not reused:
                            raise UpstreamError(
                                PAYER_UNAVAILABLE, "payer closed the connection"
                            ) from None
                        # a pooled connection the payer had closed: try a fresh one
                    except BaseException:
                        conn.close()
                        raise
        except TimeoutError:
            raise UpstreamError(TIME_OUT, f"no answer within {self.route.timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise UpstreamError(PAYER_UNAVAILABLE, f"connection failed: {exc}") from None
        if len(self._idle) < self.max_idle and conn.decoder.pending == 0:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
