"""The adapter's hot-path shortcuts give the same answers as the plain ways.

capture: field values read from each segment's wire text in one split (first
occurrence wins, across segments in order), dates read once and cached.
"""

from __future__ import annotations

import datetime as dt

import pytest
from _adapter_helpers import b1, fx

import ncpdp
from cashcapture import adjudicate, capture
from ncpdp import Segment


def _plain_values(segments) -> dict[str, str]:
    """The plain reading: every field's stripped value, first occurrence wins."""
    out: dict[str, str] = {}
    for seg in segments:
        for code, raw in seg.fields:
            out.setdefault(code, raw.strip())
    return out


def test_wire_values_first_occurrence_parsed_and_built_alike():
    seg = Segment("07", [("D2", " 12 "), ("D3", "01"), ("D2", "99"), ("D6", "")])
    parsed = ncpdp.parse(ncpdp.build(b1()))
    assert capture.wire_values(seg) == {"D2": " 12 ", "D3": "01", "D6": ""}
    for s in parsed.transactions[0] + parsed.segments:
        twin = Segment(s.id, s.fields)  # built in memory from the parsed fields
        assert capture.wire_values(s) == capture.wire_values(twin)
        assert capture.wire_values(s) == dict(reversed(s.fields))
    assert capture.wire_values(Segment("04")) == {}


def test_first_values_mapping_strips_and_keeps_first_segment():
    segs = [Segment("07", [("D6", " 2 "), ("DE", "x")]), Segment("01", [("DE", "y"), ("CX", "02")])]
    raw: dict[str, str] = {}
    for s in reversed(segs):
        raw.update(capture.wire_values(s))
    values = capture.FirstValues(raw)
    assert dict(values) == _plain_values(segs) == {"D6": "2", "DE": "x", "CX": "02"}
    assert values.get("CX") == "02" and values.get("ZZ", "-") == "-" and values["D6"] == "2"
    with pytest.raises(KeyError):
        values["ZZ"]
    assert len(values) == 3


def _as_tuples(ex: capture.Extracted):
    return ex.values, [(p.reject, p.field, p.reason) for p in ex.problems], ex.ingredients


@pytest.mark.parametrize("required", [True, False])
def test_extract_fill_same_on_parsed_and_in_memory_claims(required):
    for make in (fx.b1_cash, fx.b1_cash_4, fx.b1_compound, fx.b3_rebill, fx.e1_eligibility):
        built = make()
        parsed = ncpdp.parse(ncpdp.build(built))
        for i in range(len(built.transactions)):
            dos = built.header.date_of_service
            a = capture.extract_fill(dos, adjudicate.tx_segments(built, i), required=required)
            b = capture.extract_fill(dos, adjudicate.tx_segments(parsed, i), required=required)
            assert _as_tuples(a) == _as_tuples(b)
            assert capture.product_ndcs(adjudicate.tx_segments(built, i)) == (
                capture.product_ndcs(adjudicate.tx_segments(parsed, i))
            )


def test_extract_fill_repeated_segment_ids_first_value_wins():
    req = b1()
    claim = req.transactions[0][0]
    days = claim.get("D5")
    first = Segment("07", [(c, v) for c, v in claim.fields if c != "D5"])
    second = Segment("07", [("D5", days), ("D3", "07")])  # D5 only here; D3 in both
    rest = [*req.transactions[0][1:], *req.segments]
    segs = [first, second, *rest]
    ex = capture.extract_fill(req.header.date_of_service, segs)
    assert ex.problems == []
    assert ex.values["days_supply"] == int(days)
    assert ex.values["fill_number"] == int(claim.get("D3"))
    # a field of the message-level segments that an earlier segment also carries
    early = Segment("07", [*first.fields, ("CX", "02"), ("D5", days)])
    ex = capture.extract_fill(req.header.date_of_service, [early, *rest])
    patient_state = ncpdp.find(req.segments, "01").get("CO")
    assert ex.values["patient_id_jurisdiction"] == patient_state  # CX 02 read from 07


def test_date_cache_returns_dates_and_refuses_bad_ones_every_time():
    assert capture._date("20240315") == dt.date(2024, 3, 15)
    assert capture._date("20240315") is capture._date("20240315")
    for _ in range(2):
        with pytest.raises(capture.Invalid):
            capture._date("20241315")
