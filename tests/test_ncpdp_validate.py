"""validate: D.0 rules per transaction code, answered with real reject codes."""

from __future__ import annotations

import pytest
from _ncpdp_helpers import REQUEST_FIXTURES, fixture

import ncpdp
from ncpdp import Segment, find


def req(name: str):
    return ncpdp.parse(fixture(name))


def codes(problems, txn="any"):
    return sorted({p.reject_code for p in problems if txn == "any" or p.transaction == txn})


def drop(seg: Segment, code: str) -> None:
    seg.fields = [(c, v) for c, v in seg.fields if c != code]


def setf(seg: Segment, code: str, value: str) -> None:
    seg.fields = [(c, value if c == code else v) for c, v in seg.fields]


@pytest.mark.parametrize("name", REQUEST_FIXTURES)
def test_fixture_requests_are_valid(name):
    assert ncpdp.validate(req(name)) == []


@pytest.mark.parametrize(
    "code, reject",
    [
        ("C2", "07"),
        ("D2", "16"),
        ("D3", "17"),
        ("D5", "19"),
        ("D7", "21"),
        ("DE", "28"),
        ("DF", "29"),
        ("E7", "E7"),
        ("EM", "EM"),
        ("E1", "E1"),
        ("D6", "20"),
        ("D8", "22"),
    ],
)
def test_b1_missing_mandatory_field_gives_its_m_i_code(code, reject):
    m = req("b1_cash.dat")
    seg = find(m.segments, "04") if code == "C2" else find(m.transactions[0], "07")
    drop(seg, code)
    problems = ncpdp.validate(m)
    assert [p.reject_code for p in problems] == [reject]
    p = problems[0]
    assert p.field == code
    assert p.transaction == (None if code == "C2" else 0)
    assert ncpdp.field_name(code) in p.message


def test_b1_pricing_fields_and_segments():
    m = req("b1_cash.dat")
    drop(find(m.transactions[0], "11"), "DU")
    assert codes(ncpdp.validate(m)) == ["DU"]
    m = req("b1_cash.dat")
    m.transactions[0] = [s for s in m.transactions[0] if s.id != "11"]
    problems = ncpdp.validate(m)
    assert codes(problems) == ["6P"] and "Pricing segment is required" in problems[0].message
    m = req("b1_cash.dat")
    m.transactions[0] = [s for s in m.transactions[0] if s.id != "07"]
    assert codes(ncpdp.validate(m)) == ["1Y"]
    m = req("b1_cash.dat")
    m.segments = [s for s in m.segments if s.id != "04"]
    assert codes(ncpdp.validate(m)) == ["6J"]


def test_b3_follows_b1_rules():
    m = req("b3_rebill.dat")
    drop(find(m.transactions[0], "07"), "D5")
    assert codes(ncpdp.validate(m)) == ["19"]


def test_b2_rules():
    m = req("b2_reversal.dat")
    drop(find(m.transactions[0], "07"), "D2")
    assert codes(ncpdp.validate(m)) == ["16"]
    m = req("b2_reversal.dat")
    m.transactions[0].append(Segment("10", [("EC", "01")]))
    assert "211" in codes(ncpdp.validate(m))  # Compound segment not used for B2


def test_e1_rules():
    m = req("e1_eligibility.dat")
    drop(find(m.segments, "04"), "C2")
    assert codes(ncpdp.validate(m)) == ["07"]
    m = req("e1_eligibility.dat")
    m.transactions[0].append(Segment("07", [("EM", "1")]))
    assert codes(ncpdp.validate(m)) == ["203"]  # Claim segment not used for E1
    m = req("e1_eligibility.dat")  # provider segments at message level: no group
    m.segments += m.transactions.pop()
    assert ncpdp.validate(m) == []


def test_formats_are_checked_with_field_codes():
    m = req("b1_cash.dat")
    pat = find(m.segments, "01")
    setf(pat, "C4", "19681345")  # month 13
    claim = find(m.transactions[0], "07")
    setf(claim, "D5", "3O")
    setf(find(m.transactions[0], "11"), "DQ", "27.00")
    problems = ncpdp.validate(m)
    assert codes(problems) == ["09", "19", "DQ"]
    assert all("19681345" not in p.message and "27.00" not in p.message for p in problems)
    assert {p.field for p in problems} == {"C4", "D5", "DQ"}


def test_header_problems():
    m = req("b1_cash.dat")
    m.header.bin = "99900A"
    m.header.version = "D1"
    m.header.date_of_service = "20241301"
    assert codes(ncpdp.validate(m)) == ["01", "02", "15"]


@pytest.mark.parametrize(
    "header_count, groups, expected",
    [(1, 2, ["1U"]), (3, 2, ["1U"]), (0, 1, ["A9"]), (5, 5, ["A9"]), (4, 4, [])],
)
def test_transaction_count_rules(header_count, groups, expected):
    m = req("b1_cash_4_transactions.dat")
    m.transactions = m.transactions[:groups] + m.transactions[: max(0, groups - 4)]
    m.header.transaction_count = header_count
    assert codes(ncpdp.validate(m)) == expected


def test_compound_rules():
    m = req("b1_compound.dat")
    m.transactions.append(req("b1_cash.dat").transactions[0])
    m.header.transaction_count = 2
    assert codes(ncpdp.validate(m)) == ["1W"]  # compound must be a single transaction
    m = req("b1_compound.dat")
    m.transactions[0] = [s for s in m.transactions[0] if s.id != "10"]
    assert codes(ncpdp.validate(m)) == ["8B"]
    m = req("b1_cash.dat")
    m.transactions[0].append(find(req("b1_compound.dat").transactions[0], "10"))
    assert codes(ncpdp.validate(m)) == ["8D"]


