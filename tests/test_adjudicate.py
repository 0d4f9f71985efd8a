"""Cash adjudication as pure functions over fixture claims: no socket, no database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from _adapter_helpers import ROOT, b1, b2, b3, fx, load, schedule_of

import ncpdp
from cashcapture.adapter import adjudicate, capture
from cashcapture.adapter.adjudicate import Prior


def judge(req, priors=(), known=True):
    return adjudicate.adjudicate(
        req,
        priors=list(priors),
        schedule_of=schedule_of,
        pharmacy_known=known,
        auth_numbers=[f"AUTH{i}" for i in range(4)],
        problems=ncpdp.validate(req),
    )


def tx(decision, i=0):
    return decision.response.transactions[i]


def field(decision, seg, code, i=0):
    return ncpdp.find(tx(decision, i), seg).get(code)


def test_b1_cash_controlled_is_paid_patient_pays_all_and_captured():
    d = judge(ncpdp.parse(load("b1_cash.dat")))
    assert d.status == "P" and d.response.header.header_response_status == "A"
    assert field(d, "21", "F3") == "AUTH0"
    assert ncpdp.typed("F5", field(d, "23", "F5")) == Decimal("27.00")  # gross amount due
    assert ncpdp.typed("F9", field(d, "23", "F9")) == 0
    assert ncpdp.typed("F7", field(d, "23", "F7")) == Decimal("2.50")  # DC echoed
    assert "captured for PMP" in field(d, "21", "FQ")
    [action] = d.actions
    assert action.kind == "insert"
    v = action.values
    assert (v["rx_number"], v["fill_number"], v["ndc"]) == ("1234567", 0, fx.OXYCODONE_APAP)
    assert v["patient_gender"] == "F" and v["patient_id_qualifier"] == "06"  # driver's license
    assert v["prescriber_dea"] == "AB1234563" and v["schedule"] == "CII"
    assert v["quantity"] == Decimal("30") and v["payment_type"] == "01"


def test_usual_and_customary_when_gross_absent():
    req = b1()
    pricing = ncpdp.find(req.transactions[0], "11")
    pricing.fields = [(c, v) for c, v in pricing.fields if c != "DU"]
    d = judge(req)
    assert d.status == "P"
    assert ncpdp.typed("F5", field(d, "23", "F5")) == Decimal("27.00")


def test_non_controlled_cash_claim_is_paid_not_captured():
    d = judge(b1(ndc=fx.LISINOPRIL))
    assert d.status == "P" and d.actions == []
    assert "not captured" in field(d, "21", "FQ")


def test_four_transactions_each_judged_on_its_own():
    req = ncpdp.parse(load("b1_cash_4_transactions.dat"))
    # transaction 2 (alprazolam) loses its prescriber DEA: only it is rejected
    presc = ncpdp.find(req.transactions[1], "03")
    presc.fields = [(c, v) for c, v in presc.fields if c != "DB"]
    d = judge(req)
    assert [o.status for o in d.outcomes] == ["P", "R", "P", "P"]
    assert ncpdp.find(tx(d, 1), "21").get_all("FB") == ["25"]
    assert [a.transaction for a in d.actions] == [0, 2]  # lisinopril (3) paid, not captured
    assert d.response.header.transaction_count == 4


@pytest.mark.parametrize(
    ("seg", "code", "value", "reject"),
    [
        ("01", "CB", None, "CB"),
        ("01", "CA", None, "CA"),
        ("01", "CM", "PO BOX 12", "CM"),
        ("01", "CM", "P.O. Box 7", "CM"),
        ("01", "CP", "4050", "CP"),
        ("01", "C4", None, "09"),
        ("01", "C4", "20990101", "09"),
        ("01", "C5", None, "10"),
        ("01", "CY", None, "CY"),
        ("01", "CO", "XX", "CO"),
        ("07", "DE", None, "28"),
        ("07", "DF", None, "29"),
        ("07", "D5", "000", "19"),
        ("03", "DB", "AB1234567", "25"),  # bad check digit
        ("03", "EZ", "01", "EZ"),  # an NPI where the PMP needs the DEA
    ],
)
def test_pmp_field_missing_or_invalid_rejects_with_its_code(seg, code, value, reject):
    req = b1()
    where = req.segments if seg == "01" else req.transactions[0]
    s = ncpdp.find(where, seg)
    if value is None:
        s.fields = [(c, v) for c, v in s.fields if c != code]
    else:
        s.fields = [(c, value if c == code else v) for c, v in s.fields]
    d = judge(req)
    assert d.status == "R"
    assert reject in ncpdp.find(tx(d, 0), "21").get_all("FB")
    text = " ".join(ncpdp.find(tx(d, 0), "21").get_all("FQ"))
    assert ncpdp.field_name(code).split()[0] in text  # the message names the field
    if value is not None:
        assert value not in text  # never the value
    assert d.actions == []


def test_missing_pmp_field_on_non_controlled_claim_is_still_paid():
    req = b1(ndc=fx.LISINOPRIL)
    pat = ncpdp.find(req.segments, "01")
    pat.fields = [(c, v) for c, v in pat.fields if c not in ("CM", "C4")]
    assert judge(req).status == "P"


def test_unregistered_pharmacy_rejected_for_controlled_only():
    assert rejects_of(judge(b1(), known=False)) == ["50"]
    assert judge(b1(ndc=fx.LISINOPRIL), known=False).status == "P"


def rejects_of(d, i=0):
    return ncpdp.find(tx(d, i), "21").get_all("FB")


def _prior_of(req, state="new"):
    first = judge(req)
    return first, Prior(state, ncpdp.build(req), ncpdp.build(first.response))


def test_identical_retransmission_is_duplicate_with_the_stored_response():
    first, prior = _prior_of(b1())
    again = judge(b1(), [prior])
    assert again.status == "D" and again.actions == []
    expected = ncpdp.build(first.response).replace(b"\x1cANP", b"\x1cAND")
    assert ncpdp.build(again.response) == expected


def test_non_controlled_identical_claim_answered_before_is_duplicate():
    first, earlier = _prior_of(b1(ndc=fx.LISINOPRIL), "answered")
    again = judge(b1(ndc=fx.LISINOPRIL), [earlier])
    assert again.status == "D" and again.actions == []
    expected = ncpdp.build(first.response).replace(b"\x1cANP", b"\x1cAND")
    assert ncpdp.build(again.response) == expected
    # an identical claim rejected before (say the store then failed) is judged anew
    rejected = ncpdp.responses.transmission_rejected(b1(ndc=fx.LISINOPRIL), ["99"])
    refused = Prior("answered", earlier.request, ncpdp.build(rejected))
    assert judge(b1(ndc=fx.LISINOPRIL), [refused]).status == "P"
    # other content under the same key: paid, no fill to protect
    assert judge(b1(ndc=fx.LISINOPRIL, qty="31"), [earlier]).status == "P"


def test_same_key_other_content_is_83():
    _, prior = _prior_of(b1())
    d = judge(b1(qty="31"), [prior])
    assert d.status == "R" and rejects_of(d) == ["83"]


def test_b1_after_void_revives_the_fill():
    _, prior = _prior_of(b1(), state="voided")
    d = judge(b1(), [prior])
    assert d.status == "P" and d.actions[0].kind == "revise"


def test_b2_voids_and_without_match_is_87():
    _, prior = _prior_of(b1())
    d = judge(b2(), [prior])
    assert d.status == "A" and d.actions[0].kind == "void"
    assert rejects_of(judge(b2(), [None])) == ["87"]
    # a non-controlled cash claim was never captured: its reversal is approved
    assert judge(b2(ndc=fx.LISINOPRIL), [None]).status == "A"


def test_repeated_b2_is_duplicate_of_approved():
    _, prior = _prior_of(b1())
    first = judge(b2(), [prior])
    voided = Prior("voided", ncpdp.build(b2()), ncpdp.build(first.response))
    again = judge(b2(), [voided])
    assert again.status == "S" and again.actions == []


def test_b3_revises_and_without_match_is_84():
    _, prior = _prior_of(b1())
    d = judge(b3(), [prior])
    assert d.status == "P" and d.actions[0].kind == "revise"
    assert d.actions[0].values["quantity"] == Decimal("28")
    assert rejects_of(judge(b3(), [None])) == ["84"]


def test_e1_approved():
    req = ncpdp.parse(load("e1_eligibility.dat"))
    d = judge(req)
    assert d.status == "A" and d.actions == []


def test_compound_captures_its_ingredients():
    d = judge(ncpdp.parse(load("b1_compound.dat")))
    assert d.status == "P"
    [action] = d.actions
    assert action.values["compound"] is True and action.values["schedule"] == "CIII"
    assert [i["ndc"] for i in action.ingredients][0] == fx.TESTOSTERONE_POWDER
    assert len(action.ingredients) == 3


def test_unsupported_transaction_code_and_validation_problems():
    req = b1()
    req.header.transaction_code = "N1"
    assert rejects_of(judge(req)) == ["1S"]
    req = b1()
    claim = ncpdp.find(req.transactions[0], "07")
    claim.fields = [(c, v) for c, v in claim.fields if c != "D2"]
    d = judge(req)
    assert d.status == "R" and "16" in rejects_of(d)


def test_capture_table_reject_codes_agree_with_the_dictionary():
    from ncpdp.dictionary import FIELD_REJECT

    for row in capture.FIELD_MAP:
        if row.reject and row.code in FIELD_REJECT:
            assert FIELD_REJECT[row.code] == row.reject, row
        assert row.rule in capture.RULES


def _drop(req, fields: dict[str, set[str]]):
    for seg in [*req.segments, *req.transactions[0]]:
        seg.fields = [(c, v) for c, v in seg.fields if c not in fields.get(seg.id, set())]
    return req


def _answer(d, i=0):
    """(reject codes, message lines rejoined as the pharmacy system reads them, raw FQ lines)."""
    from cashcapture.app.demo import message_lines

    status = ncpdp.find(ncpdp.parse(ncpdp.build(d.response)).transactions[i], "21")
    return status.get_all("FB"), message_lines(status), status.get_all("FQ")


def test_codec_problem_on_controlled_claim_also_names_the_pmp_gaps():
    # days supply is missing (a codec problem) and so are DOB, gender and street (PMP only)
    req = _drop(b1(), {"01": {"C4", "C5", "CM"}, "07": {"D5"}})
    assert {p.field for p in ncpdp.validate(req)} == {"D5"}
    codes, lines, raw = _answer(judge(req))
    assert codes == ["19", "CM", "09", "10"]  # the codec's first, each code once
    assert lines == (
        "PMP: Days Supply missing",
        "PMP: Patient Street Address missing",
        "PMP: Date Of Birth missing",
        "PMP: Patient Gender Code missing",
    )
    assert all(len(line) <= 40 for line in raw)


def test_codec_problem_on_non_controlled_claim_names_only_the_codec_s():
    req = _drop(b1(ndc=fx.LISINOPRIL), {"01": {"C4", "C5", "CM"}, "07": {"D5"}})
    codes, lines, _ = _answer(judge(req))
    assert codes == ["19"] and lines == ("M/I Days Supply",)


def test_many_gaps_five_codes_and_every_field_named_within_the_limits():
    gone = {"01": {"C4", "C5", "CM", "CN", "CP", "CA"}, "07": {"D5", "DE", "DF"}, "03": {"DB"}}
    req = _drop(b1(), gone)
    codes, lines, raw = _answer(judge(req))
    assert len(codes) == 5 == len(set(codes)) and codes[0] == "19"
    assert len(raw) <= 9 and all(len(line) <= 40 for line in raw)
    text = " ".join(lines)
    for code in set().union(*gone.values()):
        assert ncpdp.field_name(code) in text or capture.field_id(code) in text, code
    # without a codec problem the PMP's own reject names them all too
    gone["07"].discard("D5")
    gone["03"].discard("DB")
    codes, lines, raw = _answer(judge(_drop(b1(), gone)))
    assert len(codes) == 5 and len(raw) <= 9
    text = " ".join(lines)
    assert all(ncpdp.field_name(c) in text for c in set().union(*gone.values()))


def test_pmp_messages_compact_to_fit():
    missing = [capture.Problem("09", c, capture.MISSING) for c in ("C4", "C5", "CM", "CN", "CP")]
    po_box = capture.Problem("CM", "CM", "PO Box not accepted, street address needed")
    assert adjudicate.pmp_messages(missing[:2]) == [
        "PMP: Date Of Birth missing",
        "PMP: Patient Gender Code missing",
    ]
    three = [missing[0], missing[1], missing[3]]  # 3 lines one each, 2 lines grouped
    assert adjudicate.pmp_messages([*three, po_box], room=4) == [
        "PMP missing: Date Of Birth, Patient Gender Code, Patient City Address",
        "PMP: Patient Street Address PO Box not accepted, street address needed",
    ]
    assert adjudicate.pmp_messages([*three, po_box], room=3) == [
        "PMP missing: Date Of Birth, Patient Gender Code, Patient City Address",
        "PMP invalid: Patient Street Address",
    ]
    assert adjudicate.pmp_messages([*missing, po_box], room=2) == [
        "PMP missing: 304-C4, 305-C5, 322-CM, 323-CN, 325-CP",
        "PMP invalid: 322-CM",
    ]
    assert adjudicate.pmp_messages([]) == []


def test_drivers_license_claim_captures_its_jurisdiction():
    [action] = judge(b1()).actions  # the fixture patient shows a Kentucky driver's licence
    assert action.values["patient_id_qualifier"] == "06"
    assert action.values["patient_id_jurisdiction"] == "KY"  # PAT01, from 324-CO
    req = b1()
    pat = ncpdp.find(req.segments, "01")
    ssn = {"CX": "01", "CY": "401559021"}
    pat.fields = [(c, ssn.get(c, v)) for c, v in pat.fields]
    [action] = judge(req).actions  # a Social Security Number has no jurisdiction
    assert action.values["patient_id_qualifier"] == "07"
    assert "patient_id_jurisdiction" not in action.values


def test_patient_id_tables_agree_with_the_asap_code_list_and_the_state_s_rules():
    import csv

    from cashcapture.core.pmp.rules import for_state

    # NCPDP 331-CX (External Code List) -> ASAP PAT02, written out from the sources
    expected = {"01": "07", "02": "06", "03": "01", "07": "02", "08": "05", "12": "04", "14": "08"}
    assert {k: capture.PATIENT_ID_QUALIFIER[k] for k in expected} == expected
    lists = ROOT / "cashcapture" / "core" / "pmp" / "asap" / "data" / "code-lists.csv"
    rows = csv.DictReader(lists.open())
    pat02 = {r["code"] for r in rows if r["list"] == "PAT02 ID qualifier"}
    assert set(capture.PATIENT_ID_QUALIFIER.values()) <= pat02
    ky = for_state("KY")
    needs_state = {q for q, f in ky.patient_ids.items() if f.jurisdiction_required}
    assert capture.JURISDICTION_IDS == needs_state
    assert capture.US_STATES == ky.us_states  # what the counter takes, the state takes


def test_insured_capture_keeps_a_refused_street_for_the_states_rules():
    """Not judged at the counter (insured), a PO Box street is stored as sent,
    so the state's validator says why instead of "Required Field Value is Empty";
    a refused date has no column to go to and stays empty."""
    req = b1()
    pat = ncpdp.find(req.segments, "01")
    pat.fields = [(c, {"CM": "PO BOX 12", "C4": "19681340"}.get(c, v)) for c, v in pat.fields]
    segs = [*req.segments, *req.transactions[0]]
    insured = capture.extract_fill(req.header.date_of_service, segs, required=False)
    assert insured.values["patient_address1"] == "PO BOX 12"
    assert "patient_dob" not in insured.values
    assert insured.problems == []
    cash = capture.extract_fill(req.header.date_of_service, segs, required=True)
    assert "patient_address1" not in cash.values
    assert {p.field for p in cash.problems} == {"CM", "C4"}
