"""KY validator: the guide's example messages reproduced exactly, each rule, the
fixtures, validate_record = file validation, CLI exit codes, and fuzzing."""

from __future__ import annotations

import io
import json
import random
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from cashcapture.core.ids import dea_ok
from cashcapture.core.pmp.asap.samples import fill, patient, pharmacy, records, sample_file
from cashcapture.core.pmp.records import Record
from cashcapture.core.pmp.rules import PO_BOX_REJECT
from cashcapture.core.pmp.rules.ky import KY, KY_2011
from cashcapture.core.pmp.validate import (
    FATAL,
    REJECT,
    WARNING,
    Validator,
    ssn_is_valid,
)
from cashcapture.core.pmp.validate import validate as validate_with
from cashcapture.core.pmp.validate import validate_record as validate_record_with
from extract.reader import AsapError, read
from extract.writer import AsapWriter

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asap"
TODAY = date(2024, 3, 5)

# The guide's own rules (ASAP 4.1, profile KY-2011): its samples and messages are 4.1.
GUIDE = KY_2011
GUIDE_PO_BOX_REJECT = replace(GUIDE, po_box=PO_BOX_REJECT)


def validate(data, rules=GUIDE, drug_list=None, *, today):
    return validate_with(data, rules, drug_list, today=today)


def validate_record(rec, rules=GUIDE, drug_list=None, **kw):
    return validate_record_with(rec, rules, drug_list, **kw)


class SetDrugList:
    def __init__(self, ndcs):
        self.ndcs = set(ndcs)

    def is_reportable(self, ndc: str) -> bool:
        return ndc in self.ndcs


def _file_with_last(bad: Record, before: int, day: date | None = None) -> bytes:
    """`before` good records of one pharmacy, then `bad` as record before+1."""
    from cashcapture.core.pmp.asap.samples import header

    buf = io.BytesIO()
    with AsapWriter(buf, header("T1")) as w:
        for r in records(before, pharmacies=1, day=day or bad.fill.date_filled):
            w.add_record(replace(r, pharmacy=bad.pharmacy))
        w.add_record(bad)
    return buf.getvalue()


def _bad(pat: dict | None = None, dsp: dict | None = None, pha=None) -> Record:
    p = replace(patient(999_999), **(pat or {}))
    return Record(pha or pharmacy(0), p, replace(fill(7), **(dsp or {})))


# --- the guide's messages, exactly --------------------------------------------


def test_guide_sample_gender_empty_rec_389():
    bad = _bad(
        {"gender": ""},
        {
            "date_filled": date(2009, 10, 26),
            "rx_number": "042070336",
            "date_written": date(2009, 10, 20),
        },
    )
    report = validate(_file_with_last(bad, 388), today=date(2009, 11, 1))
    msgs = [p.message for p in report.problems]
    assert msgs == [
        "Rec # (389), Segment (PAT), Element (20), Date Filled (20091026), Rx # (042070336): "
        "Required Field Value is Empty"
    ]
    assert report.exit_code == 1 and report.valid_records == 388


def test_guide_table_gender_empty_rec_967():
    bad = _bad(
        {"gender": ""},
        {
            "date_filled": date(2009, 10, 9),
            "rx_number": "010865123",
            "date_written": date(2009, 10, 1),
        },
    )
    report = validate(_file_with_last(bad, 966), today=date(2009, 11, 1))
    guide = (
        "Rec # (967), Segment (PAT), Element (20), Date Filled (20091009), "
        "Rx # (010865123) : Required Field Value is Empty"
    )
    # The guide's table has a stray space before the colon; its "How to Read" sample
    # (rec 389) has none. We print the sample's form.
    assert [p.message for p in report.problems] == [guide.replace(") : ", "): ")]


def test_guide_po_box_warning_rec_226():
    bad = _bad(
        {"address1": "PO BOX 77"},
        {
            "date_filled": date(2009, 10, 28),
            "rx_number": "042070336",
            "date_written": date(2009, 10, 20),
        },
    )
    report = validate(_file_with_last(bad, 225), today=date(2009, 11, 1))
    [p] = report.problems
    assert p.severity == WARNING
    assert p.message == (
        "Rec # (226), Segment (PAT), Element (12), Date Filled (20091028), Rx # (042070336): "
        "Field Value matches Regular Expression '^\\S*P\\.?\\S*O\\.?\\S*B?'"
    )
    assert report.exit_code == 0 and report.valid_records == 226  # accepted with a warning


