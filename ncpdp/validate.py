"""D.0 validation of requests: rules as data (data/rules.csv), problems as values.

Each Problem carries the reject code a pharmacy system understands (the M/I
code of the field from reject_codes.csv, or the segment/count codes), the field,
the transaction index (None for message-level) and a message that names the
field, never its value.

Speed: a valid segment costs one compiled regex (per transaction code and
segment: formats, mandatory fields sent and not empty, no repeated field to
count); only a segment that fails it is walked field by field to name its
problems.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import chain
from operator import attrgetter, call

from .dictionary import (
    FIELD_REJECT,
    FIELDS,
    SEGMENT_FORMAT_REJECT,
    SEGMENT_NOT_USED_REJECT,
    SEGMENT_REQUIRED_REJECT,
    SEGMENTS,
    FieldDef,
    field_name,
    segment_name,
)
from .message import Request, Segment, find

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

    def segments_fit(self, present: set[str]) -> bool:
        return present.issuperset(self.required) and present.isdisjoint(self.not_used)


def _rule_rows() -> list[dict[str, str]]:
    path = resources.files("ncpdp").joinpath("data", "rules.csv")
    with path.open("r", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _load_rules(rows: Iterable[dict[str, str]]) -> dict[str, _Rules]:
    """rules.csv by transaction code. Every row's `rule` is honoured: a segment is M
    (required), N (not used) or O (optional); a field is M (mandatory when its segment
    is sent) or O (optional); any other letter is refused, never ignored."""
    acc: dict[str, tuple[list[str], list[str], dict[str, list[str]]]] = {}
    for r in rows:
        rule, seg, code = r["rule"], r["segment"], r["field"]
        if rule not in ("MO" if code else "MNO"):
            raise ValueError(f"rules.csv: rule {rule!r} for {seg} {code or '(segment)'}")
        for tc in r["transaction_codes"].split():
            req, nu, flds = acc.setdefault(tc, ([], [], {}))
            if code:
                if rule == "M":
                    flds.setdefault(seg, []).append(code)
            elif rule == "M":
                req.append(seg)
            elif rule == "N":
                nu.append(seg)
    out = {}
    for tc, (req, nu, flds) in acc.items():
        plain = {k: frozenset(c for c in v if k not in FIELDS[c].counters) for k, v in flds.items()}
        reps = {k: tuple(c for c in v if k in FIELDS[c].counters) for k, v in flds.items()}
        out[tc] = _Rules(tuple(req), tuple(nu), plain, {k: v for k, v in reps.items() if v})
    return out


RULES = _load_rules(_rule_rows())


_DAY = (
    "(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)"
    "|02(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = "(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:0[048]|[2468][048]|[13579][26]))"
# CCYYMMDD, a real calendar day in 1900-2099 (29 February only in leap years).
_DATE = f"(?:(?:19|20)[0-9]{{2}}{_DAY}|{_LEAP_YEAR}0229)"


def _value_pattern(f: FieldDef) -> str:
    """Regex of a non-empty wire value of this field (no separators). Possessive
    repeats (never given back: a value ends at the next FS) keep the engine fast."""
    n = f.max_length
    if f.kind == "text":
        return f"[^\x1c]{{1,{n}}}+"
    if f.kind == "money":
        return f"[0-9]{{0,{n - 1}}}+[{{}}A-R]"
    if f.kind == "date":
        return _DATE
    return f"[0-9]{{1,{n}}}+"


def _code_class(codes: Iterable[str]) -> str:
    """Regex matching exactly these 2-character codes (grouped by first character)."""
    by_first: dict[str, list[str]] = {}
    for code in sorted(codes):
        by_first.setdefault(code[0], []).append(code[1])
    return (
        "(?:"
        + "|".join(
            f"{re.escape(a)}[{''.join(re.escape(b) for b in bs)}]" for a, bs in by_first.items()
        )
        + ")"
    )


_DICTIONARY_CODE = _code_class(FIELDS)


def _segment_pattern(
    codes: list[str], need: frozenset[str] = frozenset(), empty: frozenset[str] = frozenset()
) -> re.Pattern[str]:
    """One regex over a segment's wire text that matches when each of `codes` has a
    value fitting its format or is empty (`need`: never empty, and an empty group marks
    that the field was seen; `empty`: always empty); other codes pass."""

    def value(code: str) -> str:
        if code in empty:
            return ""
        if code in need:
            return f"(?:{_value_pattern(FIELDS[code])})()"
        return f"(?:{_value_pattern(FIELDS[code])})?"

    by_first: dict[str, list[str]] = {}
    for code in sorted(codes):
        by_first.setdefault(code[0], []).append(code[1])
    known = "|".join(
        f"{re.escape(a)}(?:" + "|".join(f"{re.escape(b)}{value(a + b)}" for b in bs) + ")"
        for a, bs in by_first.items()
    )
    is_known = "|".join(
        f"{re.escape(a)}[{''.join(re.escape(b) for b in bs)}]" for a, bs in by_first.items()
    )
    # a code the dictionary does not define passes; one it places elsewhere (or a
    # second AM: a lost segment separator) fails, and the slow path names it
    other = f"(?!{is_known}|{_DICTIONARY_CODE})[^\x1c]{{2}}[^\x1c]*+"
    return re.compile(f"(?:\x1c(?:{known}|{other}))*+", re.DOTALL)


# segment id -> field codes the dictionary defines there (their formats are checked)
_SEGMENT_CODES: dict[str, list[str]] = {}
for _code, _f in FIELDS.items():
    for _seg in _f.segments:
        _SEGMENT_CODES.setdefault(_seg, []).append(_code)


@cache
def _segment_ok(seg_id: str) -> _Fits | None:
    """Formats-only check of a segment (slow path), compiled on first use: compiling
    every segment's regex at import would cost most of the import time."""
    codes = _SEGMENT_CODES.get(seg_id)
    return _segment_pattern(codes).fullmatch if codes else None


