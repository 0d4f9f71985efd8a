"""Messages as mutable builders: a header, the message-level segments, and one
list of segments per transaction group.

They are not immutable values. Code builds a message by filling these lists
(the response builders, the test fixtures), and `parse` returns a fresh tree
its caller owns; nothing in the codec keeps or shares one. `Segment.fields`
hands out the segment's own list on purpose, so an edit changes the segment
(and drops its wire text); readers that must not change a segment use `get`,
`get_all` and `codes`, which return values or copies. Being mutable, segments
and messages are unhashable: copy one before handing it to other code that
might edit it.

A parsed Segment keeps its wire text and splits it into fields only when asked
(`fields`); `get` looks a field up in the wire text directly. Both forms compare
equal when they hold the same fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import starmap
from operator import concat
from typing import ClassVar

from .header import RequestHeader, ResponseHeader

FS, GS, RS = "\x1c", "\x1d", "\x1e"


class Segment:
    """One segment: its 2-character id ("07") and its fields in wire order.

    `fields` is a list of (field code, raw value) pairs; repeats and unknown
    codes are kept; the segment identification (AM) is not among them.
    """

    __slots__ = ("id", "_fields", "_raw")

    def __init__(self, id: str, fields: Iterable[tuple[str, str]] = ()) -> None:
        self.id = id
        self._fields: list[tuple[str, str]] | None = [tuple(f) for f in fields]  # type: ignore[misc]
        self._raw: str | None = None

    @classmethod
    def _from_wire(cls, id: str, raw: str) -> Segment:
        """Segment over checked wire text `raw` (everything after "AMnn")."""
        seg = cls.__new__(cls)
        seg.id = id
        seg._fields = None
        seg._raw = raw
        return seg

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The field list itself (callers may change it): the wire text is dropped."""
        if self._fields is None:
            self._fields = self._pairs()
            self._raw = None
        return self._fields

    @fields.setter
    def fields(self, value: Iterable[tuple[str, str]]) -> None:
        self._fields = [tuple(f) for f in value]  # type: ignore[misc]
        self._raw = None

    def get(self, code: str) -> str | None:
        """Raw value of the first field `code`, or None."""
        raw = self._raw
        if raw is not None:
            if len(code) != 2:
                return None
            _, found, rest = raw.partition(FS + code)
            return rest.partition(FS)[0] if found else None
        for c, v in self._fields:  # type: ignore[union-attr]
            if c == code:
                return v
        return None

    def _pairs(self) -> list[tuple[str, str]]:
        """A copy of the fields to read; a parsed segment keeps its wire text."""
        if self._raw is not None:
            return [(p[:2], p[2:]) for p in self._raw.split(FS)[1:]]
        return list(self._fields)  # type: ignore[arg-type]

    def get_all(self, code: str) -> list[str]:
        """Raw values of every field `code`, in wire order."""
        return [v for c, v in self._pairs() if c == code]

    def codes(self) -> list[str]:
        return [c for c, _ in self._pairs()]

    def wire(self) -> str:
        """The fields as wire text (each FS + code + value), without RS and AM."""
        if self._raw is not None:
            return self._raw
        fields = self._fields
        try:  # concat takes exactly two strings
            return FS + FS.join(starmap(concat, fields)) if fields else ""  # type: ignore[arg-type]
        except TypeError:
            return "".join([FS + c + v for c, v in fields])  # type: ignore[union-attr]  # says why

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        if self.id != other.id:
            return False
        if self._raw is not None and other._raw is not None:
            return self._raw == other._raw
        return self._pairs() == other._pairs()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        # Codes only: values are patient data and reprs end up in logs.
        return f"Segment({self.id!r}, codes={self.codes()!r})"


def find(segments: Iterable[Segment], seg_id: str) -> Segment | None:
    """First segment with this id ("07"), or None."""
    for s in segments:
        if s.id == seg_id:
            return s
    return None


def find_all(segments: Iterable[Segment], seg_id: str) -> list[Segment]:
    return [s for s in segments if s.id == seg_id]


def _shape(msg: Request | Response, first: str) -> str:
    """repr: ids and codes only, never field values (reprs end up in logs)."""
    h = msg.header
    return (
        f"{type(msg).__name__}({h.transaction_code!r}, {first}, count={h.transaction_count}, "
        f"segments={[s.id for s in msg.segments]}, "
        f"transactions={[[s.id for s in t] for t in msg.transactions]})"
    )


@dataclass(eq=True, repr=False)
class Request:
    """A request transmission (a builder: its lists are meant to be filled and edited)."""

    kind: ClassVar[str] = "request"
    header: RequestHeader
    segments: list[Segment] = field(default_factory=list)
    transactions: list[list[Segment]] = field(default_factory=list)

    def __repr__(self) -> str:
        return _shape(self, f"bin={self.header.bin!r}")


@dataclass(eq=True, repr=False)
class Response:
    """A response transmission (a builder: its lists are meant to be filled and edited)."""

    kind: ClassVar[str] = "response"
    header: ResponseHeader
    segments: list[Segment] = field(default_factory=list)
    transactions: list[list[Segment]] = field(default_factory=list)

    def __repr__(self) -> str:
        return _shape(self, f"status={self.header.header_response_status!r}")


Message = Request | Response