GUIDE_REJECT_TABLE = [  # noqa: E501 (the guide's rows, one a line)
    ("AA3137777", "0", "100932303766", "20091120", "50458009405", "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"),  # noqa: E501
    ("AA3137777", "1", "200118923699", "20091118", "00555003302", "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. Resubmit with Physical Address."),  # noqa: E501
    ("AA3137777", "0", "209932003355", "20091117", "00115133101", "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"),  # noqa: E501
    ("AA3137777", "0", "129932110556", "20091119", "00115133101", "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"),  # noqa: E501
    ("AA3137777", "1", "39924424344", "20091120", "00071101368", "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. Resubmit with Physical Address."),  # noqa: E501
    ("AA3137777", "1", "129922242444", "20091116", "00071101468", "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. Resubmit with Physical Address."),  # noqa: E501
    ("AA3137777", "0", "39932202366", "20091118", "00115133301", "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"),  # noqa: E501
    ("AA3137777", "0", "129932310655", "20091120", "00115133301", "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"),  # noqa: E501
    ("AA3137777", "0", "79932002622", "20091118", "00115132901", "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"),  # noqa: E501
    # The guide prints this last reason with commas (a scan artefact): ", Resubmit ... Address,".
    ("AA3137777", "0", "39931814044", "20091120", "00071101468", "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. Resubmit with Physical Address."),  # noqa: E501
]  # fmt: skip


def test_guide_submission_details_reject_table():
    from cashcapture.core.pmp.asap.samples import header

    pha = replace(pharmacy(0), dea="AA3137777")
    po_box_ndcs = {row[4] for row in GUIDE_REJECT_TABLE if "PAT_" in row[5]}
    drug_list = SetDrugList(po_box_ndcs)
    buf = io.BytesIO()
    with AsapWriter(buf, header("RT1")) as w:
        for i, (_, refill, rx, filled, ndc, reason) in enumerate(GUIDE_REJECT_TABLE):
            day = date(int(filled[:4]), int(filled[4:6]), int(filled[6:]))
            pat = replace(patient(i), address1="PO BOX 12" if "PAT_" in reason else "1 Elm St")
            f = replace(
                fill(i),
                fill_number=refill,
                rx_number=rx,
                date_filled=day,
                date_written=date(2009, 11, 1),
                product_id=ndc,
            )
            w.add(pha, pat, f)
    report = validate(buf.getvalue(), GUIDE_PO_BOX_REJECT, drug_list, today=date(2009, 11, 21))
    rows = [r for r in report.reject_table() if not r[5].startswith("PHA_PHARMACY_DEA")]
    assert rows == GUIDE_REJECT_TABLE
    # The guide's sample facility DEA fails the check digit: that is reported too.
    assert all(
        r[5] == "PHA_PHARMACY_DEA : Invalid DEA Number"
        for r in report.reject_table()
        if r not in GUIDE_REJECT_TABLE
    )
    text = report.to_text()
    assert "Facility ID  Refill Code  Rx Number" in text
    assert "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List" in text


