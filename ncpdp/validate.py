"""D.0 validation of requests: rules as data (data/rules.csv), problems as values.

Each Problem carries the reject code a pharmacy system understands (the M/I
code of the field from reject_codes.csv, or the segment/count codes), the field,
the transaction index (None for message-level) and a message that names the
field, never its value.
"""

from __future__ import annotations

import csv
import datetime
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources

from .dictionary import (
    FIELD_REJECT,
    FIELDS,
    SEGMENT_FORMAT_REJECT,
    SEGMENT_NOT_USED_REJECT,
    SEGMENT_REQUIRED_REJECT,
    FieldDef,
    field_name,
    segment_name,
)
from .message import Request, Segment

MAX_TRANSACTIONS = 4
COMPOUND = "2"  # 406-D6 Compound Code: 2 = compound
# Transaction codes of the D.0 request header (103-A3).
TRANSACTION_CODES = frozenset("B1 B2 B3 E1 N1 N2 N3 C1 C2 C3 P1 P2 P3 P4 S1 S2 S3".split())
# E1 may carry its provider/prescriber segments at message level: 0 or 1 group.
_NO_GROUP_OK = frozenset({"E1"})


@dataclass(frozen=True, slots=True)
class Problem:
    reject_code: str
    field: str | None
    transaction: int | None
    message: str


@dataclass(frozen=True, slots=True)
class _Rules:
    required: tuple[str, ...]  # segment ids
    not_used: tuple[str, ...]
    fields: dict[str, tuple[str, ...]]  # segment id -> mandatory field codes (when sent)


