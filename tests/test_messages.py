"""What the pharmacy reads: message lines broken between words, and a line for every reject."""

from __future__ import annotations

from _adapter_helpers import b1, schedule_of
from hypothesis import given
from hypothesis import strategies as st
from test_adjudicate import judge, tx

import ncpdp
from ncpdp.responses import MESSAGE_LINE, wrap


def test_lines_break_between_words():
    assert wrap("PMP: Date Of Birth after the date of service") == [
        "PMP: Date Of Birth after the date of ",
        "service",
    ]
    assert wrap("x" * 50) == ["x" * 40, "x" * 10]  # a word longer than a line is cut


@given(st.lists(st.text("abcXYZ09:", min_size=1, max_size=12), min_size=1, max_size=20))
def test_wrapping_keeps_every_word_whole_and_lines_short(words):
    message = " ".join(words)
    lines = wrap(message)
    assert all(len(line) <= MESSAGE_LINE for line in lines)
    assert "".join(lines) == message  # continued lines join back to the message
    assert all(line.endswith(" ") for line in lines[:-1])  # never inside a word


def test_a_rejected_field_is_named_in_lines_broken_between_words():
    req = b1()
    s = ncpdp.find(req.transactions[0], "07")
    s.fields = [(c, v) for c, v in s.fields if c not in ("DE", "DF", "D5")]
    d = judge(ncpdp.parse(ncpdp.build(req)))
    lines = ncpdp.find(tx(d, 0), "21").get_all("FQ")
    assert lines and all(len(line) <= MESSAGE_LINE for line in lines)
    words = set("".join(lines).split())
    for name in ("Date", "Written", "Days", "Supply"):  # each field named, no word cut
        assert name in words


def test_a_date_of_birth_before_1900_gets_a_message_naming_the_field():
    req = b1()
    s = ncpdp.find(req.segments, "01")
    s.fields = [(c, "18990101" if c == "C4" else v) for c, v in s.fields]
    d = judge(ncpdp.parse(ncpdp.build(req)))
    text = " ".join(f for seg in d.response.segments for c, f in seg.fields if c == "F4")
    assert d.status == "R" and "Date Of Birth" in text and "1899" not in text


def test_a_date_of_service_in_the_future_is_rejected_at_the_counter():
    """The state's validator holds back a future DSP05: the counter must not pay it."""
    import datetime as dt

    from cashcapture.adapter import adjudicate

    req = b1()
    req.header.date_of_service = "20991231"
    data = ncpdp.parse(ncpdp.build(req))
    kwargs = dict(
        priors=[None], schedule_of=schedule_of, pharmacy_known=True, auth_numbers=["A"]
    )
    d = adjudicate.adjudicate(data, latest_service_date=dt.date(2025, 1, 16), **kwargs)
    status = ncpdp.find(tx(d, 0), "21")
    assert d.status == "R" and "15" in status.get_all("FB") and d.actions == []
    assert "Date Of Service" in "".join(status.get_all("FQ"))
    ok = adjudicate.adjudicate(data, latest_service_date=dt.date(2100, 1, 1), **kwargs)
    assert ok.status == "P"
