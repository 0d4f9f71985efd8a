"""Round trip is law: hypothesis over generated messages and bytes; bounded fuzz."""

from __future__ import annotations

import random
from decimal import Decimal

from _ncpdp_helpers import check_mutant, fixture_files, message, mutate, segment, value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncpdp


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(message)
def test_parse_build_parse(msg):
    data = ncpdp.build(msg)
    back = ncpdp.parse(data)
    assert back == msg
    assert ncpdp.build(back) == data
    assert ncpdp.from_json(ncpdp.to_json(back)) == msg


@st.composite
def wire_bytes(draw) -> bytes:
    """Well-formed bytes written directly from the grammar (not via build)."""

    def seg_bytes(s):
        return "\x1e\x1cAM" + s.id + "".join("\x1c" + c + v for c, v in s.fields)

    is_response = draw(st.booleans())
    if is_response:
        head = "D0" + draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=2, max_size=2)
        )
        head += str(draw(st.integers(0, 9))) + draw(
            st.text("AR 0123456789", min_size=26, max_size=26)
        )
    else:
        head = draw(st.text("0123456789", min_size=6, max_size=6)) + "D0B1"
        head += draw(st.text("ABC ", min_size=10, max_size=10)) + str(draw(st.integers(0, 9)))
        head += draw(st.text("0123456789 ", min_size=35, max_size=35))
    body = "".join(seg_bytes(s) for s in draw(st.lists(segment, max_size=3)))
    for t in draw(st.lists(st.lists(segment, min_size=1, max_size=3), max_size=4)):
        body += "\x1d" + "".join(seg_bytes(s) for s in t)
    return (head + body).encode("latin-1")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(wire_bytes())
def test_build_parse_is_identity_on_bytes(data):
    assert ncpdp.build(ncpdp.parse(data)) == data


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_parse_error(data):
    check_mutant(data)


@given(
    st.sampled_from([c for c, f in ncpdp.FIELDS.items() if f.kind == "money"]),
    st.integers(-(10**6), 10**6),
)
def test_money_round_trip(code, cents):
    f = ncpdp.FIELDS[code]
    units = cents % (10 ** (f.max_length)) * (1 if cents >= 0 else -1)
    v = Decimal(units).scaleb(-f.scale)
    raw = ncpdp.wire(code, v)
    assert len(raw) == f.max_length
    assert ncpdp.typed(code, raw) == v


@given(st.sampled_from([c for c, f in ncpdp.FIELDS.items() if f.kind == "text"]), value)
def test_text_round_trip(code, v):
    v = v[: ncpdp.FIELDS[code].max_length]
    assert ncpdp.typed(code, ncpdp.wire(code, v)) == v


def test_bounded_fuzz_of_fixtures_only_raises_parse_error():
    """20,000 mutants of the fixtures (bench/fuzz.py runs a million)."""
    rng = random.Random(20240315)
    seeds = [p.read_bytes() for p in fixture_files()]
    parsed = 0
    for _ in range(20_000):
        parsed += check_mutant(mutate(rng.choice(seeds), rng))
    # both outcomes occur: the fuzz reaches the parser's accept and reject paths
    assert 1_000 < parsed < 19_000