# --- rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    "pat, dsp, element, text",
    [
        ({"birth_date": date(1900, 6, 1)}, None, "PAT18", "Date of Birth must be greater than 1900"),  # noqa: E501
        ({"birth_date": date(2024, 3, 6)}, None, "PAT18", "Date cannot be in the Future"),
        ({"gender": "X"}, None, "PAT19", "Field Value is not a valid Code"),
        ({"state": "QQ"}, None, "PAT15", "Field Value is not a valid State Code"),
        ({"state": "ON", "country": "CAN", "zip": "K1A0B1"}, None, None, None),
        ({"country": "XYZ"}, None, "PAT22", "Field Value is not a valid Country Code"),
        ({"zip": "4050"}, None, "PAT16", "ZIP Code must be 5 or 9 digits"),
        ({"zip": "405071234"}, None, None, None),
        ({"last_name": ""}, None, "PAT07", "Required Field Value is Empty"),
        ({"city": "C" * 21}, None, "PAT14", "Field Value exceeds Maximum Length (20)"),
        ({"id_qualifier": "07", "patient_id": "773000001"}, None, "PAT03", "Patient ID is not in the format required for ID Qualifier (07)"),  # noqa: E501
        ({"id_qualifier": "07", "patient_id": "123-45-6789"}, None, "PAT03", "Patient ID is not in the format required for ID Qualifier (07)"),  # noqa: E501
        ({"id_qualifier": "01", "patient_id": "12345678"}, None, "PAT03", "Patient ID is not in the format required for ID Qualifier (01)"),  # noqa: E501
        ({"id_qualifier": "01", "patient_id": "123456789"}, None, None, None),
        ({"id_qualifier": "05", "patient_id": "AB-123"}, None, "PAT03", "Patient ID is not in the format required for ID Qualifier (05)"),  # noqa: E501
        ({"id_qualifier": "02", "patient_id": "S1234", "id_jurisdiction": ""}, None, "PAT01", "Required Field Value is Empty"),  # noqa: E501
        ({"id_qualifier": "02", "patient_id": "S1234", "id_jurisdiction": "ZZ"}, None, "PAT01", "Field Value is not a valid State Code"),  # noqa: E501
        ({"id_qualifier": "10"}, None, "PAT02", "Field Value is not a valid Code"),
        (None, {"date_filled": date(2024, 3, 6)}, "DSP05", "Date cannot be in the Future"),
        (None, {"date_written": date(2024, 3, 5)}, "DSP03", "Date Written is after Date Filled"),
        (None, {"status": "03"}, "DSP01", "Field Value is not a valid Code"),
        (None, {"product_id": "1234"}, "DSP08", "NDC must be 11 digits with leading zeros and no dashes"),  # noqa: E501
        (None, {"product_id": "00071015523"}, "DSP08", "NDC Number is not in State specified Drug List"),  # noqa: E501
        (None, {"quantity": Decimal("0.000")}, "DSP09", "Quantity must be greater than zero"),
        (None, {"quantity": None}, "DSP09", "Required Field Value is Empty"),
        (None, {"payment_type": ""}, "DSP16", "Required Field Value is Empty"),
        (None, {"payment_type": "08"}, "DSP16", "Field Value is not a valid Code"),
        (None, {"refills_authorized": "A"}, "DSP04", "Field Value is not Numeric"),
        (None, {"prescriber": None}, "PRE02", "Required Field Value is Empty"),
        (None, {"product_qualifier": "06", "product_id": "99999000001"}, "DSP07", "Compound must be reported as its first controlled ingredient (01 = State required NDC)"),  # noqa: E501
    ],
)  # fmt: skip
def test_record_rules(pat, dsp, element, text):
    from cashcapture.core.pmp.asap.samples import NDCS

    rec = _bad(pat, dsp)
    problems = validate_record(rec, drug_list=SetDrugList(NDCS), today=TODAY)
    got = [(p.element_id, p.text) for p in problems]
    if element is None:
        assert got == []
    else:
        assert (element, text) in got
        # The file validator finds the same problems, numbered as records of the file.
        data = _file_with_last(rec, 3, day=date(2024, 3, 4))
        report = validate(data, drug_list=SetDrugList(NDCS), today=TODAY)
        assert [(p.element_id, p.text) for p in report.problems if p.rec == 4] == got
        assert report.exit_code == 1 and report.valid_records == 3


def test_prescriber_dea_check_digit_and_ssn_rules():
    assert dea_ok("AB1234563") and not dea_ok("AB1234567")
    assert not dea_ok("A11234563")
    assert ssn_is_valid("772123456") and not ssn_is_valid("000123456")
    assert not ssn_is_valid("123001234") and not ssn_is_valid("123450000")
    rec = _bad(dsp={"prescriber": replace(fill(1).prescriber, dea="BA1234567")})
    [p] = validate_record(rec, today=TODAY)
    assert p.reject_reason == "PRE_PRESCRIBER_DEA_NUMBER : Invalid DEA Number"


def test_po_box_is_a_setting():
    rec = _bad({"address1": "P.O. BOX 5"})
    [w] = validate_record(rec, today=TODAY)
    assert w.severity == WARNING
    [r] = validate_record(rec, GUIDE_PO_BOX_REJECT, today=TODAY)
    assert r.severity == REJECT
    assert (
        r.reject_reason
        == "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. Resubmit with Physical Address."
    )
    assert validate_record(rec, replace(GUIDE, po_box="off"), today=TODAY) == []


