"""ASAP writer and reader: tables, layout, counts, round trips (property tests)."""

from __future__ import annotations

import io
from dataclasses import fields, replace
from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cashcapture.core.pmp.asap import KIND_DATE, KIND_DECIMAL, VERSIONS, table
from cashcapture.core.pmp.asap.samples import header, pharmacy, records, sample_file
from cashcapture.core.pmp.filenames import file_name
from cashcapture.core.pmp.records import (
    AdditionalInfo,
    AsapFile,
    Dispensation,
    Header,
    Ingredient,
    Patient,
    PatientGroup,
    PharmacyGroup,
    Prescriber,
)
from extract.reader import AsapError, read
from extract.writer import AsapWriter, write, write_records, zero_report

# --- tables -------------------------------------------------------------------


def test_tables_have_every_segment_in_element_order():
    t = table("4.1")
    assert [e.id for e in t.segments["TH"]] == [f"TH{i:02d}" for i in range(1, 10)]
    assert len(t.segments["PAT"]) == 23 and len(t.segments["DSP"]) == 19
    assert t.element("TT01").max_length == 40  # the ASAP errata, not VistA's 10
    assert t.element("PAT19").codes == ("F", "M", "U")
    t2 = table("4.2A")
    assert t2.element("DSP18").field == "rxnorm_qualifier"
    assert t2.element("DSP23").field == "sig" and "DSP23" not in t.by_id
    with pytest.raises(KeyError):
        table("3.0")


# --- layout -------------------------------------------------------------------


def test_zero_report_layout_and_counts():
    data = write(
        zero_report(header("Z1"), pharmacy(0), date(2024, 2, 26), date(2024, 3, 3))
    ).decode()
    segs = data.split("~")
    assert data.startswith("TH*4.1*Z1*01**20240305*020000*P**~~IS*KY*PMP Program*")
    assert "IS*KY*PMP Program*#20240226#-#20240303#~" in data
    assert "PAT*******REPORT*ZERO~DSP*00****20240303~PRE*~CDI*~AIR*~TP*7~TT*Z1*10~" in data
    assert segs[-1] == ""


def test_counts_tp01_and_tt02_with_several_pharmacies():
    f = sample_file(12, 3)
    text = write(f).decode()
    segs = [s for s in text.split("~") if s]  # TH ends "~~": its empty piece drops out
    ids = [s.split("*")[0] for s in segs]
    tps = [i for i, s in enumerate(ids) if s == "TP"]
    phas = [i for i, s in enumerate(ids) if s == "PHA"]
    assert len(tps) == len(phas) == 3
    for a, b in zip(phas, tps, strict=True):
        assert segs[b] == f"TP*{b - a + 1}"
    assert segs[-1] == f"TT*{f.header.control_number}*{len(segs)}"


def test_streaming_writer_equals_whole_file_writer():
    f = sample_file(30, 3)
    buf = io.BytesIO()
    n = write_records(buf, f.header, f.records())
    assert n == 30
    assert buf.getvalue() == write(f)


def test_writer_refuses_values_that_would_break_the_file():
    for bad in ("O*NEIL", "A~B", "X\nY"):
        with pytest.raises(AsapError):
            write(
                AsapFile(
                    header(),
                    (
                        PharmacyGroup(
                            pharmacy(0), (PatientGroup(Patient(last_name=bad), (Dispensation(),)),)
                        ),
                    ),
                )
            )


def test_writer_refuses_a_pharmacy_twice():
    w = AsapWriter(io.BytesIO(), header())
    recs = list(records(4, pharmacies=2))
    for r in recs:
        w.add_record(r)
    with pytest.raises(AsapError, match="twice"):
        w.add_record(recs[0])


def test_file_name_as_the_guide_gives_it():
    assert (
        file_name("AB1234567", "9004", datetime(2011, 3, 15, 20, 28, 26))
        == "PMP_KY_AB1234567_9004_20110315202826.dat"
    )
    with pytest.raises(ValueError):
        file_name("AB_1", "9004", datetime(2011, 3, 15))


# --- reader -------------------------------------------------------------------


def test_reader_tolerates_crlf_and_takes_terminator_from_th09():
    f = sample_file(6, 2)
    crlf = write(f).replace(b"~", b"~\r\n")
    assert read(crlf) == f
    backslash = write(replace(f, header=replace(f.header, terminator="\\")))
    assert b"*P**\\\\IS*" in backslash
    assert read(backslash).pharmacies == f.pharmacies


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "does not start with a TH"),
        (b"TH*4.1*X", "fewer than 9"),
        (b"TH*4.1*1*01**20240101*1200*P**~IS*KY~", "does not end with the TH09"),
        (b"TH*4.1*1*01**20240101*1200*P**~~IS*KY*PMP~PAT*~TT*1*3~", "PAT segment outside"),
        (b"TH*4.1*1*01**20240101*1200*P**~~IS*KY*PMP~TT*1*2~", "TT02"),
        (b"TH*4.1*1*01**20240101*1200*P**~~IS*KY*PMP~TT*2*3~", "TT01"),
        (b"TH*4.1*1*01**20240101*1200*P**~~IS*KY*PMP~", "no TT"),
        (b"TH*9.9*1*01**20240101*1200*P**~~IS*KY*PMP~TT*1*3~", "version"),
    ],
)
def test_reader_errors_are_one_clean_line(data, reason):
    with pytest.raises(AsapError, match=reason) as exc:
        read(data)
    assert "\n" not in str(exc.value)


