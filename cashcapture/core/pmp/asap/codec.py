"""Bytes <-> segments <-> values, driven by the element table.

`split` turns a file into segment strings (terminator from TH09, CR/LF between
segments tolerated); `structure` walks them by the grammar in
data/structure.csv (which segment nests in which, in what order, how often) and
yields one `RawRecord` per DSP, checking the TP/TT counts; `encode`/`decode`
map a value class to its element strings and back. The reader, the writer and
the validator all stand on these.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, time
from decimal import Decimal
from operator import attrgetter
from typing import Any

from cashcapture.core.pmp.asap import (
    ELEMENT_SEPARATOR,
    KIND_DATE,
    KIND_DECIMAL,
    KIND_TIME,
    Element,
    Grammar,
    Nesting,
    Table,
    grammar,
)

DECIMAL_PATTERN = _DECIMAL = re.compile(r"\d+(?:\.\d+)?\Z")  # metric decimal, no sign
_DATE = re.compile(r"\d{8}\Z")
_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)?\Z")


class AsapError(ValueError):
    """An ASAP file (or value) that cannot be read or written: where and why."""

    def __init__(self, reason: str, segment: int | None = None, segment_id: str = ""):
        # One line, always: control characters from a bad file are shown escaped.
        reason = reason if reason.isprintable() else repr(reason)[1:-1]
        segment_id = segment_id if segment_id.isprintable() else repr(segment_id)[1:-1]
        self.reason = reason
        self.segment = segment  # 1-based ordinal of the segment in the file (TH = 1)
        self.segment_id = segment_id
        where = ""
        if segment is not None:
            where = f"segment {segment}" + (f" ({segment_id})" if segment_id else "") + ": "
        super().__init__(where + reason)


# --- file -> segment strings ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Split:
    separator: str
    terminator: str
    segments: list[str]  # TH first, without terminators


def split(data: bytes) -> Split:
    """Cut a file into segments. TH09 holds the terminator and TH ends with it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AsapError("file content must be bytes")
    text = bytes(data).decode("latin-1").lstrip("\r\n\ufeff")
    if not text.startswith("TH") or len(text) < 3:
        raise AsapError("file does not start with a TH segment", 1, "TH")
    sep = text[2]
    if sep.isalnum() or sep in " \r\n":
        raise AsapError(f"bad element separator {sep!r} after TH", 1, "TH")
    idx = 0
    for _ in range(9):  # TH09 follows the ninth separator
        idx = text.find(sep, idx + 1)
        if idx < 0:
            raise AsapError("TH segment has fewer than 9 elements", 1, "TH")
    term = text[idx + 1 : idx + 2]
    if not term or term == sep or term.isalnum() or term == " ":
        raise AsapError("TH09 segment terminator missing or invalid", 1, "TH")
    end = idx + 2
    while text[end : end + 1] in ("\r", "\n") and term not in "\r\n":
        end += 1  # CR/LF tolerated between TH09 and the terminator too
    if text[end : end + 1] != term:
        raise AsapError("TH segment does not end with the TH09 terminator", 1, "TH")
    rest = text[end + 1 :]
    pieces = rest.split(term)
    if "\n" in rest or "\r" in rest:
        pieces = [p.strip("\r\n") for p in pieces]
    if pieces and not pieces[-1]:
        pieces.pop()
    if any(not p for p in pieces):
        pieces = [p for p in pieces if p]
    return Split(sep, term, [text[: idx + 2], *pieces])


# --- structure: segments -> records -----------------------------------------


@dataclass(slots=True)
class RawRecord:
    """One DSP and everything it belongs to, as element lists (index 0 = segment ID).

    The same `pha` / `pat` list object is shared by every record of that
    pharmacy / patient, so callers can group by identity and cache by id().
    """

    number: int  # Rec #: 1-based ordinal of the DSP in the file
    pha: list[str]
    pat: list[str]
    dsp: list[str]
    pre: list[str] | None
    cdi: list[list[str]]
    air: list[str] | None
    segment: int  # ordinal of the DSP segment


