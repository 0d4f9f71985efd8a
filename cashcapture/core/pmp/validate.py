"""The collector's rules applied before anything is sent. Pure: bytes, rules,
drug list and today's date in; a Report out.

Three outcomes, as the KY collector has them: a file-level error fails the
whole file; a record-level error rejects that record (the rest are
accepted); a warning leaves the record accepted. Messages follow the guide:

    Rec # (389), Segment (PAT), Element (20), Date Filled (20091026),
    Rx # (042070336): Required Field Value is Empty   (one line)

and reject reasons name the state's element: ``DIS_PRODUCT_ID : NDC Number
is not in State specified Drug List``. `validate_record` runs the same record
rules on one value Record, for the daily extract to hold back a bad record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from cashcapture.core.address import is_po_box
from cashcapture.core.ids import ascii_digits, dea_ok
from cashcapture.core.ids import ssn_ok as ssn_is_valid
from cashcapture.core.pmp.asap import KIND_DATE, KIND_DECIMAL, KIND_NUMERIC, Element, table
from cashcapture.core.pmp.asap.codec import (
    DECIMAL_PATTERN as _DECIMAL,
)
from cashcapture.core.pmp.asap.codec import (
    AsapError,
    RawRecord,
    Trailer,
    encode,
    format_date,
    split,
    structure,
)
from cashcapture.core.pmp.records import Record
from cashcapture.core.pmp.rules import (
    COMPOUND_FIRST_INGREDIENT,
    KY_PO_BOX_PATTERN,
    PO_BOX_OFF,
    PO_BOX_WARNING,
    ElementRule,
    StateRules,
)
from cashcapture.core.pmp.rules.ky import KY

FATAL = "file failed"
REJECT = "reject"
WARNING = "warning"

_TIME = re.compile(r"([01]\d|2[0-3])[0-5]\d(?:[0-5]\d)?\Z")
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

__all__ = [
    "FATAL",
    "REJECT",
    "WARNING",
    "Problem",
    "Report",
    "Validator",
    "ssn_is_valid",
    "validate",
    "validate_record",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding, with what the guide's messages and reject table show."""

    severity: str  # FATAL / REJECT / WARNING
    segment: str
    element: int  # number printed as "Element (n)"; 0 when the finding is about a segment
    element_id: str
    text: str  # message tail, e.g. "Required Field Value is Empty"
    state_element: str  # e.g. PAT_PATIENT_ADDRESS_1
    reason: str  # reject reason tail
    rec: int = 0  # Rec #: ordinal of the DSP in the file
    date_filled: str = ""
    rx_number: str = ""
    facility_id: str = ""  # PHA03
    refill_code: str = ""  # DSP06
    ndc: str = ""  # DSP08
    position: int = 0  # segment ordinal in the file, for file-level problems

    @property
    def message(self) -> str:
        if self.severity == FATAL:
            where = f"Segment ({self.segment})"
            if self.element:
                where += f", Element ({self.element})"
            if self.position:
                where = f"Segment # ({self.position}), " + where
            return f"File Failed: {where}: {self.text}"
        return (
            f"Rec # ({self.rec}), Segment ({self.segment}), Element ({self.element}), "
            f"Date Filled ({self.date_filled}), Rx # ({self.rx_number}): {self.text}"
        )

    @property
    def reject_reason(self) -> str:
        return f"{self.state_element} : {self.reason}"