def test_4_2a_is_a_table_not_code():
    f = sample_file(4, 2)
    h = replace(f.header, version="4.2A")
    g = f.pharmacies[0]
    fill = replace(
        g.patients[0].fills[0],
        sig="TAKE 1 TABLET DAILY",
        rxnorm_qualifier="01",
        rxnorm_code="197696",
    )
    f2 = AsapFile(h, (PharmacyGroup(g.pharmacy, (PatientGroup(g.patients[0].patient, (fill,)),)),))
    data = write(f2)
    dsp = next(s for s in data.decode().split("~") if s.startswith("DSP"))
    assert dsp.split("*")[18:20] == ["01", "197696"] and dsp.split("*")[23] == "TAKE 1 TABLET DAILY"
    assert read(data) == f2


# --- round trip (property tests) -------------------------------------------------

# Values must not hold the separator, terminators we try, or line breaks.
_TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="*~\\|"),
    max_size=12,
)


def _value_of(cls, seg: str, version: str = "4.1"):
    t = table(version)
    kinds = {e.field: e.kind for e in t.segments[seg]}
    names = {f.name for f in fields(cls)}
    kw = {}
    for field_name, kind in kinds.items():
        if field_name not in names:
            continue
        if kind == KIND_DATE:
            kw[field_name] = st.none() | st.dates(date(1000, 1, 1), date(9999, 12, 31))
        elif kind == KIND_DECIMAL:
            kw[field_name] = st.none() | st.decimals(
                min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False
            )
        else:
            kw[field_name] = _TEXT
    return st.builds(cls, **kw)


def _fill(version: str):
    return st.builds(
        lambda d, pre, ing, air: replace(d, prescriber=pre, ingredients=tuple(ing), additional=air),
        _value_of(Dispensation, "DSP", version),
        st.none() | _value_of(Prescriber, "PRE", version),
        st.lists(_value_of(Ingredient, "CDI", version), max_size=3),
        st.none() | _value_of(AdditionalInfo, "AIR", version),
    )


def _patient_group(version: str):
    return st.builds(
        lambda p, fs: PatientGroup(p, tuple(fs)),
        _value_of(Patient, "PAT", version),
        st.lists(_fill(version), min_size=1, max_size=3),
    )


@st.composite
def _files(draw, version: str = "4.1"):
    created = draw(st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31))).replace(
        microsecond=0
    )
    h = Header(
        version=version,
        control_number=draw(_TEXT.filter(bool)),
        created=created,
        terminator=draw(st.sampled_from("~\\|")),
        file_type=draw(st.sampled_from("PT")),
        message=draw(_TEXT),
    )
    n = draw(st.integers(0, 3))
    groups = []
    for i in range(n):
        ph = draw(_value_of(type(pharmacy(0)), "PHA", version))
        ph = replace(ph, dea=f"DEA{i}")
        groups.append(
            PharmacyGroup(
                ph, tuple(draw(st.lists(_patient_group(version), min_size=1, max_size=3)))
            )
        )
    return AsapFile(h, tuple(groups))


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_read_write_round_trip(version, data):
    """Every version's table: parse(build(x)) == x and build(parse(b)) == b."""
    f = data.draw(_files(version))
    b = write(f)
    assert read(b) == f
    assert write(read(b)) == b
    assert b.startswith(f"TH*{version}*".encode())


def test_quantities_keep_their_written_form():
    f = sample_file(2, 1)
    g = f.pharmacies[0]
    fill = replace(g.patients[0].fills[0], quantity=Decimal("2.50"))
    f2 = replace(
        f, pharmacies=(PharmacyGroup(g.pharmacy, (PatientGroup(g.patients[0].patient, (fill,)),)),)
    )
    data = write(f2)
    assert b"*2.50*" in data and write(read(data)) == data


def test_zero_report_segments_carry_a_separator_and_read_back_in_both_shapes():
    data = write(zero_report(header("Z2"), pharmacy(0), date(2024, 2, 26), date(2024, 3, 3)))
    # independent check: plain split, no project code
    segs = [s for s in data.decode().split("~") if s]
    ids = [s.split("*")[0] for s in segs]
    assert all("*" in s for s in segs), segs
    assert ids[-5:-2] == ["PRE", "CDI", "AIR"]
    pha, tp = ids.index("PHA"), ids.index("TP")
    assert segs[tp] == f"TP*{tp - pha + 1}" and segs[-1] == f"TT*Z2*{len(segs)}"
    from cashcapture.core.pmp.rules.ky import KY_2011
    from cashcapture.core.pmp.validate import validate

    bare = data.replace(b"PRE*~CDI*~AIR*~", b"PRE~CDI~AIR~")
    for shape in (data, bare):
        f = read(shape)
        assert f.pharmacies[0].patients[0].patient.last_name == "REPORT"
        report = validate(shape, KY_2011, today=date(2024, 3, 5))  # a 4.1 header
        assert not report.problems and report.records == 1, report.problems
