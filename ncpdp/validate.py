"""D.0 validation of requests: rules as data (data/rules.csv), problems as values.

Each Problem carries the reject code a pharmacy system understands (the M/I
code of the field from reject_codes.csv, or the segment/count codes), the field,
the transaction index (None for message-level) and a message that names the
field, never its value.
"""

from __future__ import annotations

import csv
import re
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
    fields: dict[str, frozenset[str]]  # segment id -> mandatory fields (when sent)
    repeating: dict[str, tuple[str, ...]]  # segment id -> mandatory fields of each repeat


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
    out = {}
    for tc, (req, nu, flds) in acc.items():
        plain = {k: frozenset(c for c in v if k not in FIELDS[c].counters) for k, v in flds.items()}
        reps = {k: tuple(c for c in v if k in FIELDS[c].counters) for k, v in flds.items()}
        out[tc] = _Rules(tuple(req), tuple(nu), plain, {k: v for k, v in reps.items() if v})
    return out


RULES = _load_rules()


_DAY = (
    "(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)"
    "|02(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = "(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:0[048]|[2468][048]|[13579][26]))"
# CCYYMMDD, a real calendar day in 1900-2099 (29 February only in leap years).
_DATE = f"(?:(?:19|20)[0-9]{{2}}{_DAY}|{_LEAP_YEAR}0229)"


def _value_pattern(f: FieldDef) -> str:
    """Regex of a non-empty wire value of this field (no separators)."""
    n = f.max_length
    if f.kind == "text":
        return f"[^\x1c]{{1,{n}}}"
    if f.kind == "money":
        return f"[0-9]{{0,{n - 1}}}[{{}}A-R]"
    if f.kind == "date":
        return _DATE
    return f"[0-9]{{1,{n}}}"


def _segment_pattern(codes: list[str]) -> re.Pattern[str]:
    """One regex over a segment's wire text that matches when each of `codes` has a
    value fitting its format (or empty); other codes pass: the fast path."""
    by_first: dict[str, list[str]] = {}
    for code in sorted(codes):
        by_first.setdefault(code[0], []).append(code[1])
    known = "|".join(
        f"{re.escape(a)}(?:"
        + "|".join(f"{re.escape(b)}(?:{_value_pattern(FIELDS[a + b])})?" for b in bs)
        + ")"
        for a, bs in by_first.items()
    )
    is_known = "|".join(
        f"{re.escape(a)}[{''.join(re.escape(b) for b in bs)}]" for a, bs in by_first.items()
    )
    other = f"(?!{is_known})[^\x1c]{{2}}[^\x1c]*"
    return re.compile(f"(?:\x1c(?:{known}|{other}))*", re.DOTALL)


# segment id -> field codes the dictionary defines there (their formats are checked)
_SEGMENT_CODES: dict[str, list[str]] = {}
for _code, _f in FIELDS.items():
    for _seg in _f.segments:
        _SEGMENT_CODES.setdefault(_seg, []).append(_code)
_SEGMENT_OK = {seg: _segment_pattern(codes).fullmatch for seg, codes in _SEGMENT_CODES.items()}
_CHECK = {code: re.compile(_value_pattern(f), re.DOTALL).fullmatch for code, f in FIELDS.items()}
# codes of the fields that carry a value, in wire order
_CODES = re.compile("\x1c([^\x1c]{2})(?=[^\x1c])", re.DOTALL).findall
# segment id -> {repeating field code: counter field code}
_REPEATS: dict[str, dict[str, str]] = {}
for _code, _f in FIELDS.items():
    for _seg, _counter in _f.counters.items():
        _REPEATS.setdefault(_seg, {})[_code] = _counter


def _reject_for(code: str, seg_id: str) -> str:
    return FIELD_REJECT.get(code) or SEGMENT_FORMAT_REJECT.get(seg_id) or "AM"


def _valid_date(v: str) -> bool:
    return re.fullmatch(_DATE, v) is not None


def validate(request: Request) -> list[Problem]:
    """Every problem found in a request, in message order (empty list: valid)."""
    if not isinstance(request, Request):
        raise TypeError("validate takes a Request (responses are not validated)")
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
    raw = s.wire()
    ok = _SEGMENT_OK.get(seg_id)
    if ok is not None and ok(raw) is None:
        _format_problems(s, ti, out)
    reps = _REPEATS.get(seg_id)
    need = rules.fields.get(seg_id) if rules is not None else None
    if not (reps or need or (rules is not None and seg_id in rules.repeating)):
        return
    codes = _CODES(raw)
    if reps and not reps.keys().isdisjoint(codes):  # repeating fields against their counters
        for code, counter in reps.items():
            n = codes.count(code)
            limit = _total(s, counter) if n else 0
            if limit is None or n > limit:
                what = f"{n} {field_name(code)} ({code})"
                out.append(
                    Problem(
                        _reject_for(counter, seg_id),
                        counter,
                        ti,
                        f"{field_name(counter)} ({counter}) does not cover {what}",
                    )
                )
    if rules is None:
        return
    missing = sorted(need.difference(codes)) if need else []
    for code in rules.repeating.get(seg_id, ()):
        if codes.count(code) < (_total(s, reps[code]) or 1):  # type: ignore[index]
            missing.append(code)
    for code in missing:
        out.append(
            Problem(
                _reject_for(code, seg_id),
                code,
                ti,
                f"{field_name(code)} ({code}) is missing from {segment_name(seg_id)}",
            )
        )


def _format_problems(s: Segment, ti: int | None, out: list[Problem]) -> None:
    """The slow path: which fields do not fit their format."""
    mine = _SEGMENT_CODES.get(s.id, ())
    for code, v in s.fields:
        ok = _CHECK.get(code)
        if ok is not None and v and code in mine and ok(v) is None:
            f = FIELDS[code]
            out.append(
                Problem(
                    _reject_for(code, s.id),
                    code,
                    ti,
                    f"{f.name} ({code}) is not a valid {f.format} value",
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
