"""Bytes <-> segments <-> values, driven by the element table.

`split` turns a file into segment strings (terminator from TH09, CR/LF between
segments tolerated); `structure` walks them in ASAP order and yields one
`RawRecord` per DSP, checking nesting and the TP/TT counts; `encode`/`decode`
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
    Table,
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


_CHILD = {"PRE", "CDI", "AIR"}


def structure(sp: Split, trailer: Trailer | None = None) -> Iterator[RawRecord]:
    """Walk TH IS [PHA [PAT [DSP PRE CDI* AIR?]+]+ TP]* TT; AsapError on bad nesting, counts."""
    sep = sp.separator
    segs = sp.segments
    th = segs[0].split(sep)
    tr = trailer if trailer is not None else Trailer(th)
    tr.th = th
    n = len(segs)
    if n < 2 or not segs[1].startswith("IS" + sep) and segs[1] != "IS":
        raise AsapError("IS segment must follow TH", 2, segs[1][:3] if n > 1 else "")
    tr.isa = segs[1].split(sep)
    pha: list[str] | None = None
    pat: list[str] | None = None
    rec: RawRecord | None = None
    pha_start = 0
    pat_has_dsp = True
    number = 0
    i = 2
    while i < n:
        s = segs[i]
        sid = s.split(sep, 1)[0]
        pos = i + 1
        if sid == "DSP":
            if pat is None or pha is None:
                raise AsapError("DSP segment outside a PAT", pos, sid)
            if rec is not None:
                yield rec
            number += 1
            tr.records = number
            rec = RawRecord(number, pha, pat, s.split(sep), None, [], None, pos)
            pat_has_dsp = True
        elif sid in _CHILD:
            if rec is None:
                raise AsapError(f"{sid} segment outside a DSP", pos, sid)
            if sid == "PRE":
                if rec.pre is not None or rec.cdi or rec.air is not None:
                    raise AsapError("PRE segment out of order", pos, sid)
                rec.pre = s.split(sep)
            elif sid == "CDI":
                if rec.air is not None:
                    raise AsapError("CDI segment after AIR", pos, sid)
                rec.cdi.append(s.split(sep))
            else:
                if rec.air is not None:
                    raise AsapError("second AIR segment for one DSP", pos, sid)
                rec.air = s.split(sep)
        elif sid == "PAT":
            if pha is None:
                raise AsapError("PAT segment outside a PHA", pos, sid)
            if not pat_has_dsp:
                raise AsapError("PAT segment without a DSP", pos - 1, "PAT")
            if rec is not None:
                yield rec
                rec = None
            pat = s.split(sep)
            pat_has_dsp = False
        elif sid == "PHA":
            if pha is not None:
                raise AsapError("PHA segment before the previous pharmacy's TP", pos, sid)
            pha = s.split(sep)
            pat = None
            pha_start = i
            pat_has_dsp = True
        elif sid == "TP":
            if pha is None:
                raise AsapError("TP segment without a PHA", pos, sid)
            if pat is None or not pat_has_dsp:
                raise AsapError("pharmacy without a PAT and DSP", pos, sid)
            if rec is not None:
                yield rec
                rec = None
            tp = s.split(sep)
            want = i - pha_start + 1
            got = tp[1] if len(tp) > 1 else ""
            if got != str(want):
                raise AsapError(
                    f"TP01 detail segment count is {got!r}, the pharmacy has {want} segments",
                    pos,
                    sid,
                )
            tr.pharmacies += 1
            pha = pat = None
        elif sid == "TT":
            if pha is not None:
                raise AsapError("TT segment before the pharmacy's TP", pos, sid)
            tt = s.split(sep)
            tr.tt = tt
            if i != n - 1:
                raise AsapError("data after the TT segment", pos + 1, segs[i + 1][:3])
            got = tt[2] if len(tt) > 2 else ""
            if got != str(n):
                raise AsapError(
                    f"TT02 segment count is {got!r}, the file has {n} segments", pos, sid
                )
            ctl = th[2] if len(th) > 2 else ""
            if (tt[1] if len(tt) > 1 else "") != ctl:
                raise AsapError("TT01 does not match TH02 transaction control number", pos, sid)
        else:
            raise AsapError(f"unknown or misplaced segment {sid[:8]!r}", pos, sid[:8])
        i += 1
    if tr.tt is None:
        raise AsapError("file has no TT trailer segment", n, segs[-1][:3])
    tr.segment_count = n
    tr.records = number


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
