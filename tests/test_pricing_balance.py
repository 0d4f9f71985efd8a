"""Every paid answer balances (D.0): F6 + F7 + AW + AX + FL + J1 + J4... - F5 - J5 = F9.

The answer pays back each submitted amount as its response field and the
patient pays their sum, the gross amount due; a claim whose amounts do not add
up to its gross is rejected (R9, 430-DU's pricing formula code).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from _adapter_helpers import ROOT, b1, fx, schedule_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncpdp
from cashcapture.adapter import adjudicate
from ncpdp.message import Segment

PAID_PLUS = ("F6", "F7", "AW", "AX", "FL", "J1")
SUBMITTED = ("D9", "DC", "HA", "GE", "E3", "BE")


def judge(req, capture_on=True):
    return adjudicate.adjudicate(
        req,
        priors=[None] * max(1, len(req.transactions)),
        schedule_of=schedule_of,
        pharmacy_known=True,
        auth_numbers=["A1", "A2", "A3", "A4"],
        problems=ncpdp.validate(req),
        capture_on=capture_on,
    )


def money(seg, code) -> Decimal:
    raw = seg.get(code) if seg is not None else None
    return ncpdp.typed(code, raw) if raw else Decimal(0)


def assert_balanced(request, response_bytes: bytes) -> int:
    """Check every paid transaction of a built response; returns how many were paid."""
    response = ncpdp.parse(response_bytes)
    paid = 0
    for req_txn, txn in zip(request.transactions, response.transactions, strict=True):
        if ncpdp.find(txn, "21").get("AN") != "P":
            continue
        paid += 1
        p, c = ncpdp.find(txn, "23"), ncpdp.find(req_txn, "11")
        others = sum((ncpdp.typed("J4", v) for v in p.get_all("J4")), Decimal(0))
        plus = sum((money(p, f) for f in PAID_PLUS), Decimal(0)) + others
        assert plus - money(p, "F5") - money(p, "J5") == money(p, "F9") == 0
        # each amount echoes what was submitted; F5 is the gross
        for sent, back in zip(SUBMITTED, PAID_PLUS, strict=True):
            assert money(p, back) == money(c, sent), (sent, back)
        submitted_others = sum((ncpdp.typed("H9", v) for v in c.get_all("H9")), Decimal(0))
        assert others == submitted_others
        gross = money(c, "DU") if c.get("DU") else money(c, "DQ")
        assert money(p, "F5") == gross
        assert money(p, "FI") + money(p, "FN") == gross
    return paid


def requests_in(folder: Path):
    for path in sorted(folder.glob("*.dat")):
        try:
            msg = ncpdp.parse(path.read_bytes())
        except ncpdp.ParseError:
            continue
        if isinstance(msg, ncpdp.Request) and msg.header.transaction_code in ("B1", "B3"):
            yield path.name, msg


FIXTURE_REQUESTS = [
    *requests_in(ROOT / "fixtures" / "ncpdp"),
    *requests_in(ROOT / "fixtures" / "demo"),
]


@pytest.mark.parametrize("capture_on", [True, False], ids=["cash", "certification"])
@pytest.mark.parametrize(("name", "req"), FIXTURE_REQUESTS, ids=[n for n, _ in FIXTURE_REQUESTS])
def test_every_fixture_paid_answer_balances(name, req, capture_on):
    d = judge(req, capture_on)
    paid = assert_balanced(req, ncpdp.build(d.response))
    if name in ("b1_cash.dat", "cash-controlled.dat", "cash-compound.dat"):
        assert paid >= 1


def test_fixture_set_has_paid_claims():
    paid = sum(assert_balanced(r, ncpdp.build(judge(r).response)) for _, r in FIXTURE_REQUESTS)
    assert paid >= 8


def _with_pricing(req, fields: list[tuple[str, object]]):
    def w(code, v):
        return v if isinstance(v, str) else ncpdp.wire(code, v)

    txn = req.transactions[0]
    txn[:] = [s for s in txn if s.id != "11"] + [Segment("11", [(c, w(c, v)) for c, v in fields])]
    return req


_CENTS = st.integers(0, 9_999_99).map(lambda n: Decimal(n).scaleb(-2))
_QUALIFIERS = st.sampled_from(["01", "02", "03", "04", "09", "99"])


@st.composite
def claims(draw):
    parts = {"D9": draw(_CENTS)}
    for code in SUBMITTED[1:]:
        if draw(st.booleans()):
            parts[code] = draw(_CENTS)
    others = draw(st.lists(st.tuples(_QUALIFIERS, _CENTS), max_size=3))
    gross = sum(parts.values(), Decimal(0)) + sum((v for _, v in others), Decimal(0))
    fields: list[tuple[str, object]] = list(parts.items())
    if others:
        fields.append(("H7", str(len(others))))
        for q, v in others:
            fields += [("H8", q), ("H9", v)]
    fields.append(("DQ", gross))
    omit_du = draw(st.booleans()) and draw(st.booleans())
    if not omit_du:
        fields.append(("DU", gross))
    ndc = draw(st.sampled_from([fx.OXYCODONE_APAP, fx.LISINOPRIL]))
    return _with_pricing(b1(ndc=ndc), fields), gross


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(claims(), st.booleans())
def test_ten_thousand_generated_claims_balance(claim, capture_on):
    req, gross = claim
    d = judge(req, capture_on)
    assert d.status == "P", d.outcomes[0].rejects
    assert assert_balanced(req, ncpdp.build(d.response)) == 1


@settings(max_examples=300, deadline=None, database=None)
@given(claims(), st.integers(-500, 500).filter(bool).map(lambda n: Decimal(n).scaleb(-2)))
def test_amounts_not_adding_up_to_gross_are_rejected_r9(claim, off):
    req, gross = claim
    pricing = ncpdp.find(req.transactions[0], "11")
    if pricing.get("DU") is None or gross + off < 0:
        return
    pricing.fields = [
        (c, ncpdp.wire("DU", gross + off) if c == "DU" else v) for c, v in pricing.fields
    ]
    d = judge(req)
    assert d.status == "R" and d.outcomes[0].rejects == ("R9",) and not d.actions


def test_u_and_c_without_gross_must_add_up_too():
    req = _with_pricing(
        b1(), [("D9", Decimal("20.00")), ("DC", Decimal("2.00")), ("DQ", Decimal("25.00"))]
    )
    d = judge(req)
    assert d.status == "R" and d.outcomes[0].rejects == ("DU",)


def test_negative_amount_is_rejected_with_its_code():
    req = _with_pricing(
        b1(),
        [
            ("D9", Decimal("20.00")),
            ("DC", Decimal("-2.00")),
            ("DQ", Decimal("18.00")),
            ("DU", Decimal("18.00")),
        ],
    )
    d = judge(req)
    assert d.status == "R" and d.outcomes[0].rejects == ("DC",)


@pytest.mark.parametrize(
    ("resp", "req"),
    [
        ("resp_paid.dat", "b1_cash.dat"),
        ("resp_duplicate.dat", "b1_cash.dat"),
        ("resp_paid_4_transactions.dat", "b1_cash_4_transactions.dat"),
    ],
)
def test_response_fixtures_balance(resp, req):
    folder = ROOT / "fixtures" / "ncpdp"
    response = ncpdp.parse((folder / resp).read_bytes())
    request = ncpdp.parse((folder / req).read_bytes())
    priced = [ncpdp.find(t, "23") for t in response.transactions]
    assert all(p is not None for p in priced)
    for p, req_txn in zip(priced, request.transactions, strict=True):
        plus = sum((money(p, f) for f in PAID_PLUS), Decimal(0))
        assert plus - money(p, "F5") == money(p, "F9") == 0
        assert money(p, "F5") == money(ncpdp.find(req_txn, "11"), "DU")
