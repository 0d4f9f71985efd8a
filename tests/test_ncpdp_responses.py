"""Response builders: statuses, reject codes, messages, pricing, and they round trip."""

from __future__ import annotations

from decimal import Decimal

import pytest
from _ncpdp_helpers import fixture

import ncpdp
from ncpdp import find, responses
from ncpdp.responses import Answer, Pricing


def req(name: str):
    return ncpdp.parse(fixture(name))


def round_trip(resp):
    data = ncpdp.build(resp)
    back = ncpdp.parse(data)
    assert back == resp and ncpdp.build(back) == data
    return back


def test_paid_cash_patient_pays_all():
    r = round_trip(
        responses.paid(
            req("b1_cash.dat"),
            [Pricing.patient_pays_all(Decimal("27.00"))],
            authorization_number="AUTH1",
            messages=["CAPTURED"],
        )
    )
    assert r.header.header_response_status == "A" and r.header.transaction_count == 1
    assert r.header.service_provider_id == "1234567893     "
    assert r.header.date_of_service == "20240315" and r.header.transaction_code == "B1"
    status, claim, price = r.transactions[0]
    assert (status.id, claim.id, price.id) == ("21", "22", "23")
    assert status.get("AN") == "P" and status.get("F3") == "AUTH1"
    assert status.get("UF") == "01" and status.get("UH") == "01" and status.get("FQ") == "CAPTURED"
    assert claim.fields == [("EM", "1"), ("D2", "000001234567")]
    assert ncpdp.typed("F5", price.get("F5")) == Decimal("27.00")
    assert ncpdp.typed("F9", price.get("F9")) == 0 and ncpdp.typed("F7", price.get("F7")) == 0


def test_each_transaction_answers_the_request_transaction_at_its_index():
    m = req("b1_cash_4_transactions.dat")
    r = round_trip(
        responses.respond(
            m,
            [
                Answer("P", pricing=Pricing.patient_pays_all(Decimal("1.00"))),
                Answer("R", reject_codes=["21"]),
                Answer("C"),
                Answer("D"),
            ],
        )
    )
    assert r.header.transaction_count == 4
    assert [find(t, "21").get("AN") for t in r.transactions] == ["P", "R", "C", "D"]
    assert [find(t, "22").get("D2") for t in r.transactions] == [
        find(t, "07").get("D2") for t in m.transactions
    ]
    with pytest.raises(ValueError):
        responses.respond(m, [Answer("P")])


def test_rejected_repeats_reject_codes_and_caps_them():
    m = req("b1_cash.dat")
    r = round_trip(
        responses.rejected(m, [["CA", "CB", "09", "CA", "CM", "CN", "CO"]], messages=["X" * 45])
    )
    st = find(r.transactions[0], "21")
    assert r.header.header_response_status == "A" and st.get("AN") == "R"
    assert st.get("FA") == "05" and st.get_all("FB") == ["CA", "CB", "09", "CM", "CN"]
    assert st.get_all("FQ") == ["X" * 40, "X" * 5] and st.get("UG") == "+"
    assert st.get("UF") == "02" and st.get_all("UH") == ["01", "02"]


def test_transmission_rejected_has_header_status_r():
    m = req("b1_cash_4_transactions.dat")
    r = round_trip(responses.transmission_rejected(m, ["01"], message="BIN NOT SUPPORTED"))
    assert r.header.header_response_status == "R" and r.header.transaction_count == 1
    assert find(r.segments, "20").get("F4") == "BIN NOT SUPPORTED"
    assert find(r.transactions[0], "21").get_all("FB") == ["01"]
    from_header = responses.transmission_rejected(m.header, ["01"], message="BIN NOT SUPPORTED")
    assert from_header == r


@pytest.mark.parametrize("of, status", [("P", "D"), ("C", "Q"), ("A", "S")])
def test_duplicates(of, status):
    r = round_trip(responses.duplicate(req("b1_cash.dat"), of=of))
    assert find(r.transactions[0], "21").get("AN") == status


def test_captured_and_approved():
    assert (
        find(round_trip(responses.captured(req("b1_cash.dat"))).transactions[0], "21").get("AN")
        == "C"
    )
    r = round_trip(responses.approved(req("b2_reversal.dat")))
    assert find(r.transactions[0], "21").get("AN") == "A" and r.header.transaction_code == "B2"
    e1 = req("e1_eligibility.dat")
    e1.segments += e1.transactions.pop()  # no groups at all: still one answer
    r = round_trip(responses.approved(e1))
    assert r.header.transaction_count == 1 and len(r.transactions) == 1


def test_from_problems():
    m = req("b1_cash_4_transactions.dat")
    find(m.transactions[2], "07").fields = [
        (c, v) for c, v in find(m.transactions[2], "07").fields if c != "D7"
    ]
    problems = ncpdp.validate(m)
    assert responses.codes_by_transaction(m, problems) == [[], [], ["21"], []]
    r = round_trip(responses.from_problems(m, problems))
    assert [find(t, "21").get_all("FB") for t in r.transactions] == [["85"], ["85"], ["21"], ["85"]]
    m.header.bin = "ABCDEF"
    r = responses.from_problems(m, ncpdp.validate(m))
    assert r.header.header_response_status == "R"
    assert find(r.transactions[0], "21").get("FB") == "01"


def test_fixture_responses_say_what_their_names_say():
    assert find(req("resp_paid.dat").transactions[0], "21").get("AN") == "P"
    assert find(req("resp_rejected.dat").transactions[0], "21").get_all("FB") == ["CA", "CB", "09"]
    assert find(req("resp_duplicate.dat").transactions[0], "21").get("AN") == "D"
    assert find(req("resp_approved.dat").transactions[0], "21").get("AN") == "A"
    assert find(req("resp_captured.dat").transactions[0], "21").get("AN") == "C"
