"""The D.0 data dictionary: the CSV fact sheets in ncpdp/data, loaded once.

These tables drive parsing of typed values, building, validation and the
human-readable names; nothing else in the package hard-codes a field. The
reject codes (a thousand rows, needed only to answer a bad claim or to name a
code) and the maps derived from them are read on first use (`_OnFirstUse`),
so importing the codec stays cheap.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Generic, TypeVar

V = TypeVar("V")


class _OnFirstUse(Mapping[str, V], Generic[V]):
    """A read-only table built by ``load`` the first time anything looks in it."""

    __slots__ = ("_load", "_data")

    def __init__(self, load: Callable[[], dict[str, V]]) -> None:
        self._load = load
        self._data: dict[str, V] | None = None

    def _table(self) -> dict[str, V]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def __getitem__(self, key: str) -> V:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


_FORMAT = re.compile(r"^(s)?(9|X)\((\d+)\)(?:v(9+))?$")


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One data element (e.g. 402-D2) as the dictionary defines it."""

    code: str  # the 2-character field ID on the wire, e.g. "D2"
    field_id: str  # e.g. "402-D2"
    name: str
    format: str  # DD notation: X(n), 9(n), 9(n)v999, s9(n)v99
    max_length: int
    kind: str  # text | int | date | decimal (implied decimals) | money (signed overpunch)
    scale: int  # implied decimal places
    segments: tuple[str, ...]
    counters: dict[str, str]  # segment id -> code of the counter field governing a repeat


@dataclass(frozen=True, slots=True)
class SegmentDef:
    id: str  # "07"
    name: str  # "Claim"
    side: str  # request | response


@dataclass(frozen=True, slots=True)
class HeaderSlot:
    """One fixed-position header field (header.csv)."""

    message: str  # request | response
    position: int  # 1-based
    length: int
    code: str
    name: str


