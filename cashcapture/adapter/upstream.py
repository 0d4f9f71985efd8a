"""Forward insured claims to their payer, bytes unchanged, and bring the answer back.

One pool of persistent connections per payer; one exchange at a time on a
connection (NCPDP over TCP is request then response). A connection that timed
out or failed is dropped, never reused: a late answer must not be taken for
the next claim's.
"""

from __future__ import annotations

import asyncio

from cashcapture.adapter.client import AsyncClient, ClientError
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


class Payer:
    """Connection pool and exchange for one payer route."""

    def __init__(self, route: PayerRoute, *, max_size: int = 65535, max_idle: int = 32) -> None:
        self.route = route
        self.max_size = max_size
        self.max_idle = max_idle
        self._idle: list[AsyncClient] = []

    async def _connect(self) -> AsyncClient:
        try:
            return await AsyncClient.connect(
                self.route.host, self.route.port, self.route.framing, max_size=self.max_size
            )
        except OSError as exc:
            raise UpstreamError(CONNECTION_DOWN, f"cannot connect: {exc.strerror or exc}") from None

    async def send(self, data: bytes) -> bytes:
        """The payer's response bytes, or UpstreamError (95 on timeout, 97, 98)."""
        try:
            async with asyncio.timeout(self.route.timeout):
                while True:
                    reused = bool(self._idle)
                    conn = self._idle.pop() if reused else await self._connect()
                    try:
                        answer = await conn.exchange(data)
                    except ClientError as exc:
                        conn.close()
                        raise UpstreamError(PAYER_UNAVAILABLE, f"payer: {exc}") from None
                    except BaseException:
                        conn.close()
                        raise
                    if answer is not None:
                        break
                    conn.close()
                    if not reused:
                        raise UpstreamError(PAYER_UNAVAILABLE, "payer closed the connection")
                    # a pooled connection the payer had closed: try a fresh one
        except TimeoutError:
            raise UpstreamError(TIME_OUT, f"no answer within {self.route.timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise UpstreamError(PAYER_UNAVAILABLE, f"connection failed: {exc}") from None
        if len(self._idle) < self.max_idle and conn.pending == 0:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
