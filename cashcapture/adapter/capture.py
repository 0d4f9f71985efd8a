"""Claim -> fill: which NCPDP field feeds which Fill column and ASAP 4.1 element.

FIELD_MAP is the one table (issue 8's certification reuses it): for every
field the PMP needs it names the NCPDP field, the segment it sits in, the Fill
column, the ASAP element, the reject code a pharmacy system understands, and
the rule that reads and checks the raw value. `extract_fill` runs the table
over one transaction and returns the Fill values plus the problems found.
Pure: no database, no clock (the date of service bounds "future" dates).

Problem messages name fields, never their values: values are patient data.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from cashcapture.core import drugs, ids
from cashcapture.core.address import is_po_box
from cashcapture.core.ids import ascii_digits
from cashcapture.core.pmp.carry import REASON as CARRY_REASON
from cashcapture.core.pmp.carry import carriable
from ncpdp import Segment, typed
from ncpdp.dictionary import FIELDS, field_name
from ncpdp.message import FS

HEADER = "HDR"  # pseudo segment id: the value comes from the request header


@dataclass(frozen=True)
class FieldMap:
    code: str  # NCPDP field ID ("CB")
    segment: str  # segment id it is read from ("01"), or HEADER
    column: str | None  # Fill column it feeds (None: checked only)
    asap: str | None  # ASAP 4.1 element it feeds ("PAT07")
    reject: str  # NCPDP reject code when missing or invalid
    required: bool  # the state needs it (Kentucky table)
    rule: str  # name of a rule in RULES


class Invalid(ValueError):
    """A value a rule refuses; ``reason`` names the problem, never the value."""

    def __init__(self, reason: str, reject: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reject = reject


# fmt: off
# Fill columns that decide where a fill is reported, not what its record says.
ROUTING_COLUMNS = frozenset({"service_type"})

FIELD_MAP: tuple[FieldMap, ...] = (
    # code  seg     Fill column              ASAP     reject req   rule
    FieldMap("CO", "01", "patient_id_jurisdiction", "PAT01", "CO", False, "id_jurisdiction"),
    FieldMap("CX", "01", "patient_id_qualifier", "PAT02", "CX", True, "patient_id_qualifier"),
    FieldMap("CY", "01", "patient_id", "PAT03", "CY", True, "text"),
    FieldMap("CB", "01", "patient_last_name", "PAT07", "CB", True, "text"),
    FieldMap("CA", "01", "patient_first_name", "PAT08", "CA", True, "text"),
    FieldMap("CM", "01", "patient_address1", "PAT12", "CM", True, "street"),
    FieldMap("CN", "01", "patient_city", "PAT14", "CN", True, "text"),
    FieldMap("CO", "01", "patient_state", "PAT15", "CO", True, "us_state"),
    FieldMap("CP", "01", "patient_zip", "PAT16", "CP", True, "zip"),
    FieldMap("CQ", "01", "patient_phone", "PAT17", "CQ", False, "phone"),
    FieldMap("C4", "01", "patient_dob", "PAT18", "09", True, "dob"),
    FieldMap("C5", "01", "patient_gender", "PAT19", "10", True, "gender"),
    FieldMap("D2", "07", "rx_number", "DSP02", "16", True, "rx_number"),
    FieldMap("DE", "07", "date_written", "DSP03", "28", True, "date_written"),
    FieldMap("DF", "07", "refills_authorized", "DSP04", "29", True, "refills"),
    FieldMap("D1", HEADER, "date_of_service", "DSP05", "15", True, "date_of_service"),
    FieldMap("D3", "07", "fill_number", "DSP06", "17", True, "fill_number"),
    FieldMap("E1", "07", "product_id_qualifier", "DSP07", "E1", True, "product_qualifier"),
    FieldMap("D7", "07", "ndc", "DSP08", "21", True, "ndc"),
    FieldMap("E7", "07", "quantity", "DSP09", "E7", True, "quantity"),
    FieldMap("D5", "07", "days_supply", "DSP10", "19", True, "days_supply"),
    FieldMap("28", "07", "dosage_units", "DSP11", "26", False, "unit_of_measure"),
    FieldMap("DJ", "07", "rx_origin", "DSP12", "33", False, "rx_origin"),
    FieldMap("HD", "07", "partial_fill", "DSP13", "HD", False, "partial_fill"),
    FieldMap("U7", "07", "service_type", None, "U7", False, "service_type"),
    FieldMap("EZ", "03", None, None, "EZ", True, "dea_qualifier"),
    FieldMap("DB", "03", "prescriber_dea", "PRE02", "25", True, "dea"),
    FieldMap("DR", "03", "prescriber_last_name", "PRE05", "DR", False, "text"),
    FieldMap("2J", "03", "prescriber_first_name", "PRE06", "2J", False, "text"),
)

# NCPDP 331-CX Patient ID Qualifier -> ASAP 4.1 PAT02 Patient ID Qualifier.
# 331-CX values (NCPDP External Code List): the NCPDP type tables of a public
# Go claims library (gist ziyuji-pillpack/42d5d3e80b62c284432d3437c3dd2493,
# "PatientIDKinds", 2024) and a pharmacy data warehouse's decode of the same
# qualifier list (LookML view, "ALTERNATE_CARDHOLDER_NUM_QUAL") agree code for
# code. PAT02 values: ../shared/reference/asap/code-lists.csv ("PAT02 ID
# qualifier", verified against VistA PSO*7*451 and the KY guide's PAT02 table).
# An NCPDP type with no ASAP twin is 99, "other agreed upon ID (cardholder)".
PATIENT_ID_QUALIFIER = {
    "01": "07",  # Social Security Number -> Social Security Number
    "1J": "99",  # Facility ID Number -> other
    "02": "06",  # Driver's License Number -> Driver's License ID
    "03": "01",  # U.S. Military ID -> Military ID
    "04": "99",  # Non-SSN-based patient identifier assigned by health plan -> other
    "05": "99",  # SSN-based patient identifier assigned by health plan -> other
    "06": "99",  # Medicaid ID -> other
    "07": "02",  # State Issued ID -> State Issued ID
    "08": "05",  # Passport ID -> Passport ID
    "09": "99",  # Medicare HIC / Medicare Beneficiary ID -> other
    "10": "99",  # Employer Assigned ID -> other
    "11": "99",  # Payer/PBM Assigned ID -> other
    "12": "04",  # Alien Number (Government Permanent Residence Number) -> Green Card
    "13": "99",  # Government Student VISA Number -> other
    "14": "08",  # Indian Tribal ID -> Tribal ID
    "15": "99",  # NCPDP Universal Patient Identifier (later ECL) -> other
    "16": "99",  # LexID Universal Patient Identifier (later ECL) -> other
    "99": "99",  # Other -> other
    "EA": "03",  # Medical Record Identification Number (EHR) -> Unique System ID
}
# PAT02 IDs issued by a US state: PAT01 must name the state (KY guide, Appendix
# B: "All information relating to the jurisdictional origin of US issued
# identification must be conveyed in the PAT01 field"; code-lists.csv: PAT01
# "used when PAT02=02 or 06"). D.0 has no field for it, and a state issues
# its driver's licences and ID cards to its residents, so PAT01 is the
# patient's state (324-CO).
JURISDICTION_IDS = frozenset({"02", "06"})
GENDER = {"0": "U", "1": "M", "2": "F", "3": "U"}  # 305-C5 -> PAT19
RX_ORIGIN = {"1": "01", "2": "02", "3": "05", "4": "04", "5": "99"}  # 419-DJ -> DSP12
UNIT_OF_MEASURE = {"EA": "01", "ML": "02", "GM": "03"}  # 600-28 -> DSP11
PARTIAL_FILL = {"P": "01", "C": "01"}  # 343-HD -> DSP13 (01 partial, else 02)
NDC_QUALIFIER = "03"  # 436-E1 value for an NDC
DEA_QUALIFIER = "12"  # 466-EZ value for a DEA number
COMPOUND_CODE = "2"  # 406-D6
COMPOUND_PRODUCT = ("06", "99999999999")  # DSP07 / DSP08 of a compound
# fmt: on

# US states and possessions as the state's collector takes them (KY guide,
# Appendix B, Table 1; cashcapture/core/pmp/rules/data/us-states.csv, kept equal by a test).
US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI FM MH PW".split()
)


@dataclass(frozen=True)
class Context:
    """What rules may look at besides the raw value."""

    date_of_service: dt.date | None
    values: Mapping[str, str]  # stripped raw values of this transaction by field code


@functools.lru_cache(maxsize=4096)
def _date(raw: str) -> dt.date:
    # cached: a claim reads the same dates of service, birth and writing again and again
    try:
        return typed("DE", raw)  # type: ignore[return-value]  # any CCYYMMDD field
    except ValueError:
        raise Invalid("not a CCYYMMDD date") from None


def _int(raw: str, lo: int, hi: int) -> int:
    if not ascii_digits(raw):
        raise Invalid("not a number")
    value = int(raw)
    if not lo <= value <= hi:
        raise Invalid(f"must be {lo}-{hi}")
    return value


def _text(raw: str, ctx: Context) -> str:
    return raw


def _street(raw: str, ctx: Context) -> str:
    if is_po_box(raw):
        raise Invalid("PO Box not accepted, street address needed")
    return raw


def _us_state(raw: str, ctx: Context) -> str:
    if raw.upper() not in US_STATES:
        raise Invalid("not a 2-letter US state code")
    return raw.upper()


def _zip(raw: str, ctx: Context) -> str:
    digits = raw.replace("-", "")
    if not (ascii_digits(digits) and len(digits) in (5, 9)):
        raise Invalid("must be a 5 or 9 digit ZIP")
    return digits


def _phone(raw: str, ctx: Context) -> str | None:
    return raw if ascii_digits(raw) and len(raw) == 10 else None


def _dob(raw: str, ctx: Context) -> dt.date:
    d = _date(raw)
    if d.year <= 1900:
        raise Invalid("must be after 1900")
    if ctx.date_of_service and d > ctx.date_of_service:
        raise Invalid("after the date of service")
    return d


def _gender(raw: str, ctx: Context) -> str:
    try:
        return GENDER[raw]
    except KeyError:
        raise Invalid("must be 0, 1, 2 or 3") from None


def _patient_id_qualifier(raw: str, ctx: Context) -> str:
    try:
        return PATIENT_ID_QUALIFIER[raw.upper()]
    except KeyError:
        raise Invalid("unknown patient ID qualifier") from None


def _id_jurisdiction(raw: str, ctx: Context) -> str | None:
    """PAT01: the patient's state when the ID is a driver's licence or state ID, else none."""
    qualifier = PATIENT_ID_QUALIFIER.get(ctx.values.get("CX", "").upper())
    state = raw.upper()
    return state if qualifier in JURISDICTION_IDS and state in US_STATES else None


def _rx_number(raw: str, ctx: Context) -> str:
    if not ascii_digits(raw) or int(raw) == 0:
        raise Invalid("must be a non-zero number")
    return raw.lstrip("0")


def _date_written(raw: str, ctx: Context) -> dt.date:
    d = _date(raw)
    if ctx.date_of_service and d > ctx.date_of_service:
        raise Invalid("after the date of service")
    return d


def _refills(raw: str, ctx: Context) -> int:
    return _int(raw, 0, 99)


def _date_of_service(raw: str, ctx: Context) -> dt.date:
    return _date(raw)


def _fill_number(raw: str, ctx: Context) -> int:
    return _int(raw, 0, 99)


def _product_qualifier(raw: str, ctx: Context) -> str:
    if ctx.values.get("D6") == COMPOUND_CODE:
        return COMPOUND_PRODUCT[0]
    if raw != NDC_QUALIFIER:
        raise Invalid("must be 03 (NDC) for the PMP")
    return "01"


def normalize_ndc(raw: str) -> str:
    """11-digit NDC (the drug list's reading), or Invalid."""
    try:
        return drugs.normalize_ndc(raw)
    except ValueError:
        raise Invalid("must be an 11-digit NDC") from None


def _ndc(raw: str, ctx: Context) -> str:
    if ctx.values.get("D6") == COMPOUND_CODE:
        return COMPOUND_PRODUCT[1]
    return normalize_ndc(raw)


def quantity(raw: str) -> Decimal:
    """9(7)v999 wire value -> Decimal (implied 3 decimals)."""
    try:
        return typed("E7", raw)  # type: ignore[return-value]
    except ValueError:
        raise Invalid("not a quantity") from None


def _quantity(raw: str, ctx: Context) -> Decimal:
    q = quantity(raw)
    if q <= 0:
        raise Invalid("must be more than zero")
    return q


def _days_supply(raw: str, ctx: Context) -> int:
    return _int(raw, 1, 999)


def _unit_of_measure(raw: str, ctx: Context) -> str | None:
    return UNIT_OF_MEASURE.get(raw.upper())


def _rx_origin(raw: str, ctx: Context) -> str | None:
    return RX_ORIGIN.get(raw)


def _service_type(raw: str, ctx: Context) -> str | None:
    """147-U7 as two digits (05 = mail order: reported to the patient's state too)."""
    return f"{int(raw):02d}" if len(raw) <= 2 and ascii_digits(raw) else None


def _partial_fill(raw: str, ctx: Context) -> str:
    return PARTIAL_FILL.get(raw.upper(), "02")


def _dea_qualifier(raw: str, ctx: Context) -> None:
    if raw != DEA_QUALIFIER:
        raise Invalid("must be 12 (DEA) for the PMP")


def _dea(raw: str, ctx: Context) -> str:
    dea = raw.upper()
    if not ids.dea_ok(dea):
        raise Invalid("not a valid DEA number")
    return dea


RULES: dict[str, Callable[[str, Context], object]] = {
    "text": _text,
    "street": _street,
    "us_state": _us_state,
    "zip": _zip,
    "phone": _phone,
    "dob": _dob,
    "gender": _gender,
    "patient_id_qualifier": _patient_id_qualifier,
    "id_jurisdiction": _id_jurisdiction,
    "rx_number": _rx_number,
    "date_written": _date_written,
    "refills": _refills,
    "date_of_service": _date_of_service,
    "fill_number": _fill_number,
    "product_qualifier": _product_qualifier,
    "ndc": _ndc,
    "quantity": _quantity,
    "days_supply": _days_supply,
    "unit_of_measure": _unit_of_measure,
    "rx_origin": _rx_origin,
    "partial_fill": _partial_fill,
    "service_type": _service_type,
    "dea_qualifier": _dea_qualifier,
    "dea": _dea,
}
# Text rules whose refused value still goes to the store when the claim is not
# judged at the counter (insured): the state's validator then names the real
# reason ("PO Box is not allowed") instead of "Required Field Value is Empty".
# Only rules whose store column is as wide as the NCPDP field.
_KEPT_WHEN_INVALID = frozenset({"street", "us_state"})
# Which of the table's rules a compound claim skips (its product is in segment 10).
_COMPOUND_SKIP = frozenset({"D7"})


MISSING = "missing"  # Problem.reason of a field not sent
_NONE: dict[str, str] = {}


def field_id(code: str) -> str:
    """The NCPDP field ID of a field code ("C4" -> "304-C4"), the code when unknown."""
    f = FIELDS.get(code)
    return f.field_id if f else code


@dataclass(frozen=True)
class Problem:
    """A PMP field missing or invalid: the reject code, the field and why (no value)."""

    reject: str
    field: str  # NCPDP field code; an ASAP element ID ("PRE01") when no field feeds it
    reason: str  # MISSING, or why the value is refused

    @property
    def name(self) -> str:
        """The field's name ("Date Of Birth"), or the ASAP element no NCPDP field feeds."""
        return field_name(self.field) if self.field in FIELDS else f"ASAP {self.field}"

    @property
    def message(self) -> str:
        """Names the field, never its value: "PMP: Date Of Birth missing"."""
        return f"PMP: {self.name} {self.reason}"


@dataclass(frozen=True)
class Extracted:
    values: dict[str, object]  # Fill column -> value
    ingredients: list[dict[str, object]]
    problems: list[Problem]


def first_value(segments: Sequence[Segment], code: str) -> str | None:
    """Stripped raw value of the first field ``code`` over the segments, in order, or None."""
    for seg in segments:
        raw = seg.get(code)
        if raw is not None:
            return raw.strip()
    return None


def wire_values(seg: Segment) -> dict[str, str]:
    """Field code -> raw value (first occurrence, not stripped) of one segment.

    Read from the wire text in one split (a parsed segment keeps it) instead of
    a Python loop over every field.
    """
    out = {part[:2]: part[2:] for part in reversed(seg.wire().split(FS))}
    out.pop("", None)  # the text before the first separator
    return out


class FirstValues(Mapping[str, str]):
    """Field code -> stripped raw value (first occurrence), stripped when read."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, str]) -> None:
        self._raw = raw

    def get(self, code: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._raw.get(code)
        return default if value is None else value.strip()

    def __getitem__(self, code: str) -> str:
        return self._raw[code].strip()

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def ingredients(segments: Sequence[Segment]) -> tuple[list[dict[str, object]], list[Problem]]:
    """Compound segment (10) -> FillIngredient rows (RE/TE/ED repeats)."""
    rows: list[dict[str, object]] = []
    problems: list[Problem] = []
    for seg in segments:
        if seg.id != "10":
            continue
        qualifiers = seg.get_all("RE")
        products = seg.get_all("TE")
        quantities = seg.get_all("ED")
        for i, product in enumerate(products):
            qual = qualifiers[i].strip() if i < len(qualifiers) else ""
            try:
                if qual != NDC_QUALIFIER:
                    raise Invalid("qualifier must be 03 (NDC)")
                ndc = normalize_ndc(product)
                qty = quantity(quantities[i].strip() if i < len(quantities) else "")
            except Invalid as exc:
                problems.append(Problem("21", "TE", f"ingredient {i + 1} {exc.reason}"))
                continue
            rows.append(
                {"sequence": i + 1, "product_id_qualifier": "01", "ndc": ndc, "quantity": qty}
            )
    return rows, problems


def extract_fill(
    header_date_of_service: str,
    segments: Sequence[Segment],
    *,
    required: bool = True,
    latest_service_date: dt.date | None = None,
) -> Extracted:
    """Run FIELD_MAP over one transaction's segments (message-level ones included).

    With ``required`` (a cash claim of a controlled drug) missing or invalid
    required fields become problems; otherwise they are simply left empty.
    ``latest_service_date`` (the caller's clock) refuses a date of service after
    it, as the state's validator refuses a future DSP05.
    """
    segments = list(segments)
    by_seg: dict[str, dict[str, str]] = {}  # per segment id
    merged: dict[str, str] = {}  # over all segments
    for seg in reversed(segments):  # the first segment's values win
        vals = wire_values(seg)
        merged.update(vals)
        held = by_seg.get(seg.id)
        by_seg[seg.id] = vals if held is None else {**held, **vals}
    dos_raw = header_date_of_service.strip()
    try:
        dos: dt.date | None = _date(dos_raw)
    except Invalid:
        dos = None
    ctx = Context(dos, FirstValues(merged))
    future = dos is not None and latest_service_date is not None and dos > latest_service_date
    compound = (by_seg.get("07", {}).get("D6") or "").strip() == COMPOUND_CODE
    values: dict[str, object] = {}
    problems: list[Problem] = []
    for row in FIELD_MAP:
        if row.segment == HEADER:
            raw = dos_raw
        else:
            raw = by_seg.get(row.segment, _NONE).get(row.code, "").strip()
        if compound and row.code in _COMPOUND_SKIP:
            raw = raw or "0"
        if not raw:
            if row.required and required:
                problems.append(Problem(row.reject, row.code, MISSING))
            continue
        try:
            if row.segment == HEADER and row.rule == "date_of_service" and dos is not None:
                if future:
                    raise Invalid("in the future")
                value: object = dos  # read once above
            elif not carriable(raw):
                raise Invalid(CARRY_REASON)
            else:
                value = RULES[row.rule](raw, ctx)
        except Invalid as exc:  # optional fields' rules never raise
            if required:
                problems.append(Problem(exc.reject or row.reject, row.code, exc.reason))
            elif (
                row.rule in _KEPT_WHEN_INVALID
                and row.column is not None
                and len(raw) <= FIELDS[row.code].max_length
            ):
                values[row.column] = raw
            continue
        if row.column is not None and value is not None:
            values[row.column] = value
    rows: list[dict[str, object]] = []
    if compound:
        rows, ing_problems = ingredients(segments)
        values["compound"] = True
        if required:
            problems += ing_problems
            if not rows:
                problems.append(Problem("20", "D6", "compound without ingredients"))
    return Extracted(values, rows, problems)


def classification(schedule: str) -> dict[str, object]:
    """The fill columns a capture's drug class sets: its schedule, or, for an NDC the
    directory does not hold (`drugs.UNKNOWN`), none yet and unclassified."""
    unknown = schedule == drugs.UNKNOWN
    return {"schedule": None if unknown else schedule, "unclassified": unknown}


def product_ndcs(segments: Sequence[Segment]) -> list[str]:
    """The NDCs a transaction dispenses: its product, or its compound ingredients."""
    claims = [s for s in segments if s.id == "07"]
    if first_value(claims, "D6") == COMPOUND_CODE:
        out = []
        for seg in segments:
            if seg.id == "10":
                for p in seg.get_all("TE"):
                    try:
                        out.append(normalize_ndc(p))
                    except Invalid:
                        continue
        return out
    qualifier = first_value(claims, "E1")
    if (NDC_QUALIFIER if qualifier is None else qualifier) != NDC_QUALIFIER:
        return []
    try:
        return [normalize_ndc(first_value(claims, "D7") or "")]
    except Invalid:
        return []