@dataclass
class Report:
    """Result of validating one file."""

    state: str
    records: int = 0
    problems: list[Problem] = field(default_factory=list)
    drug_list_applied: bool = False

    @property
    def file_errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == FATAL]

    @property
    def rejects(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == REJECT]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def failed(self) -> bool:
        return any(p.severity == FATAL for p in self.problems)

    @property
    def rejected_records(self) -> set[int]:
        return {p.rec for p in self.problems if p.severity == REJECT}

    @property
    def valid_records(self) -> int:
        return 0 if self.failed else self.records - len(self.rejected_records)

    @property
    def status(self) -> str:
        return "File Failed" if self.failed else "Accept"

    @property
    def exit_code(self) -> int:
        """0 all accepted, 1 some records rejected, 2 the file failed."""
        if self.failed:
            return 2
        return 1 if self.rejected_records else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "status": self.status,
            "records": self.records,
            "valid_records": self.valid_records,
            "rejected_records": sorted(self.rejected_records),
            "drug_list_applied": self.drug_list_applied,
            "problems": [
                {**asdict(p), "message": p.message, "reject_reason": p.reject_reason}
                for p in self.problems
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def reject_table(self) -> list[tuple[str, str, str, str, str, str]]:
        """Rows as the collector's Submission Details show them (rejects and warnings)."""
        return [
            (p.facility_id, p.refill_code, p.rx_number, p.date_filled, p.ndc, p.reject_reason)
            for p in self.problems
            if p.severity != FATAL
        ]

    def to_text(self, name: str = "") -> str:
        lines = []
        head = f"{name}: " if name else ""
        lines.append(
            f"{head}{self.status} - {self.records} records in file, "
            f"{self.valid_records} valid records, {len(self.warnings)} warnings"
        )
        if not self.drug_list_applied:
            lines.append("(no drug list: NDCs not checked against the state's drug list)")
        for p in self.problems:
            lines.append(("WARNING - " if p.severity == WARNING else "") + p.message)
        rows = self.reject_table()
        if rows:
            cols = (
                "Facility ID",
                "Refill Code",
                "Rx Number",
                "Date Filled",
                "NDC Number",
                "Reject Reason",
            )
            widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
            lines.append("")
            lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
            lines.append("  ".join("-" * w for w in widths))
            for r in rows:
                lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        return "\n".join(lines)


# --- pure helpers -----------------------------------------------------------


def _date_ok(s: str) -> bool:
    if len(s) != 8 or not ascii_digits(s):
        return False
    y, m, d = int(s[:4]), int(s[4:6]), int(s[6:])
    if not 1 <= m <= 12 or not 1 <= d <= _DAYS[m]:
        return False
    return not (m == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))


def _drug_lookup(drug_list: Any) -> Callable[[str], bool] | None:
    if drug_list is None:
        return None
    lookup: Callable[[str], bool]
    if hasattr(drug_list, "is_reportable"):
        lookup = drug_list.is_reportable
    elif callable(drug_list):
        lookup = drug_list
    elif hasattr(drug_list, "__contains__"):
        lookup = drug_list.__contains__
    else:
        raise TypeError("drug_list must have .is_reportable(ndc), be callable or be a set of NDCs")
    return lookup
    raise TypeError("drug_list must have .is_reportable(ndc), be callable or be a set of NDCs")


# --- the engine -------------------------------------------------------------

# A finding before it is tied to a record: (rule, message key, format params, severity)
Finding = tuple[ElementRule, str, dict[str, str] | None, str]