def _load_rules() -> dict[str, _Rules]:
    path = resources.files("ncpdp").joinpath("data", "rules.csv")
    acc: dict[str, tuple[list[str], list[str], dict[str, list[str]]]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            for tc in r["transaction_codes"].split():
                req, nu, flds = acc.setdefault(tc, ([], [], {}))
                if r["field"]:
                    flds.setdefault(r["segment"], []).append(r["field"])
                elif r["rule"] == "M":
                    req.append(r["segment"])
                elif r["rule"] == "N":
                    nu.append(r["segment"])
    return {
        tc: _Rules(tuple(req), tuple(nu), {s: tuple(v) for s, v in flds.items()})
        for tc, (req, nu, flds) in acc.items()
    }


RULES = _load_rules()


def _pattern(f: FieldDef) -> re.Pattern[str]:
    n = f.max_length
    if f.kind == "text":
        return re.compile(f".{{0,{n}}}", re.DOTALL)
    if f.kind == "money":
        return re.compile(f"[0-9]{{0,{n - 1}}}[{{}}A-R]")
    if f.kind == "date":
        return re.compile("(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])")
    return re.compile(f"[0-9]{{1,{n}}}")


_CHECK = {code: _pattern(f).fullmatch for code, f in FIELDS.items()}
_DATES = frozenset(code for code, f in FIELDS.items() if f.kind == "date")


def _reject_for(code: str, seg_id: str) -> str:
    return FIELD_REJECT.get(code) or SEGMENT_FORMAT_REJECT.get(seg_id) or "AM"


def _valid_date(v: str) -> bool:
    try:
        datetime.date(int(v[:4]), int(v[4:6]), int(v[6:]))
    except ValueError:
        return False
    return True


def validate(request: Request) -> list[Problem]:
    """Every problem found in a request, in message order (empty list: valid)."""
    out: list[Problem] = []
    _header(request, out)
    tc = request.header.transaction_code
    rules = RULES.get(tc)
    for s in request.segments:
        _segment(s, None, rules, out)
    for i, txn in enumerate(request.transactions):
        for s in txn:
            _segment(s, i, rules, out)
    _counts(request, out)
    if rules is not None:
        groups = request.transactions or ([[]] if tc in _NO_GROUP_OK else [])
        for i, txn in enumerate(groups):
            ti = i if request.transactions else None
            present = {s.id for s in request.segments} | {s.id for s in txn}
            for seg_id in rules.required:
                if seg_id not in present:
                    code = SEGMENT_REQUIRED_REJECT.get(seg_id, "AM")
                    out.append(
                        Problem(
                            code, None, ti, f"{segment_name(seg_id)} segment is required for {tc}"
                        )
                    )
            for seg_id in rules.not_used:
                if seg_id in present:
                    code = SEGMENT_NOT_USED_REJECT.get(seg_id, "AM")
                    out.append(
                        Problem(
                            code, None, ti, f"{segment_name(seg_id)} segment is not used for {tc}"
                        )
                    )
        for i, txn in enumerate(request.transactions):
            _compound(request.segments + txn, i, out)
    return out


def _header(request: Request, out: list[Problem]) -> None:
    h = request.header
    checks = (
        ("A1", h.bin.isascii() and h.bin.isdigit()),
        ("A2", h.version == "D0"),
        ("A3", h.transaction_code in TRANSACTION_CODES),
        ("B2", h.service_provider_id_qualifier.strip() != ""),
        ("B1", h.service_provider_id.strip() != ""),
        (
            "D1",
            h.date_of_service.isascii()
            and h.date_of_service.isdigit()
            and _valid_date(h.date_of_service),
        ),
    )
    for code, ok in checks:
        if not ok:
            out.append(
                Problem(
                    FIELD_REJECT[code],
                    code,
                    None,
                    f"{field_name(code)} ({code}) is missing or invalid in the header",
                )
            )


def _segment(s: Segment, ti: int | None, rules: _Rules | None, out: list[Problem]) -> None:
    seg_id = s.id
    fields = s.fields
    check = _CHECK
    for code, v in fields:
        ok = check.get(code)
        if ok is None or v == "":
            continue
        if ok(v) is None or (code in _DATES and not _valid_date(v)):
            f = FIELDS[code]
            out.append(
                Problem(
                    _reject_for(code, seg_id),
                    code,
                    ti,
                    f"{f.name} ({code}) is not a valid {f.format} value",
                )
            )
    counts = Counter(c for c, v in fields if v != "")
    for code, n in counts.items():  # repeating fields against their counters
        f = FIELDS.get(code)
        counter = f.counters.get(seg_id) if f else None
        if counter is None:
            continue
        limit = _total(s, counter)
        if limit is None or n > limit:
            out.append(
                Problem(
                    _reject_for(counter, seg_id),
                    counter,
                    ti,
                    f"{field_name(counter)} ({counter}) does not cover {n} {f.name} ({code})",
                )
            )
    if rules is None:
        return
    for code in rules.fields.get(seg_id, ()):
        n = counts.get(code, 0)
        counter = FIELDS[code].counters.get(seg_id) if code in FIELDS else None
        need = 1 if counter is None else (_total(s, counter) or 1)
        if n < need:
            out.append(
                Problem(
                    _reject_for(code, seg_id),
                    code,
                    ti,
                    f"{field_name(code)} ({code}) is missing from {segment_name(seg_id)}",
                )
            )


def _total(s: Segment, counter: str) -> int | None:
    """Sum of a counter's values (nested groups repeat their counter), None if unusable."""
    vals = s.get_all(counter)
    if not vals or not all(v.isascii() and v.isdigit() for v in vals):
        return None
    return sum(int(v) for v in vals)


def _counts(request: Request, out: list[Problem]) -> None:
    h = request.header
    n = len(request.transactions)
    if not 1 <= h.transaction_count <= MAX_TRANSACTIONS:
        out.append(
            Problem("A9", "A9", None, f"Transaction Count (A9) must be 1 to {MAX_TRANSACTIONS}")
        )
    elif h.transaction_count != n and not (
        n == 0 and h.transaction_code in _NO_GROUP_OK and h.transaction_count == 1
    ):
        out.append(
            Problem(
                "1U",
                "A9",
                None,
                f"Transaction Count (A9) is {h.transaction_count}, transaction groups: {n}",
            )
        )
    if n > MAX_TRANSACTIONS:
        out.append(
            Problem(
                "A9",
                "A9",
                None,
                f"{n} transaction groups present, at most {MAX_TRANSACTIONS} allowed",
            )
        )
    if n > 1 and any(_is_compound(request.segments + t) for t in request.transactions):
        out.append(
            Problem("1W", "A9", None, "a multi-ingredient compound must be a single transaction")
        )


def _is_compound(segs: list[Segment]) -> bool:
    return any(s.id == "10" or (s.id == "07" and s.get("D6") == COMPOUND) for s in segs)


def _compound(segs: list[Segment], ti: int, out: list[Problem]) -> None:
    claim = next((s for s in segs if s.id == "07"), None)
    has_10 = any(s.id == "10" for s in segs)
    d6 = claim.get("D6") if claim is not None else None
    if d6 == COMPOUND and not has_10:
        out.append(
            Problem(
                "8B",
                "D6",
                ti,
                "Compound segment is missing on a compound claim (Compound Code D6 = 2)",
            )
        )
    elif has_10 and d6 is not None and d6 != COMPOUND:
        out.append(Problem("8D", "D6", ti, "Compound segment is present on a non-compound claim"))
