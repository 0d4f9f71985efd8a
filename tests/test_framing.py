"""Framing decoders: pure, incremental, every framing, any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cashcapture.adapter import framing
from cashcapture.adapter.framing import FrameError

# NCPDP messages never contain STX/ETX; keep generated messages realistic.
messages = st.lists(
    st.binary(min_size=1, max_size=300).map(
        lambda b: b.replace(b"\x03", b"X").replace(b"\x02", b"Y")
    ),
    min_size=1,
    max_size=6,
)


def _decode_all(dec: framing.Decoder) -> list[bytes | FrameError]:
    out: list[bytes | FrameError] = []
    while (frame := dec.next_frame()) is not None:
        out.append(frame)
    return out


@pytest.mark.parametrize("name", sorted(framing.FRAMINGS))
@settings(max_examples=60, deadline=None)
@given(msgs=messages, cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=40))
def test_any_chunking_yields_the_same_messages(name, msgs, cuts):
    stream = b"".join(framing.encode(name, m) for m in msgs)
    dec = framing.decoder(name, max_size=1000)
    got: list[bytes | FrameError] = []
    pos = 0
    for cut in cuts:
        dec.feed(stream[pos : pos + cut])
        pos += cut
        got += _decode_all(dec)
    dec.feed(stream[pos:])
    got += _decode_all(dec)
    assert got == msgs
    assert dec.pending == 0


def test_stx_wire_layout():
    assert framing.encode("stx", b"ABC") == b"\x020003ABC\x03"
    assert framing.encode("len2", b"ABC") == b"\x00\x03ABC"
    assert framing.encode("etx", b"ABC") == b"ABC\x03"


@pytest.mark.parametrize("name", sorted(framing.FRAMINGS))
def test_partial_frame_waits(name):
    wire = framing.encode(name, b"0123456789")
    dec = framing.decoder(name)
    dec.feed(wire[:-1])
    assert dec.next_frame() is None
    dec.feed(wire[-1:])
    assert dec.next_frame() == b"0123456789"


def test_stx_missing_stx_is_an_error_without_payload():
    dec = framing.decoder("stx")
    dec.feed(b"0003ABC\x03")
    err = dec.next_frame()
    assert isinstance(err, FrameError) and err.payload is None
    # the decoder is dead afterwards: nothing more comes out
    dec.feed(framing.encode("stx", b"ABC"))
    assert dec.next_frame() is None


def test_stx_bad_length_digits():
    dec = framing.decoder("stx")
    dec.feed(b"\x0200x3ABC\x03")
    err = dec.next_frame()
    assert isinstance(err, FrameError) and "4 ASCII digits" in err.reason


def test_stx_missing_etx_keeps_payload_for_a_reject():
    dec = framing.decoder("stx")
    dec.feed(b"\x020003ABCZ")
    err = dec.next_frame()
    assert isinstance(err, FrameError)
    assert err.payload == b"ABC"


@pytest.mark.parametrize("name", ["stx", "len2"])
def test_length_over_maximum_is_rejected_before_reading_body(name):
    dec = framing.decoder(name, max_size=100)
    dec.feed(framing.encode(name, b"x" * 101)[:6])
    err = dec.next_frame()
    assert isinstance(err, FrameError) and "exceeds maximum" in err.reason


def test_etx_without_terminator_past_maximum():
    dec = framing.decoder("etx", max_size=10)
    dec.feed(b"x" * 10)
    assert dec.next_frame() is None
    dec.feed(b"x")
    assert isinstance(dec.next_frame(), FrameError)


def test_len2_zero_length_and_unknown_framing():
    dec = framing.decoder("len2")
    dec.feed(b"\x00\x00")
    assert isinstance(dec.next_frame(), FrameError)
    with pytest.raises(ValueError, match="unknown framing"):
        framing.decoder("mllp")


def test_encode_refuses_what_cannot_be_framed():
    with pytest.raises(ValueError):
        framing.encode("stx", b"x" * 10000)
    with pytest.raises(ValueError):
        framing.encode("etx", b"a\x03b")
