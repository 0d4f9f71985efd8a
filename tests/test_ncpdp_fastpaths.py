"""The codec's fast paths answer exactly as its slow paths (which name the problems)."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest
from _ncpdp_helpers import REQUEST_FIXTURES, fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncpdp
from ncpdp import BuildError, Segment

V = sys.modules["ncpdp.validate"]  # the module (ncpdp.validate is the function)


class _AlwaysSlow(dict):
    """A fast-check table that sends every segment to the field-by-field path."""

    def __missing__(self, seg_id: str):
        return V._NEVER


# Values that fit, break or empty a field's format, plus the separators.
raw_value = st.one_of(
    st.text("0123456789", max_size=12),
    st.sampled_from(["20240229", "20230229", "20241301", "", "{", "0000125}", "27.00"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=15),
    st.sampled_from(["\x1c", "A\x1eB"]),
)
edit = st.tuples(
    st.integers(0, 30),  # which segment (modulo the count)
    st.sampled_from(["drop", "set", "add", "empty"]),
    st.integers(0, 40),  # which field (modulo the count)
    st.sampled_from(sorted(ncpdp.FIELDS)),
    raw_value,
)


def _edited(name: str, edits, code: str | None):
    m = ncpdp.parse(fixture(name))
    if code is not None:
        m.header.transaction_code = code
    segs = [s for g in (m.segments, *m.transactions) for s in g]
    for k, op, i, new_code, raw in edits:
        s = segs[k % len(segs)]
        fields = s.fields
        j = i % (len(fields) or 1)
        if op == "drop" and fields:
            del fields[j]
        elif op == "set" and fields:
            fields[j] = (fields[j][0], raw)
        elif op == "empty" and fields:
            fields[j] = (fields[j][0], "")
        else:
            fields.insert(j, (new_code, raw))
    return m


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(REQUEST_FIXTURES),
    st.lists(edit, max_size=4),
    st.sampled_from([None, "B1", "B2", "B3", "E1", "N1", "Z9"]),
)
def test_validate_fast_path_agrees_with_the_slow_path(name, edits, code):
    fast = ncpdp.validate(_edited(name, edits, code))
    saved = V._FAST
    V._FAST = {None: _AlwaysSlow()}
    try:
        slow = ncpdp.validate(_edited(name, edits, code))
    finally:
        V._FAST = saved
    assert fast == slow


@pytest.mark.parametrize("name", REQUEST_FIXTURES)
def test_reading_and_validating_keep_the_wire_text(name):
    m = ncpdp.parse(fixture(name))
    for s in [s for g in (m.segments, *m.transactions) for s in g]:
        s.get_all("EC"), s.codes(), s == Segment(s.id, s.codes())
    assert ncpdp.validate(m) == []
    kept = [s for g in (m.segments, *m.transactions) for s in g if s._raw is not None]
    assert len(kept) == len(m.segments) + sum(map(len, m.transactions))
    assert ncpdp.build(m) == fixture(name)


def test_fields_hands_out_the_list_and_build_follows_its_changes():
    m = ncpdp.parse(fixture("b1_cash.dat"))
    claim = ncpdp.find(m.transactions[0], "07")
    fields = claim.fields
    fields.append(("Q9", "X"))
    assert b"\x1cQ9X\x1e" in ncpdp.build(m)
    fields.pop()
    assert ncpdp.build(m) == fixture("b1_cash.dat")


@pytest.mark.parametrize(
    "fields",
    [[("CA", "x", "y")], [("CA",)], [("C", "AB"), ("CAB", "")], [("CA", "x"), ("CB", None)]],
)
def test_build_refuses_pairs_that_are_not_two_strings(fields):
    m = ncpdp.parse(fixture("b1_cash.dat"))
    m.segments.append(Segment("01", fields))
    with pytest.raises(BuildError):
        ncpdp.build(m)


@pytest.mark.parametrize(
    "code, raw, text",
    [
        ("DU", "0000000}", "0.00"),  # a negative zero reads as 0
        ("DU", "0000125}", "-12.50"),
        ("DU", "{", "0.00"),
        ("E7", "0000030000", "30.000"),
        ("E7", "0", "0.000"),
    ],
)
def test_typed_decimals_keep_their_exponent(code, raw, text):
    value = ncpdp.typed(code, raw)
    assert isinstance(value, Decimal) and str(value) == text


@pytest.mark.parametrize(
    "code, raw", [("DU", "12_5{"), ("E7", " 30"), ("E7", "3E2"), ("C4", "2024-3-1")]
)
def test_typed_refuses_what_decimal_or_dates_would_read_loosely(code, raw):
    with pytest.raises(ValueError):
        ncpdp.typed(code, raw)
