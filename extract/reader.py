"""ASAP reader: any file in, the values the writer writes back.

The terminator comes from TH09, CR/LF between segments is tolerated, and every
problem ends as one `AsapError` naming the segment and the reason. For files
the writer made, write(read(f)) == f.
"""

from __future__ import annotations

from cashcapture.core.pmp.asap import VERSIONS, table
from cashcapture.core.pmp.asap.codec import AsapError, decode, decode_fields, split, structure
from cashcapture.core.pmp.records import (
    AdditionalInfo,
    AsapFile,
    Dispensation,
    Header,
    Ingredient,
    Patient,
    PatientGroup,
    Pharmacy,
    PharmacyGroup,
    Prescriber,
)

__all__ = ["AsapError", "read"]


def read(data: bytes) -> AsapFile:
    """Parse a whole ASAP file; raises AsapError on anything unreadable."""
    sp = split(data)
    th = sp.segments[0].split(sp.separator)
    version = th[1] if len(th) > 1 else ""
    if version not in VERSIONS:
        raise AsapError(
            f"TH01 version {version[:10]!r} is not one of {', '.join(VERSIONS)}", 1, "TH"
        )
    t = table(version)
    is_ = sp.segments[1].split(sp.separator) if len(sp.segments) > 1 else ["IS"]
    if is_[0] != "IS":
        raise AsapError("IS segment must follow TH", 2, is_[0][:8])
    # TH and IS fill one Header.
    try:
        header = Header(**decode_fields(t, th, 1), **decode_fields(t, is_, 2))
    except TypeError:
        raise AsapError(
            "TH02 transaction control number or TH05 creation date missing", 1, "TH"
        ) from None

    groups: list[PharmacyGroup] = []
    cur_pha: list[str] | None = None
    cur_pat: list[str] | None = None
    pharmacy: Pharmacy | None = None
    patients: list[PatientGroup] = []
    fills: list[Dispensation] = []
    patient: Patient | None = None

    def close_patient() -> None:
        if patient is not None and fills:
            patients.append(PatientGroup(patient, tuple(fills)))

    for rec in structure(sp):
        if rec.pha is not cur_pha:
            close_patient()
            if pharmacy is not None:
                groups.append(PharmacyGroup(pharmacy, tuple(patients)))
            cur_pha = rec.pha
            pharmacy = decode(t, Pharmacy, rec.pha)
            patients = []
            fills = []
            cur_pat = None
            patient = None
        if rec.pat is not cur_pat:
            close_patient()
            cur_pat = rec.pat
            patient = decode(t, Patient, rec.pat)
            fills = []
        where = rec.segment
        kw = decode_fields(t, rec.dsp, where)
        kw["prescriber"] = None if rec.pre is None else decode(t, Prescriber, rec.pre, where + 1)
        kw["ingredients"] = tuple(decode(t, Ingredient, c, where) for c in rec.cdi)
        kw["additional"] = None if rec.air is None else decode(t, AdditionalInfo, rec.air, where)
        fills.append(Dispensation(**kw))
    close_patient()
    if pharmacy is not None:
        groups.append(PharmacyGroup(pharmacy, tuple(patients)))
    return AsapFile(header, tuple(groups))