def test_compound_rules():
    from cashcapture.core.pmp.asap.samples import NDCS, compound_fill
    from cashcapture.core.pmp.rules import COMPOUND_CODE_06

    asap = replace(GUIDE, compound=COMPOUND_CODE_06)  # 06 + CDI, as a generic collector asks
    c = compound_fill(3)
    rec = Record(pharmacy(0), patient(3), c)
    assert validate_record(rec, asap, drug_list=SetDrugList(NDCS), today=TODAY) == []
    bad_seq = replace(c, ingredients=(replace(c.ingredients[0], sequence="2"), c.ingredients[1]))
    got = validate_record(replace(rec, fill=bad_seq), asap, today=TODAY)
    assert [(p.element_id, p.text) for p in got] == [
        ("CDI01", "Ingredient Sequence Number must start at 1 and increase by 1")
    ]
    none_listed = validate_record(rec, asap, drug_list=SetDrugList([]), today=TODAY)
    assert [p.reject_reason for p in none_listed] == [
        "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"
    ]


def test_validate_record_flags_delimiters_instead_of_breaking_the_file():
    got = validate_record(_bad({"last_name": "O*NEIL"}), today=TODAY)
    assert ("PAT07", "Field Value contains a Delimiter Character") in [
        (p.element_id, p.text) for p in got
    ]


def test_drug_list_may_be_a_callable_or_a_set():
    rec = _bad(dsp={"product_id": "00071015523"})
    for dl in ({"00071015523"}, lambda ndc: ndc == "00071015523"):
        assert validate_record(rec, drug_list=dl, today=TODAY) == []
    assert validate_record(rec, drug_list=frozenset(), today=TODAY)


def test_file_level_checks_fail_the_file():
    good = sample_file(6, 2)
    from extract.writer import write

    data = write(good).decode()
    bad_header = data.replace("IS*KY*PMP Program", "IS*OH*PMP Program").encode()
    r = validate(bad_header, today=TODAY)
    assert r.failed and r.exit_code == 2 and r.valid_records == 0
    assert r.file_errors[0].message == (
        "File Failed: Segment # (2), Segment (IS), Element (1): Field Value must be 'KY'"
    )
    r = validate(data.replace("*P**~~", "*X**~~").encode(), today=TODAY)
    assert r.file_errors[0].element_id == "TH07"


# --- fixtures -----------------------------------------------------------------


def _fixture_reports():
    from cashcapture.core import drugs

    dl = drugs.load("KY")
    for path in sorted(FIXTURES.glob("*.dat")):
        yield path.name, validate(path.read_bytes(), drug_list=dl, today=TODAY)


def test_fixtures_get_the_outcome_their_name_says():
    names = []
    for name, report in _fixture_reports():
        names.append(name)
        if name.startswith(("valid-", "warning-")):
            assert report.exit_code == 0, (name, report.to_text())
            assert bool(report.warnings) == name.startswith("warning-")
            assert read((FIXTURES / name).read_bytes())  # and the reader takes it
        elif name.startswith("reject-"):
            assert report.exit_code == 1, (name, report.to_text())
            kinds = {(p.element_id, p.text) for p in report.rejects}
            assert len(kinds) == 1, (name, kinds)  # one kind of error per file
            assert report.valid_records == report.records - len(report.rejected_records) > 0
        else:
            assert name.startswith("fail-")
            assert report.exit_code == 2 and report.file_errors, name
    assert len([n for n in names if n.startswith("reject-")]) >= 15
    assert {"valid-compound.dat", "valid-zero-report.dat", "valid-several-pharmacies.dat"} <= set(
        names
    )


def test_fixtures_are_what_the_generator_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    made = mod.files()
    assert made == {p.name: p.read_bytes() for p in FIXTURES.glob("*.dat")}


# --- CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, code",
    [("valid-several-pharmacies.dat", 0), ("reject-gender-empty.dat", 1), ("fail-tt-count.dat", 2)],
)
def test_cli_validate_exit_codes(name, code, capsys):
    rc = cli.main(["validate", "--today", "2024-03-05", str(FIXTURES / name)])
    out = capsys.readouterr().out
    assert rc == code
    assert ("File Failed" in out) == (code == 2)
    if code == 1:
        assert "Element (20)" in out and "PAT_GENDER : Required Field Value is Empty" in out


def test_cli_validate_json_and_several_files(capsys):
    files = [str(FIXTURES / n) for n in ("valid-zero-report.dat", "reject-ssn.dat")]
    rc = cli.main(["validate", "--json", "--today", "2024-03-05", *files])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert [d["status"] for d in doc] == ["Accept", "Accept"]
    assert doc[1]["rejected_records"] == [1, 2]  # the first patient's two fills