_CHECK = {code: re.compile(_value_pattern(f), re.DOTALL).fullmatch for code, f in FIELDS.items()}
_DATE_OK = re.compile(_DATE).fullmatch
# codes of the fields that carry a value, in wire order
_CODES = re.compile("\x1c([^\x1c]{2})(?=[^\x1c])", re.DOTALL).findall
# segment id -> {repeating field code: counter field code}
_REPEATS: dict[str, dict[str, str]] = {}
for _code, _f in FIELDS.items():
    for _seg, _counter in _f.counters.items():
        _REPEATS.setdefault(_seg, {})[_code] = _counter


_Fits = Callable[[str], "re.Match[str] | None"]
_NEVER = re.compile("(?!)").fullmatch  # segments with mandatory fields in each repeat


@cache
def _fits(seg_id: str, need: frozenset[str], counted: frozenset[str]) -> _Fits:
    codes = sorted({*_SEGMENT_CODES.get(seg_id, []), *counted})
    return _segment_pattern(codes, need, counted).fullmatch


def _fast(seg_id: str, rules: _Rules | None) -> _Fits:
    """A segment has no problem when this matches its wire text and sets every group:
    formats fit, each mandatory field is sent and not empty, and no field is sent
    whose count against its counter needs checking. Else `_segment` says why."""
    if rules is not None and seg_id in rules.repeating:
        return _NEVER
    need = rules.fields.get(seg_id, frozenset()) if rules is not None else frozenset()
    return _fits(seg_id, need, frozenset(_REPEATS.get(seg_id, ())))


class _FastTable(dict[str, _Fits]):
    """Segment id -> its fast check under one transaction code, compiled on first use;
    None (not kept, so that odd ids cannot fill the table) for segments with no
    dictionary fields, no rules and no repeats: nothing to check."""

    def __init__(self, rules: _Rules | None) -> None:
        super().__init__()
        self.rules = rules

    def __missing__(self, seg_id: str) -> _Fits | None:
        rules = self.rules
        known = seg_id in _SEGMENT_CODES or seg_id in _REPEATS
        if not known and (rules is None or seg_id not in rules.fields):
            return None
        check = self[seg_id] = _fast(seg_id, rules)
        return check


# transaction code (None: any other) -> its fast checks
_FAST = {tc: _FastTable(rules) for tc, rules in [*RULES.items(), (None, None)]}


def _reject_for(code: str, seg_id: str) -> str:
    return FIELD_REJECT.get(code) or SEGMENT_FORMAT_REJECT.get(seg_id) or "AM"


def validate(request: Request) -> list[Problem]:
    """Every problem found in a request, in message order (empty list: valid)."""
    if not isinstance(request, Request):
        raise TypeError("validate takes a Request (responses are not validated)")
    out: list[Problem] = []
    _header(request, out)
    tc = request.header.transaction_code
    rules = RULES.get(tc)
    fast = _FAST.get(tc, _FAST[None])
    for ti, group in enumerate((request.segments, *request.transactions), -1):
        for s in group:
            fits = fast[s.id]
            if fits is None:
                continue
            raw = s._raw
            if raw is None:
                raw = s.wire()
            found = fits(raw)
            if found is None or None in found.groups():
                _segment(s, None if ti < 0 else ti, rules, out)
    # per transaction: segment ids present and the claim (07), message level included
    message_ids = {s.id for s in request.segments}
    txns = [
        (message_ids.union([s.id for s in t]), find(chain(request.segments, t), "07"))
        for t in request.transactions
    ]
    _counts(request, txns, out)
    if rules is not None:
        if txns:
            groups: list[set[str]] = [ids for ids, _ in txns]
        else:
            groups = [message_ids] if tc in _NO_GROUP_OK else []
        for i, present in enumerate(groups):
            if not rules.segments_fit(present):
                _segment_rules(tc, rules, present, i if txns else None, out)
        for i, (present, claim) in enumerate(txns):
            _compound(present, claim, i, out)
    return out