@dataclass(slots=True)
class Trailer:
    """What `structure` saw at the end, for callers that report rather than raise."""

    th: list[str]
    isa: list[str] | None = None
    tt: list[str] | None = None
    segment_count: int = 0
    records: int = 0
    pharmacies: int = 0


# The walk keeps one group per open segment group: [segment, position, values, index
# of the last child seen (-1: none yet), how many of that child in a row].
_SID, _POS, _VALUES, _LAST, _COUNT = range(5)


def _missing(g: Grammar, group: list[Any], upto: int, pos: int, sid: str) -> None:
    """Raise for the first required child of `group` that did not come before index `upto`."""
    kids = g.children.get(group[_SID], ())
    last = group[_LAST]
    need: Nesting | None = None
    if last >= 0 and group[_COUNT] < kids[last].min:
        need = kids[last]
    else:
        need = next((k for k in kids[last + 1 : upto] if k.min), None)
    if need is None:
        return
    if need.missing_at == "group":
        raise AsapError(need.missing.format(sid=sid), group[_POS], group[_SID])
    raise AsapError(need.missing.format(sid=sid), pos, sid)


def _step(g: Grammar, groups: list[list[Any]], sid: str, pos: int) -> tuple[int, bool]:
    """Place one segment by the grammar: close the groups it ends, check its place among
    its siblings, open its own group. Returns (groups ended, whether the record's was
    one of them); AsapError when the segment is out of place."""
    rule = g.rules.get(sid)
    if rule is None:
        raise AsapError(f"unknown or misplaced segment {sid[:8]!r}", pos, sid[:8])
    parent = rule.parent
    k = len(groups) - 1
    while k >= 0 and groups[k][_SID] != parent:
        k -= 1
    if k < 0:
        raise AsapError(f"{sid} segment outside a {parent}", pos, sid)
    ended = 0
    record = False
    while len(groups) - 1 > k:
        done = groups.pop()
        _missing(g, done, len(g.children[done[_SID]]), pos, sid)
        ended += 1
        record = record or done[_SID] == g.record
    top = groups[-1]
    last = top[_LAST]
    if rule.index == last:
        top[_COUNT] += 1
        if rule.max is not None and top[_COUNT] > rule.max:
            raise AsapError(f"second {sid} segment for one {parent or 'file'}", pos, sid)
    elif rule.index > last:
        _missing(g, top, rule.index, pos, sid)
        top[_LAST] = rule.index
        top[_COUNT] = 1
    else:
        after = g.children[parent][last].segment
        raise AsapError(f"{sid} segment after {after}", pos, sid)
    if rule.closes:
        groups.pop()
    elif rule.children:
        groups.append([sid, pos, None, -1, 0])
    return ended, record


# The walk's state, interned: each distinct stack of (segment, last child, count) gets a
# number and a dict of moves: _MOVES[state][sid] is what `_step` did from it (the next
# state's own dict inside, and the state's number under the key _STATE), learnt the first time and
# replayed after, so a long file costs a dict look-up per segment, not a grammar walk.
_STATES: dict[tuple[tuple[str, int, int], ...], int] = {}
_STACKS: list[tuple[tuple[str, int, int], ...]] = []
_MOVES: list[dict[Any, Any]] = []
_STATE = 0  # not a segment ID (those are strings): the key of the state's own number
# What the segment adds to the record being built (RawRecord attributes are named after
# the record's child segments: pre, cdi, air).
_OTHER, _RECORD, _ONE_OF_RECORD, _MANY_OF_RECORD, _IS, _TP, _TT = range(7)
_SEGMENT_KIND = {"IS": _IS, "TP": _TP, "TT": _TT}  # segments with counts or header values
# After the segment: its group opens, takes the place of the group it ended, or its
# parent's group closes.
_OPENS, _REPLACES, _CLOSES = 1, 2, 3