def _rows(name: str) -> list[dict[str, str]]:
    with resources.files("ncpdp").joinpath("data", name).open("r", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _kind(fmt: str, name: str, signed: bool) -> tuple[str, int]:
    m = _FORMAT.match(fmt)
    if m is None:
        raise ValueError(f"fields.csv: unknown format {fmt!r}")
    sign, base, digits, decimals = m.groups()
    if base == "X":
        return "text", 0
    if decimals:
        return ("money" if signed or sign else "decimal"), len(decimals)
    if signed or sign:
        return "money", 0
    if digits == "8" and "date" in name.lower():
        return "date", 0
    return "int", 0


def _counters(raw: str, segments: tuple[str, ...]) -> dict[str, str]:
    if not raw:
        return {}
    out: dict[str, str] = {}
    for part in raw.split(";"):
        if ":" in part:
            seg, ref = part.split(":", 1)
            out[seg] = ref.split("-", 1)[1]
        else:
            for seg in segments:
                out[seg] = part.split("-", 1)[1]
    return out


def _load_fields() -> dict[str, FieldDef]:
    out: dict[str, FieldDef] = {}
    for r in _rows("fields.csv"):
        signed = r["signed_overpunch"] == "yes"
        kind, scale = _kind(r["format"], r["name"], signed)
        segs = tuple(s for s in r["segments"].split(";") if s)
        out[r["code"]] = FieldDef(
            code=r["code"],
            field_id=r["field_id"],
            name=r["name"].strip(),
            format=r["format"],
            max_length=int(r["max_length"]),
            kind=kind,
            scale=scale,
            segments=segs,
            counters=_counters(r["repeat_counter"], segs),
        )
    return out


FIELDS: dict[str, FieldDef] = _load_fields()
SEGMENTS: dict[str, SegmentDef] = {
    r["segment_id"]: SegmentDef(r["segment_id"], r["name"], r["side"])
    for r in _rows("segments.csv")
}
HEADER: dict[str, list[HeaderSlot]] = {"request": [], "response": []}
for _r in _rows("header.csv"):
    HEADER[_r["message"]].append(
        HeaderSlot(
            _r["message"],
            int(_r["position"]),
            int(_r["length"]),
            _r["field_id"].split("-", 1)[1],
            _r["name"],
        )
    )
# 112-AN transaction response status and 501-F1 header response status values.
STATUSES: dict[str, dict[str, str]] = {}
for _r in _rows("statuses.csv"):
    STATUSES.setdefault(_r["field_id"].split("-", 1)[1], {})[_r["code"]] = _r["meaning"]
# Overpunch: last character -> (digit, sign) and back.
OVERPUNCH: dict[str, tuple[str, int]] = {
    r["character"]: (r["digit"], -1 if r["sign"] == "-" else 1) for r in _rows("overpunch.csv")
}
OVERPUNCH_OUT: dict[tuple[str, int], str] = {v: k for k, v in OVERPUNCH.items()}


@dataclass(frozen=True, slots=True)
class RejectCode:
    code: str
    description: str
    fields: tuple[str, ...]  # field codes possibly in error
    valid_in_d0: bool


def _load_rejects() -> dict[str, RejectCode]:
    out: dict[str, RejectCode] = {}
    for r in _rows("reject_codes.csv"):
        fields = tuple(
            p.strip().split("-", 1)[1] for p in r["field_possibly_in_error"].split(",") if "-" in p
        )
        note = r["ecl_limitation_note"].lower()
        # "Field deleted from Telecom Version D.0 and greater" and "Deleted <reason>";
        # codes deleted only in later versions (VB.0) are still D.0 codes.
        valid = not ("d.0" in note or (note.startswith("deleted") and "b.0" not in note))
        out[r["code"]] = RejectCode(r["code"], r["description"], fields, valid)
    return out


REJECT_CODES: Mapping[str, RejectCode] = _OnFirstUse(_load_rejects)


def _field_rejects() -> dict[str, str]:
    """Field code -> its "M/I ..." reject code (the one a pharmacy system maps to the field)."""
    out: dict[str, str] = {}
    ranked = sorted(
        (rc for rc in REJECT_CODES.values() if rc.valid_in_d0 and rc.description.startswith("M/I")),
        key=lambda rc: (len(rc.code), rc.code),  # 2-character codes are the classic ones
    )
    for rc in ranked:
        for code in rc.fields:
            out.setdefault(code, rc.code)
    return out


FIELD_REJECT: Mapping[str, str] = _OnFirstUse(_field_rejects)


def _segment_rejects(suffix: str) -> dict[str, str]:
    """Segment id -> reject code whose description is "<segment name> Segment <suffix>"."""
    by_text = {rc.description.lower(): rc.code for rc in REJECT_CODES.values() if rc.valid_in_d0}
    out = {}
    for seg in SEGMENTS.values():
        code = by_text.get(f"{seg.name} segment {suffix}".lower())
        if code:
            out[seg.id] = code
    return out


SEGMENT_REQUIRED_REJECT: Mapping[str, str] = _OnFirstUse(
    lambda: _segment_rejects("required for adjudication")
)
SEGMENT_NOT_USED_REJECT: Mapping[str, str] = _OnFirstUse(
    lambda: _segment_rejects("is not used for this transaction code")
)
SEGMENT_FORMAT_REJECT: Mapping[str, str] = _OnFirstUse(
    lambda: _segment_rejects("incorrectly formatted")
)


@cache
def field_name(code: str) -> str:
    """Human name of a field ID ("D2" -> "Prescription/Service Reference Number")."""
    f = FIELDS.get(code)
    return f.name if f else f"Unknown Field {code}"


def segment_name(seg_id: str) -> str:
    s = SEGMENTS.get(seg_id)
    return s.name if s else f"Unknown Segment {seg_id}"


def reject_description(code: str) -> str:
    rc = REJECT_CODES.get(code)
    return rc.description if rc else ""
