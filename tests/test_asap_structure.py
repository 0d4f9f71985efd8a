"""ASAP file structure as a grammar (data/structure.csv): what it lets through and
the one-line error for each kind of misplaced segment."""

from __future__ import annotations

import pytest

from cashcapture.core.pmp.asap import SEGMENT_IDS, grammar
from cashcapture.core.pmp.asap.codec import AsapError, Trailer, split, structure
from cashcapture.core.pmp.asap.samples import sample_file
from extract.writer import write

TH = "TH*4.1*CTL*01**20240101*1200*P**~~"


def _file(*segs: str, tt: bool = True) -> bytes:
    """TH + segments + a TT with the right counts (TP counts are written by the caller)."""
    body = TH + "".join(s + "~" for s in segs)
    if tt:
        body += f"TT*CTL*{len(segs) + 2}~"
    return body.encode()


def _walk(data: bytes) -> tuple[list, Trailer]:
    sp = split(data)
    tr = Trailer([])
    return list(structure(sp, tr)), tr


def test_the_grammar_is_the_data():
    g = grammar()
    assert set(g.rules) == set(SEGMENT_IDS)
    assert [r.segment for r in g.children[""]] == ["TH", "IS", "PHA", "TT"]
    assert [r.segment for r in g.children["PHA"]] == ["PAT", "TP"]
    assert [r.segment for r in g.children["DSP"]] == ["PRE", "CDI", "AIR"]
    assert g.rules["CDI"].max is None and g.rules["AIR"].max == 1 and g.rules["PRE"].min == 0
    assert g.rules["TP"].closes and g.rules["TT"].closes and g.record == "DSP"


def test_a_good_file_yields_one_record_per_dsp_sharing_pharmacy_and_patient_lists():
    f = sample_file(7, 3)
    recs, tr = _walk(write(f))
    assert [r.number for r in recs] == list(range(1, 8))
    assert tr.pharmacies == 3 and tr.records == 7 and tr.tt is not None
    by_pha = {id(r.pha) for r in recs}
    assert len(by_pha) == 3  # one list object per pharmacy, shared by its records


def test_pre_cdi_air_attach_to_their_dsp():
    data = _file(
        "IS*KY*PMP",
        "PHA*1",
        "PAT*1",
        "DSP*1",
        "PRE*1",
        "CDI*1",
        "CDI*2",
        "AIR*1",
        "DSP*2",
        "TP*9",
    )
    [a, b], tr = _walk(data)
    assert a.pre == ["PRE", "1"] and [c[1] for c in a.cdi] == ["1", "2"]
    assert a.air == ["AIR", "1"]
    assert b.pre is None and b.cdi == [] and b.air is None and b.pat is a.pat


@pytest.mark.parametrize(
    "segs, where, reason",
    [
        (("PHA*1", "PAT*1", "DSP*1", "TP*4"), "segment 2 (PHA)", "IS segment must follow TH"),
        (("IS*KY", "IS*KY"), "segment 3 (IS)", "second IS segment for one file"),
        (("IS*KY", "TH*4.1"), "segment 3 (TH)", "TH segment after IS"),
        (("IS*KY", "PAT*1"), "segment 3 (PAT)", "PAT segment outside a PHA"),
        (("IS*KY", "PHA*1", "DSP*1"), "segment 4 (DSP)", "DSP segment outside a PAT"),
        (("IS*KY", "PHA*1", "PAT*1", "PRE*1"), "segment 5 (PRE)", "PRE segment outside a DSP"),
        (("IS*KY", "TP*1"), "segment 3 (TP)", "TP segment outside a PHA"),
        (("IS*KY", "PHA*1", "TP*2"), "segment 4 (TP)", "pharmacy without a PAT and DSP"),
        (("IS*KY", "PHA*1", "PAT*1", "PAT*2"), "segment 4 (PAT)", "PAT segment without a DSP"),
        (
            ("IS*KY", "PHA*1", "PAT*1", "TP*3"),
            "segment 4 (PAT)",
            "PAT segment without a DSP",
        ),
        (
            ("IS*KY", "PHA*1", "PAT*1", "DSP*1", "PRE*1", "PRE*2"),
            "segment 7 (PRE)",
            "second PRE segment for one DSP",
        ),
        (
            ("IS*KY", "PHA*1", "PAT*1", "DSP*1", "CDI*1", "PRE*2"),
            "segment 7 (PRE)",
            "PRE segment after CDI",
        ),
        (
            ("IS*KY", "PHA*1", "PAT*1", "DSP*1", "AIR*1", "CDI*1"),
            "segment 7 (CDI)",
            "CDI segment after AIR",
        ),
        (
            ("IS*KY", "PHA*1", "PAT*1", "DSP*1", "AIR*1", "AIR*1"),
            "segment 7 (AIR)",
            "second AIR segment for one DSP",
        ),
        (
            ("IS*KY", "PHA*1", "PAT*1", "DSP*1", "PHA*2"),
            "segment 6 (PHA)",
            "PHA segment before the pharmacy's TP",
        ),
        (
            ("IS*KY", "PHA*1", "PAT*1", "DSP*1"),
            "segment 6 (TT)",
            "TT segment before the pharmacy's TP",
        ),
        (("IS*KY", "XYZ*1"), "segment 3 (XYZ)", "unknown or misplaced segment 'XYZ'"),
        (("IS*KY", "PHA*1", "PAT*1", "DSP*1", "TP*9"), "segment 6 (TP)", "TP01 detail"),
    ],
)
def test_each_misplaced_segment_gets_one_line_naming_it(segs, where, reason):
    with pytest.raises(AsapError) as exc:
        _walk(_file(*segs))
    assert str(exc.value) == f"{where}: {reason}" or str(exc.value).startswith(f"{where}: {reason}")


def test_end_of_file_and_after_the_trailer():
    with pytest.raises(AsapError, match=r"segment 2 \(IS\): file has no TT trailer segment"):
        _walk(_file("IS*KY", tt=False))
    with pytest.raises(AsapError, match=r"segment 1 \(TH\): IS segment must follow TH"):
        _walk(TH.encode())
    with pytest.raises(AsapError, match=r"segment 4 \(IS\): data after the TT segment"):
        _walk((TH + "IS*KY~TT*CTL*3~IS*KY~").encode())


def test_records_before_a_structure_error_are_yielded_and_counted():
    data = _file("IS*KY", "PHA*1", "PAT*1", "DSP*1", "DSP*2", "AIR*1", "AIR*2")
    sp = split(data)
    tr = Trailer([])
    seen = []
    with pytest.raises(AsapError, match="second AIR"):
        for r in structure(sp, tr):
            seen.append(r.number)
    assert seen == [1] and tr.records == 2


def test_a_zero_pharmacy_file_is_well_formed():
    recs, tr = _walk(_file("IS*KY"))
    assert recs == [] and tr.pharmacies == 0 and tr.segment_count == 3
