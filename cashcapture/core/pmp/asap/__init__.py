"""ASAP PMP element tables, one per version, loaded from the fact sheets in data/.

The same table drives the writer, the reader and the validator: element order
(position), name, requirement, data type, maximum length, code lists and the
attribute of the value class that holds the element (data/fields.csv). A new
ASAP version is a new pair of CSV rows sets, not new code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

DEFAULT_VERSION = "4.1"  # the codec's when a caller names none; the product's is the profile's
VERSIONS = ("4.1", "4.2", "4.2A")
SEGMENT_IDS = ("TH", "IS", "PHA", "PAT", "DSP", "PRE", "CDI", "AIR", "TP", "TT")
ELEMENT_SEPARATOR = "*"
RECORD_SEGMENT = "DSP"  # one dispensation: the unit the reader yields and the validator counts

# Value kinds the codec knows, keyed by the start of the data_type column.
KIND_DATE = "date"
KIND_TIME = "time"
KIND_DECIMAL = "decimal"
KIND_NUMERIC = "numeric"
KIND_TEXT = "text"


@dataclass(frozen=True, slots=True)
class Element:
    """One ASAP data element as the fact sheet gives it."""

    segment: str
    id: str  # e.g. "PAT19"
    position: int  # 19: the element's own number, also its index after the segment ID
    name: str
    requirement: str  # Required / Optional / Not used (ASAP's, from VistA)
    state_requirement: str  # KY column where the sheet has it, else ""
    data_type: str
    kind: str
    max_length: int | None
    codes: tuple[str, ...]  # allowed codes where the sheet gives a closed list
    field: str  # attribute of the value class


@dataclass(frozen=True, slots=True)
class Table:
    """All elements of one ASAP version, by segment in element order."""

    version: str
    segments: dict[str, tuple[Element, ...]]
    by_id: dict[str, Element]

    def element(self, element_id: str) -> Element:
        return self.by_id[element_id]


def _data(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _kind(data_type: str) -> str:
    head = data_type.split(" ", 1)[0].upper()
    return {"DATE": KIND_DATE, "TIME": KIND_TIME, "DECIMAL": KIND_DECIMAL, "N": KIND_NUMERIC}.get(
        head, KIND_TEXT
    )


def _codes(code_values: str) -> tuple[str, ...]:
    """Closed code lists only: 'a=b;c=d' where every code is short and has no spaces."""
    if not code_values or "=" not in code_values:
        return ()
    codes = []
    for part in code_values.split(";"):
        code, _, _ = part.partition("=")
        code = code.strip()
        if not code or " " in code or len(code) > 3:
            return ()
        codes.append(code)
    return tuple(codes)


@cache
def table(version: str = DEFAULT_VERSION) -> Table:
    """The element table of an ASAP version (one of VERSIONS)."""
    if version not in VERSIONS:
        raise KeyError(f"unknown ASAP version {version!r}; known: {', '.join(VERSIONS)}")
    fields = {
        r["element_id"]: r["field"]
        for r in _data("fields.csv")
        if version in r["versions"].split(";")
    }
    segments: dict[str, list[Element]] = {s: [] for s in SEGMENT_IDS}
    for row in _data(f"elements-{version}.csv"):
        eid = row["element_id"]
        seg = row["segment"]
        length = row["max_length"].strip()
        segments[seg].append(
            Element(
                segment=seg,
                id=eid,
                position=int(eid[len(seg) :]),
                name=row["name"],
                requirement=row["requirement"],
                state_requirement=row.get("ky_requirement", "") or "",
                data_type=row["data_type"],
                kind=_kind(row["data_type"]),
                max_length=int(length) if length else None,
                codes=_codes(row["code_values"]),
                field=fields[eid],
            )
        )
    done = {}
    for seg, els in segments.items():
        els.sort(key=lambda e: e.position)
        if [e.position for e in els] != list(range(1, len(els) + 1)):
            raise ValueError(f"ASAP {version} table: {seg} elements are not numbered 1..n")
        done[seg] = tuple(els)
    return Table(version, done, {e.id: e for els in done.values() for e in els})


# --- file structure: which segment nests in which, in what order, how often ---


@dataclass(frozen=True, slots=True)
class Nesting:
    """One row of data/structure.csv: where a segment may stand in a file.

    A segment opens a group (its children follow it, in the order the rows give,
    each between `min` and `max` times); `closes` marks the child that ends its
    parent's group (TP ends a pharmacy, TT the file). `missing` is the message
    when the group ends without this required child, said at the segment that
    ended it or (`missing_at` = "group") at the group's own segment.
    """

    segment: str
    parent: str  # "" = the file itself
    index: int  # place among the parent's children
    min: int
    max: int | None  # None = any number
    closes: bool
    missing: str
    missing_at: str  # "segment" | "group"
    children: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Grammar:
    """The ASAP file structure as data: every version shares it."""

    rules: dict[str, Nesting]
    children: dict[str, tuple[Nesting, ...]]  # by parent segment ("" = the file)
    record: str  # the segment that makes one record (DSP)


@cache
def grammar() -> Grammar:
    """data/structure.csv read once: TH IS [PHA [PAT [DSP PRE? CDI* AIR?]+]+ TP]* TT."""
    rows = _data("structure.csv")
    kids: dict[str, list[str]] = {}
    for r in rows:
        kids.setdefault(r["parent"], []).append(r["segment"])
    rules: dict[str, Nesting] = {}
    for r in rows:
        seg, parent = r["segment"], r["parent"]
        if parent and not any(x["segment"] == parent for x in rows):
            raise ValueError(f"structure.csv: {seg}'s parent {parent} is not a segment")
        rules[seg] = Nesting(
            segment=seg,
            parent=parent,
            index=kids[parent].index(seg),
            min=int(r["min"]),
            max=int(r["max"]) if r["max"] else None,
            closes=r["closes"] == "parent",
            missing=r["missing"],
            missing_at=r["missing_at"] or "segment",
            children=tuple(kids.get(seg, ())),
        )
    children = {p: tuple(rules[s] for s in segs) for p, segs in kids.items()}
    return Grammar(rules, children, RECORD_SEGMENT)
