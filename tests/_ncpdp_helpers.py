"""Shared bits of the ncpdp tests: fixture files, hypothesis strategies, mutations."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import strategies as st

import ncpdp
from ncpdp import Request, RequestHeader, Response, ResponseHeader, Segment

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ncpdp"
SEPARATORS = "\x1c\x1d\x1e"
REQUEST_FIXTURES = [
    "b1_cash.dat",
    "b1_insured.dat",
    "b1_cash_4_transactions.dat",
    "b1_compound.dat",
    "b2_reversal.dat",
    "b3_rebill.dat",
    "e1_eligibility.dat",
]
RESPONSE_FIXTURES = [
    "resp_paid.dat",
    "resp_rejected.dat",
    "resp_duplicate.dat",
    "resp_approved.dat",
]


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.dat"))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# Any latin-1 character but the three separators may appear in ids and values.
wire_char = st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters=SEPARATORS)
two = st.text(wire_char, min_size=2, max_size=2)
value = st.text(wire_char, max_size=12)
known_code = st.sampled_from(sorted(ncpdp.FIELDS))
code = st.one_of(known_code, two)
seg_id = st.one_of(st.sampled_from(sorted(ncpdp.SEGMENTS)), two)
segment = st.builds(Segment, seg_id, st.lists(st.tuples(code, value), max_size=8))


def fixed(n: int) -> st.SearchStrategy[str]:
    return st.text(wire_char, min_size=n, max_size=n)


request_header = st.builds(
    RequestHeader,
    bin=fixed(6).filter(lambda b: not b.startswith("D0")),
    version=fixed(2),
    transaction_code=st.one_of(
        st.sampled_from(["B1", "B2", "B3", "E1", "N1", "C1", "P1", "S1"]), fixed(2)
    ),
    pcn=fixed(10),
    transaction_count=st.integers(0, 9),
    service_provider_id_qualifier=fixed(2),
    service_provider_id=fixed(15),
    date_of_service=fixed(8),
    software_vendor_cert_id=fixed(10),
)
response_header = st.builds(
    ResponseHeader,
    version=st.just("D0"),
    transaction_code=fixed(2),
    transaction_count=st.integers(0, 9),
    header_response_status=fixed(1),
    service_provider_id_qualifier=fixed(2),
    service_provider_id=fixed(15),
    date_of_service=fixed(8),
)
segments = st.lists(segment, max_size=4)
transactions = st.lists(st.lists(segment, min_size=1, max_size=4), max_size=4)
message = st.one_of(
    st.builds(Request, request_header, segments, transactions),
    st.builds(Response, response_header, segments, transactions),
)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random edits: flip, insert (often a separator), delete, truncate, splice."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b.insert(pos, rng.choice(b"\x1c\x1d\x1e\x03\x02AM0"))
        elif op == 2 and b:
            del b[min(pos, len(b) - 1)]
        elif op == 3:
            del b[pos:]
        elif op == 4:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:
            other = rng.randrange(len(b) + 1)
            b[pos:pos] = b[min(pos, other) : max(pos, other)][:20]
    return bytes(b)


def check_mutant(data: bytes) -> bool:
    """Parse a mutant: ParseError or a message that builds back to the same bytes.

    Returns True if it parsed. Any other exception propagates (a bug)."""
    try:
        msg = ncpdp.parse(data)
    except ncpdp.ParseError as e:
        assert isinstance(e.offset, int) and 0 <= e.offset <= len(data)
        return False
    assert ncpdp.build(msg) == data
    return True