def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path):
    assert cli.main(["validate", str(tmp_path / "missing.dat")]) == 2
    assert cli.main(["validate", "--state", "ZZ", str(FIXTURES / "valid-zero-report.dat")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("cashcapture: error:") for e in err)


def test_cli_asap_show(capsys):
    assert cli.main(["asap", "show", str(FIXTURES / "valid-compound.dat")]) == 0
    out = capsys.readouterr().out
    assert "CDI03 Product ID: 00006000513" in out and "TP01 Detail Segment Count" in out
    assert cli.main(["asap", "show", str(FIXTURES / "fail-unreadable.dat")]) == 2


# --- fuzz -----------------------------------------------------------------------


def _must_not_crash(data: bytes) -> None:
    report = validate(data, drug_list={"00004005801"}, today=TODAY)
    assert report.exit_code in (0, 1, 2)
    report.to_text()
    report.to_json()
    try:
        read(data)
    except AsapError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _must_not_crash(data)


_SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.dat"))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SEEDS),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from([b"", b"*", b"~", b"\r\n", b"PAT*",
                                                           b"DSP", b"TP*1", b"\xff", b"0"]),
                  st.integers(0, 3)),
        min_size=1, max_size=4,
    ),
)  # fmt: skip
def test_fuzz_mutated_fixtures(seed, edits):
    data = bytearray(seed)
    for pos, insert, delete in edits:
        pos = pos % (len(data) + 1)
        data[pos : pos + delete] = insert
    _must_not_crash(bytes(data))


def test_fuzz_every_single_byte_deletion_of_a_small_file():
    seed = (FIXTURES / "valid-compound.dat").read_bytes()
    rng = random.Random(6)
    for pos in rng.sample(range(len(seed)), min(200, len(seed))):
        _must_not_crash(seed[:pos] + seed[pos + 1 :])


def test_validator_reuse_over_many_records_matches_fresh_validators():
    v = Validator(GUIDE, today=TODAY)
    recs = list(records(40, pharmacies=2))
    recs[5] = replace(recs[5], patient=replace(recs[5].patient, gender=""))
    shared = [validate_record(r, today=TODAY, validator=v) for r in recs]
    fresh = [validate_record(r, today=TODAY) for r in recs]
    assert shared == fresh and sum(map(len, shared)) == 1
    assert FATAL != REJECT


@pytest.mark.parametrize(
    "ssn, today, in_2011",
    [
        ("773123456", True, False),  # issued since the SSA's randomization of June 2011
        ("812345678", True, False),
        ("899123456", True, False),
        ("772123456", True, True),
        ("001010001", True, True),
        ("666123456", False, True),  # never issued; the 2011 rule let it through
        ("900123456", False, False),
        ("999123456", False, False),
        ("000123456", False, False),
        ("123001234", False, False),
        ("123450000", False, False),
        ("12345678", False, False),
        ("１２３456789", False, False),
    ],
)
def test_ssn_rules_of_today_and_of_2011(ssn, today, in_2011):
    assert ssn_is_valid(ssn) is today and ssn_is_valid(ssn, "2011") is in_2011
    rec = _bad({"id_qualifier": "07", "patient_id": ssn})
    assert (validate_record_with(rec, KY, today=TODAY) == []) is today  # KASPER today, 4.2
    assert (validate_record(rec, KY_2011, today=TODAY) == []) is in_2011


@pytest.mark.parametrize(
    "street, po_box",
    [
        ("POPLAR HILL RD", False),
        ("PROSPECT AVE", False),
        ("SPORT LN", False),
        ("APOLLO DR", False),
        ("POBOXWOOD CT", False),
        ("12 BOX ELDER ST", False),
        ("P.O. BOX 12", True),
        ("PO BX 3", True),
        ("PO BOX 118", True),
        ("P O BOX 7", True),
        ("p. o. box 9", True),
        ("POBOX 4", True),
        ("POST OFFICE BOX 22", True),
        ("12 MAIN ST PO BOX 5", True),
    ],
)
def test_one_po_box_rule_at_counter_and_in_the_file(street, po_box):
    from cashcapture.adapter.capture import Invalid, _street
    from cashcapture.core.address import is_po_box

    assert is_po_box(street) is po_box
    found = validate_record(_bad({"address1": street}), GUIDE_PO_BOX_REJECT, today=TODAY)
    assert bool(found) is po_box, found
    try:
        _street(street, None)
        rejected = False
    except Invalid:
        rejected = True
    assert rejected is po_box