def _state(g: Grammar, groups: list[list[Any]]) -> int:
    key = []
    for sid, _, _, last, count in groups:
        if last >= 0:
            kid = g.children[sid][last]
            count = min(count, kid.max if kid.max is not None else max(kid.min, 1))
        key.append((sid, last, count))
    t = tuple(key)
    n = _STATES.get(t)
    if n is None:
        n = _STATES[t] = len(_STACKS)
        _STACKS.append(t)
        _MOVES.append({_STATE: n})
    return n


def _learn(g: Grammar, moves: dict[Any, Any], sid: str, pos: int, frames: list[Any]) -> Any:
    """Run `_step` on the full groups of `state` (positions from `frames`, so errors
    name the right segment) and remember the move unless it raised."""
    stack = _STACKS[moves[_STATE]]
    groups = [
        [s, f[0], f[1], last, count] for (s, last, count), f in zip(stack, frames, strict=True)
    ]
    ended, record = _step(g, groups, sid, pos)
    rule = g.rules[sid]
    kind = _SEGMENT_KIND.get(sid, _OTHER)
    if sid == g.record:
        kind = _RECORD
    elif rule.parent == g.record:
        kind = _ONE_OF_RECORD if rule.max == 1 else _MANY_OF_RECORD
    then = _CLOSES if rule.closes else _OPENS if rule.children else _OTHER
    if then == _OPENS and ended:  # a sibling's group ends where this one opens
        ended -= 1
        then = _REPLACES
    move = (ended, then, record, _MOVES[_state(g, groups)], kind, sid.lower())
    moves[sid] = move
    return move


def structure(sp: Split, trailer: Trailer | None = None) -> Iterator[RawRecord]:
    """Walk the segments by the grammar (data/structure.csv), yielding one record per DSP.

    AsapError on a segment out of place (outside its parent, out of order, once
    too often, a required one missing) and on the TP01 / TT02 / TT01 counts.
    """
    g = grammar()
    sep = sp.separator
    segs = sp.segments
    th = segs[0].split(sep)
    tr = trailer if trailer is not None else Trailer(th)
    tr.th = th
    n = len(segs)
    frames: list[tuple[int, list[str]]] = [(0, [])]  # (position, values) of each open group
    start = _MOVES[_state(g, [["", 0, None, -1, 0]])]
    moves = (start.get("TH") or _learn(g, start, "TH", 1, frames))[3]  # split saw TH
    rec: RawRecord | None = None
    number = 0
    for i in range(1, n):
        s = segs[i]
        sid = s.split(sep, 1)[0]
        move = moves.get(sid)
        if move is None:
            move = _learn(g, moves, sid, i + 1, frames)
        pops, then, ends_record, moves, kind, attr = move
        if pops:
            del frames[-pops:]
        if ends_record and rec is not None:
            yield rec
            rec = None
        values = s.split(sep)
        if kind == _ONE_OF_RECORD:
            setattr(rec, attr, values)
        elif kind == _RECORD:
            number += 1
            tr.records = number
            # the record's group is the third: under the file, its PHA's and its PAT's
            rec = RawRecord(number, frames[1][1], frames[2][1], values, None, [], None, i + 1)
        elif kind == _MANY_OF_RECORD:
            getattr(rec, attr).append(values)
        elif kind == _IS:
            tr.isa = values
        elif kind == _TP:
            want = i + 2 - frames[-1][0]
            got = values[1] if len(values) > 1 else ""
            if got != str(want):
                raise AsapError(
                    f"TP01 detail segment count is {got!r}, the pharmacy has {want} segments",
                    i + 1,
                    sid,
                )
            tr.pharmacies += 1
        elif kind == _TT:
            tr.tt = values
            if i != n - 1:
                raise AsapError(
                    "data after the TT segment", i + 2, segs[i + 1].split(sep, 1)[0][:8]
                )
            got = values[2] if len(values) > 2 else ""
            if got != str(n):
                raise AsapError(
                    f"TT02 segment count is {got!r}, the file has {n} segments", i + 1, sid
                )
            ctl = th[2] if len(th) > 2 else ""
            if (values[1] if len(values) > 1 else "") != ctl:
                raise AsapError("TT01 does not match TH02 transaction control number", i + 1, sid)
        if then:
            if then == _REPLACES:
                frames[-1] = (i + 1, values)
            elif then == _OPENS:
                frames.append((i + 1, values))
            else:
                frames.pop()
    tr.records = number
    if tr.tt is None:
        root = [["", 0, None, -1, 0]]
        root[0][_LAST:] = _STACKS[moves[_STATE]][0][1:]
        _missing(g, root[0], len(g.children[""]), n, segs[-1].split(sep, 1)[0][:8])
    tr.segment_count = n