def test_compound_ingredient_counts():
    m = req("b1_compound.dat")
    comp = find(m.transactions[0], "10")
    setf(comp, "EC", "02")  # three ingredients sent, count says two
    assert codes(ncpdp.validate(m)) == ["EC"]
    m = req("b1_compound.dat")
    comp = find(m.transactions[0], "10")
    idx = [i for i, (c, _) in enumerate(comp.fields) if c == "ED"][1]
    comp.fields = comp.fields[:idx] + comp.fields[idx + 1 :]  # ingredient 2 lacks its quantity
    assert codes(ncpdp.validate(m)) == ["ED"]


def test_unknown_transaction_code_rejected_and_unknown_fields_tolerated():
    m = req("b1_cash.dat")
    m.header.transaction_code = "Z9"
    assert "03" in codes(ncpdp.validate(m))
    m = req("b1_cash.dat")
    find(m.transactions[0], "07").fields += [("Q9", "vendor specific")]
    assert ncpdp.validate(m) == []


def test_validate_takes_requests_only():
    with pytest.raises(TypeError):
        ncpdp.validate(req("resp_paid.dat"))


def _lost_separator() -> ncpdp.Request:
    """The real malformed claim: the separator before the COB segment (05) is lost, so
    its AM and fields 4C, 5C, 6C, HB, HC, DV sit inside the prescriber segment (03)."""
    m = req("b1_cash.dat")
    group = m.transactions[0]
    if find(group, "03") is None:
        group.append(Segment("03", [("EZ", "01"), ("DB", "1234567893")]))
    pres = find(group, "03")
    pres.fields = [
        *pres.fields,
        ("AM", "05"),
        ("4C", "1"),
        ("5C", "01"),
        ("6C", "03"),
        ("HB", "1"),
        ("HC", "07"),
        ("DV", "DATA4"),
    ]
    return ncpdp.parse(ncpdp.build(m))  # as the counter sees it: from the wire


def test_lost_segment_separator_is_reported_field_by_field():
    problems = ncpdp.validate(_lost_separator())
    by_field = {}
    for p in problems:
        by_field.setdefault(p.field, []).append(p)
    assert set(by_field) == {"AM", "4C", "5C", "6C", "HB", "HC", "DV"}
    assert by_field["AM"][0].reject_code == "454"  # Prescriber Segment Incorrectly Formatted
    assert "second Segment Identification" in by_field["AM"][0].message
    for code in ("4C", "5C", "6C", "HB", "HC"):
        (p,) = by_field[code]
        assert p.reject_code == ncpdp.dictionary.FIELD_REJECT[code]
        assert "does not belong in Prescriber" in p.message and p.transaction == 0
    # DV: placed elsewhere, and DATA4 is no overpunched amount; its own M/I code, no value
    assert [p.reject_code for p in by_field["DV"]] == ["DV", "DV"]
    assert all("DATA4" not in p.message for p in problems)


@pytest.mark.parametrize(
    "seg_id, code, value, reject",
    [
        ("07", "D2", "0000\u00b22345678", "16"),  # superscript two is not a digit
        ("07", "E7", "\u00b3000", "E7"),
        ("01", "C4", "1968\u00b90101", "09"),  # date with superscript one
        ("11", "DU", "12\u00b2{", "DU"),  # overpunched amount
        ("11", "DU", "1250", "DU"),  # amount without its overpunch
        ("01", "C4", "19680230", "09"),  # no 30 February
    ],
)
def test_values_must_fit_their_format_in_ascii_digits(seg_id, code, value, reject):
    m = req("b1_cash.dat")
    seg = find([*m.segments, *m.transactions[0]], seg_id)
    setf(seg, code, value)
    problems = ncpdp.validate(ncpdp.parse(ncpdp.build(m)))
    assert [(p.reject_code, p.field) for p in problems] == [(reject, code)]


def test_field_of_another_segment_alone_is_reported():
    m = req("b1_cash.dat")
    find(m.segments, "01").fields += [("D2", "123456789012")]  # Rx number in Patient
    problems = ncpdp.validate(m)
    assert [(p.reject_code, p.field) for p in problems] == [("16", "D2")]
    assert "belongs in Claim" in problems[0].message


def test_rules_csv_rule_column_is_honoured_for_field_rows(monkeypatch):
    import importlib

    v = importlib.import_module("ncpdp.validate")  # the module: ncpdp.validate is the function
    rows = v._rule_rows()
    m = req("b1_cash.dat")
    drop(find(m.transactions[0], "07"), "D5")
    assert codes(ncpdp.validate(m)) == ["19"]  # as shipped: Days Supply is M for B1
    for r in rows:
        if r["field"] == "D5":
            r["rule"] = "O"
    rules = v._load_rules(rows)
    monkeypatch.setattr(v, "RULES", rules)
    monkeypatch.setattr(
        v, "_FAST", {tc: v._FastTable(x) for tc, x in [*rules.items(), (None, None)]}
    )
    assert ncpdp.validate(m) == []  # optional now: no problem
    rows[0]["rule"] = "X"
    with pytest.raises(ValueError):
        v._load_rules(rows)
