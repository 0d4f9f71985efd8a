"""Parse and build: fixtures byte for byte, errors with offsets, JSON, typed access."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from _ncpdp_helpers import REQUEST_FIXTURES, RESPONSE_FIXTURES, fixture, fixture_files
from hypothesis import given, settings
from hypothesis import strategies as st

import ncpdp
from ncpdp import BuildError, ParseError, Request, RequestHeader, Response, Segment


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_fixture_round_trips_byte_for_byte(path):
    data = path.read_bytes()
    msg = ncpdp.parse(data)
    assert ncpdp.build(msg) == data
    # materialised fields build the same bytes as the lazily kept wire text
    for s in msg.segments + [s for t in msg.transactions for s in t]:
        assert s.fields is not None
    assert ncpdp.build(msg) == data
    again = ncpdp.from_json(json.loads(json.dumps(ncpdp.to_json(msg))))
    assert again == msg and ncpdp.build(again) == data


def test_fixture_set_is_complete():
    names = {p.name for p in fixture_files()}
    assert set(REQUEST_FIXTURES + RESPONSE_FIXTURES) <= names


def test_fixtures_are_what_make_py_writes():
    import importlib.util

    from _ncpdp_helpers import FIXTURES

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, data in mod.messages().items():
        assert fixture(name) == data, name


def test_request_and_response_told_apart_by_header():
    req = ncpdp.parse(fixture("b1_cash.dat"))
    resp = ncpdp.parse(fixture("resp_paid.dat"))
    assert isinstance(req, Request) and req.kind == "request"
    assert isinstance(resp, Response) and resp.kind == "response"
    assert req.header.bin == "999001" and req.header.pcn == "CASHONLY  "
    assert req.header.transaction_count == 1
    assert req.header.service_provider_id == "1234567893     "
    assert resp.header.version == "D0" and resp.header.header_response_status == "A"
    assert resp.header.service_provider_id == req.header.service_provider_id


def test_cash_b1_carries_the_pmp_fields():
    m = ncpdp.parse(fixture("b1_cash.dat"))
    pat = ncpdp.find(m.segments, "01")
    assert pat.get("CA") == "MARGARET" and pat.get("CB") == "HOLLOWAY"
    assert pat.get("CO") == "KY" and pat.get("CP") == "40502"
    assert ncpdp.typed("C4", pat.get("C4")) == dt.date(1968, 7, 4)
    claim = ncpdp.find(m.transactions[0], "07")
    assert claim.get("E1") == "03" and claim.get("D7") == "00406051201"
    assert ncpdp.typed("E7", claim.get("E7")) == Decimal("30.000")
    assert ncpdp.typed("D2", claim.get("D2")) == 1234567
    presc = ncpdp.find(m.transactions[0], "03")
    assert presc.get("EZ") == "12" and presc.get("DB") == "AB1234563"
    price = ncpdp.find(m.transactions[0], "11")
    assert ncpdp.typed("DU", price.get("DU")) == Decimal("27.00")
    assert ncpdp.find(m.transactions[0], "99") is None


def test_segment_access_lazy_and_materialised_agree():
    m = ncpdp.parse(fixture("b1_compound.dat"))
    comp = ncpdp.find(m.transactions[0], "10")
    lazy_first = comp.get("TE")
    assert comp.get_all("TE") == ["51927103500", "51927201500", "51927300200"]
    assert comp.get("TE") == lazy_first == "51927103500"
    assert comp.get("ZZ") is None and comp.get("T") is None
    assert comp.fields[0] == ("EF", "11")
    built = Segment("10", comp.fields)
    assert built == comp and built.get("EC") == "03"
    assert "51927" not in repr(comp)  # repr shows codes, never values


def test_unknown_fields_and_segments_are_kept():
    h = RequestHeader.make(bin="123456", transaction_code="B1", service_provider_id="1")
    m = Request(
        h,
        [Segment("99", [("Z9", "x"), ("Z9", ""), ("C2", "a")])],
        [[Segment("07", [("Q!", "weird"), ("D2", "1")]), Segment("ZZ", [])]],
    )
    assert ncpdp.parse(ncpdp.build(m)) == m


@pytest.mark.parametrize(
    "tc", ["N1", "N2", "N3", "C1", "C2", "C3", "P1", "P2", "P3", "P4", "S1", "S2", "S3"]
)
def test_other_transaction_codes_parse_and_build(tc):
    src = ncpdp.parse(fixture("b1_cash.dat"))
    src.header.transaction_code = tc
    data = ncpdp.build(src)
    assert data[8:10] == tc.encode()
    m = ncpdp.parse(data)
    assert m.header.transaction_code == tc and ncpdp.build(m) == data
    resp = ncpdp.responses.captured(m)
    assert ncpdp.parse(ncpdp.build(resp)).header.transaction_code == tc


@pytest.mark.parametrize(
    "data, offset, reason",
    [
        (b"", 0, "header needs 56"),
        (b"D0B1", 4, "response header needs 31"),
        (b"999001D0B1" + b" " * 10 + b"X" + b" " * 35, 20, "transaction count"),
    ],
)
def test_header_errors(data, offset, reason):
    with pytest.raises(ParseError) as ei:
        ncpdp.parse(data)
    assert ei.value.offset == offset and reason in ei.value.reason


def test_body_errors_point_at_the_byte():
    good = fixture("b1_cash.dat")
    cases = [
        (good + b"\x1d", len(good) + 1, "transaction group"),
        (good[:56] + b"X" + good[56:], 56, "segment separator"),
        (good.replace(b"AM04", b"AN04", 1), 57, "identification (AM)"),
        (good.replace(b"\x1cC2CASH", b"\x1cC", 1), 63, "field ID"),
        (good.replace(b"AM04", b"AM041", 1), 62, "longer than 2"),
        (good[:56] + b"\x1e\x1cAM", 60, "shorter than 2"),
    ]
    for data, offset, reason in cases:
        with pytest.raises(ParseError) as ei:
            ncpdp.parse(data)
        assert (ei.value.offset, reason in ei.value.reason) == (offset, True), data
        assert isinstance(ei.value, ValueError)


def test_error_texts_never_carry_values():
    data = fixture("b1_cash.dat").replace(b"HOLLOWAY", b"HOLLOWA\x1cY")
    with pytest.raises(ParseError) as ei:
        ncpdp.parse(data)
    assert "HOLLOWA" not in str(ei.value) and "field ID" in ei.value.reason
    with pytest.raises(ValueError) as ei2:
        ncpdp.typed("C4", "HOLLOWAY")
    assert "HOLLOWAY" not in str(ei2.value) and "Date Of Birth" in str(ei2.value)


def test_non_bytes_and_odd_inputs_raise_parse_error():
    for bad in ["text", None, 12, b"\xff" * 100]:
        with pytest.raises(ParseError):
            ncpdp.parse(bad)
    assert ncpdp.parse(bytearray(fixture("b2_reversal.dat"))) == ncpdp.parse(
        fixture("b2_reversal.dat")
    )


def test_peek_header_reads_header_of_broken_message():
    data = fixture("b1_cash.dat")[:70] + b"\x1d\x1d"
    with pytest.raises(ParseError):
        ncpdp.parse(data)
    h = ncpdp.peek_header(data)
    assert h.bin == "999001" and h.transaction_code == "B1"
    assert ncpdp.peek_header(b"short") is None


@pytest.mark.parametrize(
    "mutate, text",
    [
        (lambda m: m.transactions.append([]), "at least one segment"),
        (lambda m: m.segments.append(Segment("0", [])), "segment id"),
        (lambda m: m.segments.append(Segment("01", [("C", "AB")])), "2 characters"),
        (lambda m: m.segments.append(Segment("01", [("CA", "A\x1eB")])), "separators"),
        (lambda m: m.segments.append(Segment("01", [("CA", "\u20ac")])), "latin-1"),
        (lambda m: m.segments.append(Segment("01", [("CA", 5)])), "string"),
        (lambda m: setattr(m.header, "pcn", "SHORT"), "exactly 10"),
        (lambda m: setattr(m.header, "transaction_count", 10), "0-9"),
    ],
)
def test_build_refuses_what_would_not_parse_back(mutate, text):
    m = ncpdp.parse(fixture("b1_cash.dat"))
    mutate(m)
    with pytest.raises(BuildError) as ei:
        ncpdp.build(m)
    assert text in str(ei.value)


def test_json_contract_shape():
    d = ncpdp.to_json(ncpdp.parse(fixture("b1_cash.dat")))
    assert set(d) == {"kind", "header", "segments", "transactions"}
    assert d["kind"] == "request"
    assert list(d["header"]) == [
        "bin",
        "version",
        "transaction_code",
        "pcn",
        "transaction_count",
        "service_provider_id_qualifier",
        "service_provider_id",
        "date_of_service",
        "software_vendor_cert_id",
    ]
    assert d["header"]["transaction_count"] == 1 and d["header"]["pcn"] == "CASHONLY  "
    assert d["segments"][0] == {"id": "04", "fields": [["C2", "CASH"]]}
    claim = d["transactions"][0][0]
    assert claim["id"] == "07" and claim["fields"][:2] == [["EM", "1"], ["D2", "000001234567"]]
    r = ncpdp.to_json(ncpdp.parse(fixture("resp_paid.dat")))
    assert list(r["header"]) == [
        "version",
        "transaction_code",
        "transaction_count",
        "header_response_status",
        "service_provider_id_qualifier",
        "service_provider_id",
        "date_of_service",
    ]


@pytest.mark.parametrize(
    "bad, text",
    [
        ([], "object"),
        ({"kind": "x"}, "kind"),
        ({"kind": "request", "header": {}}, "missing keys"),
        ({"kind": "response", "header": {"version": "D0"}}, "missing keys"),
    ],
)
def test_from_json_says_what_is_wrong(bad, text):
    with pytest.raises(BuildError) as ei:
        ncpdp.from_json(bad)
    assert text in str(ei.value)


def test_from_json_rejects_bad_segments():
    d = ncpdp.to_json(ncpdp.parse(fixture("b1_cash.dat")))
    d["transactions"][0][0]["fields"][0] = ["EM"]
    with pytest.raises(BuildError, match=r"transactions\[0\]\[0\]"):
        ncpdp.from_json(d)
    d = ncpdp.to_json(ncpdp.parse(fixture("b1_cash.dat")))
    d["header"]["transaction_count"] = "1"
    with pytest.raises(BuildError, match="transaction_count"):
        ncpdp.from_json(d)


@pytest.mark.parametrize(
    "code, raw, value",
    [
        ("DU", "0000125{", Decimal("12.50")),
        ("DU", "0000125}", Decimal("-12.50")),
        ("DU", "0001234E", Decimal("123.45")),
        ("DU", "0001234N", Decimal("-123.45")),
        ("AY", "012345{", Decimal("12.3450")),
        ("E7", "0000030500", Decimal("30.500")),
        ("D2", "000001234567", 1234567),
        ("D5", "030", 30),
        ("C4", "19680704", dt.date(1968, 7, 4)),
        ("CA", "MARGARET", "MARGARET"),
        ("ZZ", "anything", "anything"),
    ],
)
def test_typed_and_wire_are_inverse(code, raw, value):
    assert ncpdp.typed(code, raw) == value
    assert ncpdp.wire(code, value) == raw


def test_typed_accepts_short_wire_values():
    assert ncpdp.typed("DU", "125{") == Decimal("12.50")
    assert ncpdp.typed("DU", "{") == Decimal("0.00")
    assert ncpdp.typed("D3", "0") == 0


@pytest.mark.parametrize(
    "code, value",
    [
        ("DU", Decimal("1.234")),
        ("DU", Decimal("1000000.00")),
        ("E7", Decimal("-1")),
        ("D5", -1),
        ("D5", 1000),
        ("C4", "19680704"),
        ("CA", "X" * 13),
        ("CA", 5),
        ("D5", True),
    ],
)
def test_wire_refuses_values_the_format_cannot_hold(code, value):
    with pytest.raises(ValueError):
        ncpdp.wire(code, value)


@pytest.mark.parametrize(
    "code, raw", [("DU", "12.5"), ("DU", ""), ("D5", "3O"), ("C4", "19681304"), ("E7", "１２")]
)
def test_typed_refuses_malformed(code, raw):
    with pytest.raises(ValueError):
        ncpdp.typed(code, raw)


def test_field_names_come_from_the_dictionary():
    assert ncpdp.field_name("D2") == "Prescription/Service Reference Number"
    assert ncpdp.field_name("C2") == "Cardholder ID"
    assert ncpdp.field_name("??") == "Unknown Field ??"
    assert ncpdp.segment_name("07") == "Claim"
    assert len(ncpdp.FIELDS) > 300 and ncpdp.FIELDS["DU"].kind == "money"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["request", "response"]), st.data())
def test_header_offsets_parse_and_build_as_the_construct_declaration(kind, data):
    """The hot path slices by offsets; the construct Struct is the declaration."""
    import ncpdp.header as hdr

    raw = b"".join(
        data.draw(st.binary(min_size=s.length, max_size=s.length)) if a != "transaction_count"
        else data.draw(st.sampled_from([b"%d" % d for d in range(10)]))
        for a, s in hdr.SLOTS[kind]
    )
    declared = hdr.STRUCTS[kind].parse(raw)
    header = hdr.parse_header(kind, raw)
    for attr, _ in hdr.SLOTS[kind]:
        want = declared[attr].decode("latin-1")
        got = getattr(header, attr)
        assert (str(got) if attr == "transaction_count" else got) == want
    assert hdr.build_header(header) == raw == hdr.STRUCTS[kind].build(
        {a: declared[a] for a, _ in hdr.SLOTS[kind]}
    )


def test_a_header_changed_after_a_build_is_built_anew():
    datas = [p.read_bytes() for p in fixture_files()]
    m = ncpdp.parse(datas[0])
    first = ncpdp.build(m)
    m.header.date_of_service = "20240316"
    assert ncpdp.build(m) == first.replace(b"20240315", b"20240316", 1)
    assert ncpdp.parse(datas[0]).header is not ncpdp.parse(datas[0]).header
    with pytest.raises(ncpdp.ParseError) as e:
        ncpdp.parse(datas[0][:20] + "\u00b2".encode("latin-1") + datas[0][21:])
    assert e.value.offset == 20  # a superscript is no transaction count


def test_decode_json_text_is_the_contract():
    m = ncpdp.parse(fixture("b1_cash_4_transactions.dat"))
    assert json.loads(ncpdp.jsonio.dumps(m)) == ncpdp.to_json(m)
    r = ncpdp.parse(fixture("resp_rejected_transmission.dat"))
    assert json.loads(ncpdp.jsonio.dumps(r)) == ncpdp.to_json(r)