# --- values <-> element strings ----------------------------------------------


def file_version(data: bytes) -> str:
    """TH01 of a file (the element after "TH" and its separator), "" when it has none:
    which version's table reads and judges it."""
    if data[:2] != b"TH" or len(data) < 3:
        return ""
    sep = data[2:3]
    return data[3:].split(sep, 1)[0][:10].decode("ascii", "replace")


def format_date(d: date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def parse_date(s: str) -> date:
    if not _DATE.match(s):
        raise ValueError(f"date {s!r} is not CCYYMMDD")
    return date(int(s[:4]), int(s[4:6]), int(s[6:]))


def _enc(kind: str, v: Any) -> str:
    if v is None:
        return ""
    if kind == KIND_DATE:
        return format_date(v.date() if isinstance(v, datetime) else v)
    if kind == KIND_TIME:
        return f"{v.hour:02d}{v.minute:02d}{v.second:02d}"
    if kind == KIND_DECIMAL:
        return format(v, "f") if isinstance(v, Decimal) else str(v)
    return str(v)


def _dec(kind: str, s: str) -> Any:
    if kind == KIND_DATE:
        return parse_date(s) if s else None
    if kind == KIND_DECIMAL:
        if not s:
            return None
        if not _DECIMAL.match(s):
            raise ValueError(f"quantity {s!r} is not a metric decimal")
        return Decimal(s)
    if kind == KIND_TIME:
        m = _TIME.match(s)
        if not m:
            raise ValueError(f"time {s!r} is not HHMMSS or HHMM")
        return time(int(m[1]), int(m[2]), int(m[3] or 0))
    return s


def encode(table: Table, seg: str, obj: Any) -> list[str]:
    """Element strings of one segment (index 0 = segment ID), trailing empties trimmed."""
    key = (id(table), seg)
    enc = _ENCODERS.get(key)
    if enc is None:
        enc = _encoder(seg, table.segments[seg])
        _ENCODERS[key] = enc
        _TABLES.append(table)  # keeps the id() in the key from being reused
    out: list[str] = enc(obj)
    while len(out) > 1 and out[-1] == "":
        out.pop()
    return out


_ENCODERS: dict[tuple[int, str], Any] = {}
_TABLES: list[Table] = []
_TYPED = (KIND_DATE, KIND_TIME, KIND_DECIMAL)


def _encoder(seg: str, elements: tuple[Element, ...]) -> Any:
    """One segment's encoder compiled from its elements (the writer's hot path).

    All values are read in one `attrgetter` call; only typed elements (dates,
    times, decimals) are converted one by one. Text elements are already str
    in the value classes; anything else (None, a number) takes the general
    path, element by element, so the result is always what `_enc` gives.
    """
    names = [e.field for e in elements]
    get = attrgetter(*names) if len(names) > 1 else (lambda o: (getattr(o, names[0]),))
    typed = tuple((i, e.kind) for i, e in enumerate(elements, 1) if e.kind in _TYPED)
    kinds = tuple(e.kind for e in elements)

    def enc(obj: Any) -> list[str]:
        vals = get(obj)
        out = [seg, *vals]
        for i, kind in typed:
            out[i] = _enc(kind, out[i])
        try:
            "".join(out)  # every element a str (C speed)
        except TypeError:
            out = [seg, *(_enc(k, v) for k, v in zip(kinds, vals, strict=True))]
        return out

    return enc


def row_encoder(table: Table, seg: str, names: tuple[str, ...], defaults: Any) -> Any:
    """Elements of `seg` straight from a tuple of values named `names` (value class fields).

    Fields not in `names` take their value from `defaults` (an instance of the
    value class). The result equals `encode` of the value the tuple would
    build, without building it: the extract encodes database rows this way.
    Values are str (text), date / Decimal (typed) or None (empty).
    """
    where = {name: i for i, name in enumerate(names)}
    template = [seg]
    copy: list[tuple[int, int]] = []
    typed: list[tuple[int, str]] = []
    for pos, e in enumerate(table.segments[seg], 1):
        if e.field in where:
            template.append("")
            copy.append((pos, where[e.field]))
            if e.kind in _TYPED:
                typed.append((pos, e.kind))
        else:
            template.append(_enc(e.kind, getattr(defaults, e.field)))

    def enc(values: tuple[Any, ...]) -> list[str]:
        out = template.copy()
        for i, j in copy:
            out[i] = values[j]
        for i, kind in typed:
            out[i] = _enc(kind, out[i])
        if None in out:
            out = ["" if v is None else v for v in out]
        while len(out) > 1 and out[-1] == "":
            out.pop()
        return out

    return enc


def join(elements: list[str], sep: str, term: str, where: int | None = None) -> str:
    """One segment's text; refuses values that would break the file."""
    text = sep.join(elements)
    if text.count(sep) != len(elements) - 1 or term in text or "\r" in text or "\n" in text:
        raise AsapError(
            "a value contains the element separator, the segment terminator or a line break",
            where,
            elements[0],
        )
    return text


def decode_fields(table: Table, elements: list[str], where: int | None = None) -> dict[str, Any]:
    """Non-empty element values of one segment by field name (missing trailing = empty)."""
    seg = elements[0]
    spec = table.segments[seg]
    if len(elements) - 1 > len(spec):
        raise AsapError(
            f"{len(elements) - 1} elements, ASAP {table.version} {seg} has {len(spec)}",
            where,
            seg,
        )
    kw: dict[str, Any] = {}
    n = len(elements)
    for e in spec:
        raw = elements[e.position] if e.position < n else ""
        if not raw:
            # Every element of the segment is set, so a value class default never leaks in.
            if e.field not in kw:
                kw[e.field] = None if e.kind in (KIND_DATE, KIND_DECIMAL, KIND_TIME) else ""
            continue
        try:
            v = _dec(e.kind, raw)
        except ValueError as exc:
            raise AsapError(f"{e.id}: {exc}", where, seg) from None
        if e.kind == KIND_TIME and isinstance(kw.get(e.field), date):
            v = datetime.combine(kw[e.field], v)
        kw[e.field] = v
    if type(kw.get("created")) is date:
        kw["created"] = datetime.combine(kw["created"], time())
    return kw


_FIELDS: dict[type, frozenset[str]] = {}


def decode(table: Table, cls: type, elements: list[str], where: int | None = None) -> Any:
    """Build a value class from a segment's element strings."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in fields(cls))
    kw = decode_fields(table, elements, where)
    extra = set(kw) - names
    if extra:
        raise AsapError(
            f"elements {sorted(extra)} have no place in {cls.__name__}", where, elements[0]
        )
    return cls(**kw)


__all__ = [
    "ELEMENT_SEPARATOR",
    "AsapError",
    "RawRecord",
    "Split",
    "Trailer",
    "decode",
    "decode_fields",
    "encode",
    "format_date",
    "join",
    "parse_date",
    "split",
    "structure",
]
