"""The one D.0 client (blocking and asyncio): answers, clean closes, broken answers."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from cashcapture.adapter import framing
from cashcapture.adapter.client import AsyncClient, Client, ClientError


def _peer(replies: list[bytes]) -> tuple[int, threading.Thread]:
    """A one-connection TCP peer: reads one request per reply, sends the reply's bytes, closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            for reply in replies:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


ANSWER = b"D0B1A" + b"x" * 40


@pytest.mark.parametrize("name", ["stx", "len2", "etx"])
def test_both_clients_get_the_framed_answer_then_none_on_a_clean_close(name):
    port, thread = _peer([framing.encode(name, ANSWER), b""])
    with Client("127.0.0.1", port, name) as c:
        assert c.exchange(b"request") == ANSWER
        assert c.exchange(b"again") is None  # closed before a byte of an answer
    thread.join(5)

    async def run() -> list[bytes | None]:
        port, thread = _peer([framing.encode(name, ANSWER), b""])
        client = await AsyncClient.connect("127.0.0.1", port, name)
        try:
            return [await client.exchange(b"request"), await client.exchange(b"again")]
        finally:
            client.close()
            thread.join(5)

    assert asyncio.run(run()) == [ANSWER, None]


@pytest.mark.parametrize(
    "reply,words",
    [
        (framing.encode("stx", ANSWER)[:10], "closed mid-answer"),
        (b"\x02abcd" + ANSWER, "unreadable answer"),
    ],
)
def test_a_cut_or_unreadable_answer_is_a_client_error(reply, words):
    port, thread = _peer([reply])
    with Client("127.0.0.1", port) as c, pytest.raises(ClientError, match=words):
        c.exchange(b"request")
    thread.join(5)

    async def run() -> None:
        port, thread = _peer([reply])
        client = await AsyncClient.connect("127.0.0.1", port)
        try:
            with pytest.raises(ClientError, match=words):
                await client.exchange(b"request")
        finally:
            client.close()
            thread.join(5)

    asyncio.run(run())
