"""ASAP writer: values in, file out, streaming.

`AsapWriter` writes TH and IS at once, then one segment group per call, and
counts as it goes, so a day of a million fills never sits in memory: TP01 and
TT02 are trailers, written when a pharmacy group ends and at `close()`.
Records must arrive grouped: all fills of one pharmacy DEA together, and a
patient's fills together within it (a new PAT starts whenever the patient
value changes). `write(AsapFile) -> bytes` is the same writer on a buffer.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from typing import BinaryIO

from cashcapture.core.pmp.asap import table
from cashcapture.core.pmp.asap.codec import AsapError, encode, format_date, join
from cashcapture.core.pmp.records import (
    ZERO_FIRST_NAME,
    ZERO_LAST_NAME,
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
    Record,
)

__all__ = ["AsapError", "AsapWriter", "write", "zero_report", "zero_report_message"]


class AsapWriter:
    """Streaming writer. Use as a context manager or call `close()` once at the end."""

    def __init__(self, out: BinaryIO, header: Header):
        self._out = out
        self._table = table(header.version)
        self.header = header
        self._sep = "*"
        self._term = header.terminator
        if len(self._term) != 1 or self._term in "* \r" or self._term.isalnum():
            raise AsapError(f"bad segment terminator {self._term!r}")
        self.segments = 0  # segments written so far (TT02 at the end)
        self.records = 0  # DSP segments written
        self.pharmacies = 0
        self._pha_dea: str | None = None
        self._pha_segments = 0
        self._open_pat: list[str] | None = None  # PAT elements open in this pharmacy
        self._patient: Patient | None = None  # last patient `add` encoded, and its elements
        self._patient_elements: list[str] = []
        self._prescriber: Prescriber | None = None  # likewise for PRE
        self._prescriber_elements: list[str] = []
        self._seen_dea: set[str] = set()
        self._closed = False
        self._emit(encode(self._table, "TH", header))
        self._emit(encode(self._table, "IS", header))

    # -- low level --
    def _emit(self, elements: list[str]) -> None:
        if elements[0] == "TH":
            # TH09 is the terminator itself: keep it even though it is the last element.
            text = join(elements[:-1], self._sep, self._term, 1) + self._sep + elements[-1]
        else:
            if len(elements) == 1:
                # An empty segment still carries one separator (PRE*~), as every other
                # writer sends it; bare IDs are dropped by some parsers, miscounting TP01.
                elements = [elements[0], ""]
            text = join(elements, self._sep, self._term, self.segments + 1)
        self._out.write((text + self._term).encode("latin-1", "replace"))
        self.segments += 1
        if self._pha_dea is not None:
            self._pha_segments += 1

    # -- grouping --
    def begin_pharmacy(self, pharmacy: Pharmacy) -> None:
        """Start a PHA group (ends the open one). Each DEA may appear once per file."""
        if self._closed:
            raise AsapError("writer is closed")
        self._end_pharmacy()
        if pharmacy.dea in self._seen_dea:
            raise AsapError(f"pharmacy {pharmacy.dea} appears twice; group records by DEA")
        self._seen_dea.add(pharmacy.dea)
        self._pha_dea = pharmacy.dea
        self._pha_segments = 0
        self._open_pat = None
        self.pharmacies += 1
        self._emit(encode(self._table, "PHA", pharmacy))

    def _end_pharmacy(self) -> None:
        if self._pha_dea is None:
            return
        if self._open_pat is None:
            raise AsapError(f"pharmacy {self._pha_dea} has no records")
        self._emit(["TP", str(self._pha_segments + 1)])
        self._pha_dea = None
        self._open_pat = None

    def add(self, pharmacy: Pharmacy, patient: Patient, fill: Dispensation) -> None:
        """Append one fill; opens a PHA / PAT when the pharmacy DEA / patient changes."""
        t = self._table
        if patient != self._patient:
            self._patient = patient
            self._patient_elements = encode(t, "PAT", patient)
        pat, dsp = self._patient_elements, encode(t, "DSP", fill)
        self.add_encoded(pharmacy, pat, dsp, fill.prescriber, fill.ingredients, fill.additional)

    def add_encoded(
        self,
        pharmacy: Pharmacy,
        pat: list[str],
        dsp: list[str],
        prescriber: Prescriber | None = None,
        ingredients: tuple[Ingredient, ...] = (),
        additional: AdditionalInfo | None = None,
    ) -> None:
        """`add` with PAT and DSP already encoded (the extract encodes database rows).

        A PAT opens when `pat` is not the very list of the previous record, so
        pass the same list for every fill of one patient.
        """
        if self._pha_dea != pharmacy.dea:
            self.begin_pharmacy(pharmacy)
        if pat is not self._open_pat:
            self._emit(pat)
            self._open_pat = pat
        t = self._table
        self._emit(dsp)
        self.records += 1
        if prescriber is not None:
            if prescriber is not self._prescriber:
                self._prescriber = prescriber
                self._prescriber_elements = encode(t, "PRE", prescriber)
            self._emit(self._prescriber_elements)
        for ing in ingredients:
            self._emit(encode(t, "CDI", ing))
        if additional is not None:
            self._emit(encode(t, "AIR", additional))

    def add_record(self, record: Record) -> None:
        self.add(record.pharmacy, record.patient, record.fill)

    def add_group(self, group: PharmacyGroup) -> None:
        self.begin_pharmacy(group.pharmacy)
        for pg in group.patients:
            if not pg.fills:
                raise AsapError("a patient group has no fills")
            self._open_pat = None  # a new PatientGroup always opens a PAT
            for fill in pg.fills:
                self.add(group.pharmacy, pg.patient, fill)

    def close(self) -> int:
        """Write the last TP and TT; returns TT02, the file's segment count."""
        if self._closed:
            return self.segments
        self._end_pharmacy()
        self._closed = True
        self._emit(["TT", self.header.control_number, str(self.segments + 1)])
        return self.segments

    def __enter__(self) -> AsapWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def write(file: AsapFile) -> bytes:
    """The whole file as bytes (small files, tests, fixtures)."""
    buf = io.BytesIO()
    w = AsapWriter(buf, file.header)
    for group in file.pharmacies:
        w.add_group(group)
    w.close()
    return buf.getvalue()