def _segment_rules(
    tc: str, rules: _Rules, present: set[str], ti: int | None, out: list[Problem]
) -> None:
    for seg_id in rules.required:
        if seg_id not in present:
            code = SEGMENT_REQUIRED_REJECT.get(seg_id, "AM")
            out.append(
                Problem(code, None, ti, f"{segment_name(seg_id)} segment is required for {tc}")
            )
    for seg_id in rules.not_used:
        if seg_id in present:
            code = SEGMENT_NOT_USED_REJECT.get(seg_id, "AM")
            out.append(
                Problem(code, None, ti, f"{segment_name(seg_id)} segment is not used for {tc}")
            )


# header attribute, its field code, and when it is valid
_HEADER_RULES: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("bin", "A1", lambda v: v.isascii() and v.isdigit()),
    ("version", "A2", lambda v: v == "D0"),
    ("transaction_code", "A3", lambda v: v in TRANSACTION_CODES),
    ("service_provider_id_qualifier", "B2", lambda v: v.strip() != ""),
    ("service_provider_id", "B1", lambda v: v.strip() != ""),
    ("date_of_service", "D1", lambda v: v.isascii() and v.isdigit() and bool(_DATE_OK(v))),
)
_HEADER_VALUES = attrgetter(*(attr for attr, _, _ in _HEADER_RULES))
_HEADER_TESTS = tuple(test for _, _, test in _HEADER_RULES)


def _header(request: Request, out: list[Problem]) -> None:
    oks = list(map(call, _HEADER_TESTS, _HEADER_VALUES(request.header)))
    if all(oks):
        return
    for (_, code, _), ok in zip(_HEADER_RULES, oks, strict=True):
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
    ok = _segment_ok(seg_id) if seg_id in _SEGMENT_CODES else None
    if ok is not None and ok(raw) is None:
        _format_problems(s, ti, out)
    reps = _REPEATS.get(seg_id)
    need = rules.fields.get(seg_id) if rules is not None else None
    if not (reps or need or (rules is not None and seg_id in rules.repeating)):
        return
    codes = _CODES(raw)
    totals: dict[str, int | None] = {}  # counter code -> sum of its values
    if reps:
        values: dict[str, list[str]] = {counter: [] for counter in reps.values()}
        for c, v in s._pairs():
            if c in values:
                values[c].append(v)
        totals = {counter: _total(vals) for counter, vals in values.items()}
    if reps and not reps.keys().isdisjoint(codes):  # repeating fields against their counters
        for code, counter in reps.items():
            n = codes.count(code)
            limit = totals[counter] if n else 0
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
        if codes.count(code) < (totals[reps[code]] or 1):  # type: ignore[index]
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
    """The slow path: which fields sit in a segment the dictionary does not place them
    in (a second AM means a segment separator was lost) and which do not fit their
    format (wherever they sit)."""
    seg_id = s.id
    mine = _SEGMENT_CODES.get(seg_id, ())
    where = segment_name(seg_id)
    for code, v in s._pairs():
        if code == "AM":
            out.append(
                Problem(
                    SEGMENT_FORMAT_REJECT.get(seg_id, "AM"),
                    code,
                    ti,
                    f"a second Segment Identification (AM) inside {where}: "
                    "a segment separator is missing",
                )
            )
            continue
        f = FIELDS.get(code)
        if f is None:
            continue
        if code not in mine:
            out.append(
                Problem(
                    _reject_for(code, seg_id),
                    code,
                    ti,
                    f"{f.name} ({code}) does not belong in {where}"
                    + (f" (it belongs in {_placed(f)})" if _placed(f) else ""),
                )
            )
        ok = _CHECK.get(code)
        if ok is not None and v and ok(v) is None:
            out.append(
                Problem(
                    _reject_for(code, s.id),
                    code,
                    ti,
                    f"{f.name} ({code}) is not a valid {f.format} value",
                )
            )


def _placed(f: FieldDef) -> str:
    names = [segment_name(seg) for seg in f.segments if seg in SEGMENTS]
    if not names and any(seg.endswith("_HDR") for seg in f.segments):
        return "the header"
    return " or ".join(names)


def _total(vals: list[str]) -> int | None:
    """Sum of a counter's values (nested groups repeat their counter), None if unusable."""
    if not vals or not all(v.isascii() and v.isdigit() for v in vals):
        return None
    return sum(int(v) for v in vals)


def _counts(
    request: Request, txns: list[tuple[set[str], Segment | None]], out: list[Problem]
) -> None:
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
    if n > 1 and any(
        "10" in ids or _has_compound_claim(chain(request.segments, t))
        for (ids, _), t in zip(txns, request.transactions, strict=True)
    ):
        out.append(
            Problem("1W", "A9", None, "a multi-ingredient compound must be a single transaction")
        )


def _has_compound_claim(segs: Iterable[Segment]) -> bool:
    return any(s.id == "07" and s.get("D6") == COMPOUND for s in segs)


def _compound(ids: set[str], claim: Segment | None, ti: int, out: list[Problem]) -> None:
    has_10 = "10" in ids
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