class Validator:
    """Rules compiled once for a run: tables become dicts and sets, caches are per run."""

    def __init__(self, rules: StateRules = KY, drug_list: Any = None, *, today: date):
        self.rules = rules
        self.today = format_date(today)
        self.in_list = _drug_lookup(drug_list)
        self._drug_cache: dict[str, bool] = {}
        self._dea_cache: dict[str, bool] = {}
        self._date_cache: dict[str, bool] = {}
        self._po_box = rules.po_box != PO_BOX_OFF
        self._po_severity = WARNING if rules.po_box == PO_BOX_WARNING else REJECT
        self._seg = rules.segments
        self._width = {s: len(rs) + 1 for s, rs in rules.segments.items()}
        self._last_pha: list[str] | None = None
        self._last_pha_findings: list[Finding] = []
        self._last_pat: list[str] | None = None
        self._last_pat_findings: list[Finding] = []
        self._last_zero = False
        self._pre_cache: dict[tuple[str, ...], list[Finding]] = {}
        self._last_values: tuple[Any, list[str], Any, list[str]] | None = None
        # Special checks by name: (value, padded segment values) -> finding keys
        self._special: dict[str, Callable[[ElementRule, str, list[str]], Iterable[Finding]]] = {
            "time": self._c_time,
            "dea": self._c_dea,
            "us_state": self._c_us_state,
            "us_state_unless_foreign": self._c_us_state_unless_foreign,
            "zip_unless_foreign": self._c_zip,
            "country": self._c_country,
            "patient_id": self._c_patient_id,
            "po_box": self._c_po_box,
            "not_future": self._c_not_future,
            "after_1900": self._c_after_1900,
            "written_before_filled": self._c_written_before_filled,
            "ndc": self._c_ndc,
            "drug_list": self._c_drug_list,
            "positive": self._c_positive,
            "sequence": _no_findings,  # needs the ingredient's index: done per record
        }
        self._extra = {seg: _extra_rule(seg, w) for seg, w in self._width.items()}
        self._plans = {
            seg: tuple(
                (
                    r.element.position,
                    r,
                    r.required,
                    r.element.max_length,
                    r.element.kind,
                    r.codes,
                    r.fixed,
                    tuple(self._special[c] for c in r.checks),
                )
                for r in rs
            )
            for seg, rs in rules.segments.items()
        }

    # -- element checks --
    def check_segment(self, vals: list[str], severity: str = REJECT) -> list[Finding]:
        """Findings for one segment's element list (index 0 = segment ID)."""
        seg = vals[0]
        width = self._width[seg]
        out: list[Finding] = []
        n = len(vals)
        if n > width:
            out.append((self._extra[seg], "extra", None, severity))
            vals = vals[:width]
        elif n < width:
            vals = vals + [""] * (width - n)
        date_cache = self._date_cache
        for pos, r, required, max_length, kind, codes, fixed, specials in self._plans[seg]:
            v = vals[pos]
            if not v:
                if required:
                    out.append((r, "required", None, severity))
                continue
            if max_length is not None and len(v) > max_length:
                out.append((r, "too_long", {"max_length": str(max_length)}, severity))
                continue
            if kind is KIND_NUMERIC:
                if not ascii_digits(v):
                    out.append((r, "numeric", None, severity))
                    continue
            elif kind is KIND_DATE:
                ok = date_cache.get(v)
                if ok is None:
                    ok = date_cache[v] = _date_ok(v)
                if not ok:
                    out.append((r, "date", None, severity))
                    continue
            elif kind is KIND_DECIMAL and not _DECIMAL.match(v):
                out.append((r, "decimal", None, severity))
                continue
            if codes is not None and v not in codes:
                out.append((r, "code", None, severity))
                continue
            if fixed is not None and v != fixed:
                out.append((r, "fixed", {"fixed": fixed}, severity))
                continue
            for fn in specials:
                for f in fn(r, v, vals):
                    out.append(f if f[3] != REJECT or severity == REJECT else f[:3] + (severity,))
        return out

    def _c_time(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        return () if _TIME.match(v) else ((r, "time", None, REJECT),)

    def _c_dea(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        ok = self._dea_cache.get(v)
        if ok is None:
            ok = self._dea_cache[v] = dea_ok(v)
        return () if ok else ((r, "dea", None, REJECT),)

    def _c_us_state(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        return () if v in self.rules.us_states else ((r, "us_state", None, REJECT),)

    def _c_us_state_unless_foreign(
        self, r: ElementRule, v: str, vals: list[str]
    ) -> Iterable[Finding]:
        if vals[22] or v in self.rules.us_states:  # PAT22 country of a non-US resident
            return ()
        return ((r, "us_state", None, REJECT),)

    def _c_zip(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        if vals[22] or (len(v) in (5, 9) and ascii_digits(v)):
            return ()
        return ((r, "zip", None, REJECT),)

    def _c_country(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        return () if v in self.rules.countries else ((r, "country", None, REJECT),)

    def _c_patient_id(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        fmt = self.rules.patient_ids.get(vals[2])
        if fmt is None:
            return ()  # PAT02 itself is reported as an invalid code
        out: list[Finding] = []
        if fmt.pattern is None:
            ok = ssn_is_valid(v, self.rules.ssn)
        else:
            ok = fmt.pattern.match(v) is not None
        if not ok:
            out.append((r, "patient_id", {"qualifier": vals[2]}, REJECT))
        if fmt.jurisdiction_required and not vals[1]:
            out.append((self.rules.rule(f"{vals[0]}01"), "jurisdiction", None, REJECT))
        return out

    def _c_po_box(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        if self._po_box and is_po_box(v):
            return ((r, "po_box", {"pattern": KY_PO_BOX_PATTERN}, self._po_severity),)
        return ()

    def _c_not_future(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        return ((r, "not_future", None, REJECT),) if v > self.today else ()

    def _c_after_1900(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        return ((r, "after_1900", None, REJECT),) if int(v[:4]) < self.rules.min_birth_year else ()

    def _c_written_before_filled(
        self, r: ElementRule, v: str, vals: list[str]
    ) -> Iterable[Finding]:
        filled = vals[5]  # DSP05
        if v > filled and _date_ok(filled):
            return ((r, "written_before_filled", None, REJECT),)
        return ()

    def _c_ndc(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        qualifier = vals[7] if vals[0] == "DSP" else vals[2]  # DSP07 / CDI02
        if qualifier == "01" and not (len(v) == 11 and ascii_digits(v)):
            return ((r, "ndc", None, REJECT),)
        return ()

    def _c_drug_list(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        qualifier = vals[7] if vals[0] == "DSP" else vals[2]  # DSP07 / CDI02: 01 = NDC
        if vals[0] == "CDI" and self.rules.compound != COMPOUND_FIRST_INGREDIENT:
            return ()  # 06 + CDI reports bases and fillers too: see _compound
        if self.in_list is None or qualifier != "01" or not (len(v) == 11 and ascii_digits(v)):
            return ()
        return () if self._listed(v) else ((r, "drug_list", None, REJECT),)

    def _c_positive(self, r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
        return () if v.strip("0.") else ((r, "positive", None, REJECT),)

    def _listed(self, ndc: str) -> bool:
        ok = self._drug_cache.get(ndc)
        if ok is None:
            ok = self._drug_cache[ndc] = bool(self.in_list(ndc))  # type: ignore[misc]
        return ok

    # -- records --
    def checked_elsewhere(self, pha: list[str]) -> None:
        """Take records carrying this very PHA list as having a pharmacy without findings.

        The counter judges a claim's record without its pharmacy (the registry
        checks that), and so spends nothing on a PHA it would only discard.
        """
        self._last_pha = pha
        self._last_pha_findings = []

    def check_record(self, rec: RawRecord) -> list[Problem]:
        """Problems of one DSP record, its PHA / PAT findings included."""
        if rec.pha is not self._last_pha:
            self._last_pha = rec.pha
            self._last_pha_findings = self.check_segment(rec.pha)
        if rec.pat is not self._last_pat:
            self._last_pat = rec.pat
            pat = rec.pat
            self._last_zero = (
                len(pat) > 8 and pat[7].upper() == "REPORT" and pat[8].upper() == "ZERO"
            )
            self._last_pat_findings = [] if self._last_zero else self.check_segment(pat)
        findings = self._last_pha_findings + self._last_pat_findings
        dsp = rec.dsp
        if self._last_zero:
            filled = dsp[5] if len(dsp) > 5 else ""
            r = self.rules.rule("DSP05")
            if not _date_ok(filled):
                findings.append((r, "date", None, REJECT))
            elif filled > self.today:
                findings.append((r, "not_future", None, REJECT))
        else:
            findings += self.check_segment(dsp)
            pre = rec.pre if rec.pre is not None else ["PRE"]
            key = tuple(pre)
            pf = self._pre_cache.get(key)
            if pf is None:
                pf = self._pre_cache[key] = self.check_segment(pre)
                if len(self._pre_cache) > 100_000:
                    self._pre_cache.clear()
            findings += pf
            for c in rec.cdi:
                findings += self.check_segment(c)
            if rec.air is not None:
                findings += self.check_segment(rec.air)
            if rec.cdi or (len(dsp) > 7 and dsp[7] == "06"):
                findings += self._compound(rec)
        if not findings:
            return []
        return self._problems(rec, findings)

    def _compound(self, rec: RawRecord) -> list[Finding]:
        out: list[Finding] = []
        r = self.rules.rule("DSP08")
        dsp = rec.dsp
        if self.rules.compound == COMPOUND_FIRST_INGREDIENT and len(dsp) > 7 and dsp[7] == "06":
            out.append((self.rules.rule("DSP07"), "compound_as_product", None, REJECT))
        if not rec.cdi and not out:
            return [(r, "compound", None, REJECT)]
        seq = [c[1] if len(c) > 1 else "" for c in rec.cdi]
        if seq != [str(i) for i in range(1, len(seq) + 1)]:
            out.append((self.rules.rule("CDI01"), "sequence", None, REJECT))
        if self.in_list is not None and self.rules.compound != COMPOUND_FIRST_INGREDIENT:
            # 06 + CDI: the compound is reportable when one ingredient is listed (each
            # CDI03 is checked on its own where only controlled ingredients are reported)
            ndcs = [c[3] for c in rec.cdi if len(c) > 3 and len(c[3]) == 11 and ascii_digits(c[3])]
            if not any(self._listed(n) for n in ndcs):
                out.append((r, "drug_list", None, REJECT))
        return out

    def _problems(self, rec: RawRecord, findings: list[Finding]) -> list[Problem]:
        dsp = rec.dsp
        get = dsp.__getitem__
        n = len(dsp)
        ctx = dict(
            rec=rec.number,
            date_filled=get(5) if n > 5 else "",
            rx_number=get(2) if n > 2 else "",
            refill_code=get(6) if n > 6 else "",
            ndc=get(8) if n > 8 else "",
            facility_id=rec.pha[3] if len(rec.pha) > 3 else "",
        )
        return [self._problem(f, **ctx) for f in findings]

    def _problem(self, f: Finding, **ctx: Any) -> Problem:
        r, key, params, severity = f
        text, reason = self.rules.messages[key]
        if params:
            text = text.format(**params)
            reason = reason.format(**params)
        return Problem(
            severity=severity,
            segment=r.element.segment,
            element=r.number,
            element_id=r.element.id,
            text=text,
            state_element=r.state_name,
            reason=reason,
            **ctx,
        )

    def fatal(self, exc: AsapError) -> Problem:
        seg = exc.segment_id if exc.segment_id in self._seg else ""
        return Problem(
            severity=FATAL,
            segment=seg or "?",
            element=0,
            element_id="",
            text=exc.reason,
            state_element=f"{seg or 'FILE'}_STRUCTURE",
            reason=exc.reason,
            position=exc.segment or 0,
        )

    # -- files --
    def validate(self, data: bytes) -> Report:
        report = Report(self.rules.state, drug_list_applied=self.in_list is not None)
        problems = report.problems
        try:
            sp = split(data)
        except AsapError as exc:
            problems.append(self.fatal(exc))
            return report
        th = sp.segments[0].split(sp.separator)
        heads = [(th, 1)]
        if len(sp.segments) > 1:
            heads.append((sp.segments[1].split(sp.separator), 2))
        for vals, pos in heads:
            if vals[0] in ("TH", "IS"):
                for f in self.check_segment(vals, FATAL):
                    problems.append(self._problem(f, position=pos))
        trailer = Trailer(th)
        check = self.check_record
        try:
            for rec in structure(sp, trailer):
                found = check(rec)
                if found:
                    problems.extend(found)
        except AsapError as exc:
            problems.append(self.fatal(exc))
        report.records = trailer.records
        return report


def _extra_rule(seg: str, position: int) -> ElementRule:
    """Stands for an element past the last one the version defines."""
    el = Element(seg, f"{seg}{position:02d}", position, "", "", "", "", "text", None, (), "")
    return ElementRule(el, False, None, None, (), f"{seg}_ELEMENT_{position}", position)


def _no_findings(r: ElementRule, v: str, vals: list[str]) -> Iterable[Finding]:
    return ()


def validate(data: bytes, rules: StateRules = KY, drug_list: Any = None, *, today: date) -> Report:
    """Validate a whole file. `today` is the collector's clock (no future dates)."""
    return Validator(rules, drug_list, today=today).validate(data)


def validate_record(
    record: Record,
    rules: StateRules = KY,
    drug_list: Any = None,
    *,
    today: date,
    number: int = 0,
    validator: Validator | None = None,
    terminator: str = "~",
) -> list[Problem]:
    """Problems of one value Record, as the file validator would find them.

    Pass a `validator` (Validator(rules, drug_list, today=...)) when checking
    many records: it keeps its compiled tables and caches.
    """
    v = validator or Validator(rules, drug_list, today=today)
    t = table(v.rules.version)
    fill = record.fill
    # Reuse the encoded PHA / PAT of the previous call when unchanged, so the
    # validator's per-pharmacy / per-patient results are reused as in a file.
    last = v._last_values
    if last is not None and last[0] == record.pharmacy:
        pha = last[1]
    else:
        pha = encode(t, "PHA", record.pharmacy)
    if last is not None and last[2] == record.patient:
        pat = last[3]
    else:
        pat = encode(t, "PAT", record.patient)
    v._last_values = (record.pharmacy, pha, record.patient, pat)
    raw = RawRecord(
        number=number,
        pha=pha,
        pat=pat,
        dsp=encode(t, "DSP", fill),
        pre=None if fill.prescriber is None else encode(t, "PRE", fill.prescriber),
        cdi=[encode(t, "CDI", i) for i in fill.ingredients],
        air=None if fill.additional is None else encode(t, "AIR", fill.additional),
        segment=0,
    )
    problems = v.check_record(raw)
    bad = _delimiters(raw, terminator)
    if bad:
        problems += [
            v._problem((v.rules.rule(eid), "delimiter", None, REJECT), rec=number) for eid in bad
        ]
    return problems


def _delimiters(raw: RawRecord, terminator: str) -> list[str]:
    """Element IDs whose value would break the file (separator, terminators, line breaks)."""
    out = []
    segs = [raw.pha, raw.pat, raw.dsp, *(s for s in (raw.pre, raw.air) if s), *raw.cdi]
    for s in segs:
        text = "*".join(s)
        if text.count("*") == len(s) - 1 and terminator not in text and "\n" not in text:
            if "\r" not in text:
                continue
        for i, v in enumerate(s[1:], 1):
            if "*" in v or terminator in v or "\n" in v or "\r" in v:
                out.append(f"{s[0]}{i:02d}")
    return out