def write_records(out: BinaryIO, header: Header, records: Iterable[Record]) -> int:
    """Stream grouped records to `out`; returns the number of records written."""
    with AsapWriter(out, header) as w:
        for r in records:
            w.add(r.pharmacy, r.patient, r.fill)
    return w.records


def zero_report_message(start: date, end: date) -> str:
    """IS03 of a zero report: #CCYYMMDD#-#CCYYMMDD#."""
    return f"#{format_date(start)}#-#{format_date(end)}#"


def zero_report(header: Header, pharmacy: Pharmacy, start: date, end: date) -> AsapFile:
    """Nothing to report for `pharmacy` from `start` to `end`.

    IS03 carries the period, PAT07/PAT08 REPORT/ZERO, DSP05 the end date, and
    empty PRE, CDI and AIR follow as the known zero-report writers send them,
    each with one separator (``PRE*~CDI*~AIR*~``; TP01 = 7, TT02 = 10).
    """
    fill = Dispensation(
        date_filled=end,
        product_qualifier="",
        prescriber=Prescriber(),
        ingredients=(Ingredient(product_qualifier=""),),
        additional=AdditionalInfo(),
    )
    patient = Patient(last_name=ZERO_LAST_NAME, first_name=ZERO_FIRST_NAME)
    return AsapFile(
        replace(header, message=zero_report_message(start, end)),
        (PharmacyGroup(pharmacy, (PatientGroup(patient, (fill,)),)),),
    )
