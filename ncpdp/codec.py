"""parse: bytes -> Request | Response, and build: back to the same bytes.

Grammar after the fixed header (FS 0x1C, GS 0x1D, RS 0x1E):

    body        = segment* ( GS segment+ )*
    segment     = RS FS "AM" id2 ( FS code2 value* )*

Every byte that is not a separator may appear in ids and values; bytes are
decoded as latin-1 so that every byte maps to one character and back. A
compiled regular expression checks the grammar in one pass; only when it fails
does a slower walk find the offset and reason for the ParseError.
"""

from __future__ import annotations

import re
from itertools import chain
from operator import itemgetter
from typing import NoReturn

from .errors import BuildError, ParseError
from .header import LENGTHS, RequestHeader, ResponseHeader, build_header, parse_header
from .message import FS, GS, RS, Request, Response, Segment

_V = "[^\x1c\x1d\x1e]"
_SEG = f"\x1e\x1cAM{_V}{{2}}(?:\x1c{_V}{{2,}}+)*+"  # possessive: nothing to give back
_BODY = re.compile(f"(?:{_SEG})*+(?:\x1d(?:{_SEG})++)*+")
_SEPS = FS + GS + RS
_SEP_SET = frozenset(_SEPS)
REQUEST_LEN = LENGTHS["request"]
RESPONSE_LEN = LENGTHS["response"]


def parse(data: bytes) -> Request | Response:
    """Parse one D.0 message (no STX/ETX framing). Raises only ParseError."""
    try:
        return _parse(data)
    except ParseError:
        raise
    except Exception as exc:  # a bug must still look like a rejectable message
        raise ParseError(0, f"unreadable message ({type(exc).__name__})") from None


def peek_header(data: bytes) -> RequestHeader | ResponseHeader | None:
    """The header alone, even when the body is malformed (to address a reject), or None."""
    try:
        data = bytes(data)
        kind = "response" if data[:2] == b"D0" else "request"
        if len(data) < LENGTHS[kind]:
            return None
        return parse_header(kind, data)
    except Exception:
        return None


def _parse(data: bytes) -> Request | Response:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ParseError(0, "input is not bytes")
    data = bytes(data)
    if data[:2] == b"D0":
        kind, hlen, cls = "response", RESPONSE_LEN, Response
    else:
        kind, hlen, cls = "request", REQUEST_LEN, Request  # type: ignore[assignment]
    if len(data) < hlen:
        raise ParseError(len(data), f"{kind} header needs {hlen} bytes, got {len(data)}")
    header = parse_header(kind, data)
    body = data[hlen:].decode("latin-1")
    if _BODY.fullmatch(body) is None:
        offset, reason = _diagnose(body)
        raise ParseError(hlen + offset, reason)
    groups = body.split(GS)
    return cls(header, _segments(groups[0]), [_segments(g) for g in groups[1:]])  # type: ignore[arg-type]


def _segments(chunk: str) -> list[Segment]:
    new = Segment._from_wire
    return [new(s[3:5], s[5:]) for s in chunk.split(RS)[1:]]


def _diagnose(body: str) -> tuple[int, str]:
    """Offset (within body) and reason of the first grammar violation."""
    i, n = 0, len(body)
    in_group = False
    while i < n:
        ch = body[i]
        if ch == GS:
            if i + 1 >= n or body[i + 1] != RS:
                return i + 1, "transaction group does not start with a segment"
            in_group = True
            i += 1
            continue
        if ch != RS:
            where = "after a transaction group separator" if in_group else "after the header"
            return i, f"expected a segment separator {where}"
        # segment: RS FS A M id id
        if body[i + 1 : i + 4] != FS + "AM":
            return i + 1, "segment does not start with its identification (AM)"
        seg_id = body[i + 4 : i + 6]
        if len(seg_id) < 2 or any(c in _SEPS for c in seg_id):
            return i + 4, "segment identification is shorter than 2 characters"
        j = i + 6
        if j < n and body[j] not in _SEPS:
            return j, "segment identification is longer than 2 characters"
        while j < n and body[j] == FS:
            code = body[j + 1 : j + 3]
            if len(code) < 2 or any(c in _SEPS for c in code):
                return j + 1, "field ID is shorter than 2 characters"
            k = j + 3
            while k < n and body[k] not in _SEPS:
                k += 1
            j = k
        i = j
    return n, "malformed message body"


def build(msg: Request | Response) -> bytes:
    """The wire bytes of a message; raises BuildError for values D.0 cannot carry."""
    if isinstance(msg, Request):
        if not isinstance(msg.header, RequestHeader):
            raise BuildError("a Request needs a RequestHeader")
    elif isinstance(msg, Response):
        if not isinstance(msg.header, ResponseHeader):
            raise BuildError("a Response needs a ResponseHeader")
    else:
        raise BuildError("build takes a Request or a Response")
    head = build_header(msg.header)
    try:
        body = _body(msg.segments, msg.transactions)
    except (TypeError, AttributeError, ValueError):
        body = None
    if body is None:
        _explain(msg.segments, msg.transactions)
    try:
        return head + body.encode("latin-1")
    except UnicodeEncodeError:
        raise BuildError("a field value has a character outside latin-1") from None


def _body(segments: list[Segment], transactions: list[list[Segment]]) -> str | None:
    """Wire text of all segments, or None if a check fails (then `_explain` says which).

    Segments as parsed were checked when read; only ids and the field lists built
    in memory are checked, once per message and in C: ids of 2 characters free of
    separators, and in the held fields' wire text one FS per field, no GS or RS,
    field IDs of 2 (`Segment.wire` takes pairs of strings only)."""
    if not all(transactions):
        return None
    parts: list[str] = []
    ids: list[str] = []
    held: list[list[tuple[str, str]]] = []  # field lists not checked when parsed
    held_wire: list[str] = []
    n_fields = 0
    for k, group in enumerate((segments, *transactions)):
        if k:
            parts.append(GS)
        for s in group:
            sid = s.id
            ids.append(sid)
            raw = s._raw
            if raw is None:
                fields = s._fields
                held.append(fields)  # type: ignore[arg-type]
                n_fields += len(fields)  # type: ignore[arg-type]
                raw = s.wire()
                held_wire.append(raw)
            parts += (_HEAD, sid, raw)
    id_text = "".join(ids)
    if (ids and set(map(len, ids)) != _TWO) or not _SEP_SET.isdisjoint(id_text):
        return None
    if held:
        text = "".join(held_wire)
        if (
            text.count(FS) != n_fields
            or GS in text
            or RS in text
            or set(map(len, map(_first, chain.from_iterable(held)))) - _TWO
        ):
            return None
    return "".join(parts)


def _explain(segments: list[Segment], transactions: list[list[Segment]]) -> NoReturn:
    """The slow path of a message `_body` refused: the BuildError naming the culprit
    (first anything that is not a segment of strings, then the first bad segment)."""
    try:
        for k, group in enumerate((segments, *transactions)):
            if k and not group:
                raise BuildError("a transaction group needs at least one segment")
            for s in group:
                _HEAD + s.id + (s._raw or FS.join(map("".join, s._fields or ())))  # strings?
    except BuildError:
        raise
    except (TypeError, AttributeError, ValueError):
        raise BuildError(
            "segments must be Segment objects with (code, value) string pairs"
        ) from None
    for s in chain(segments, *transactions):
        _segment_wire(s)
    raise BuildError("segment ids, field IDs or values carry separators")


def _segment_wire(s: Segment) -> None:
    sid = s.id
    if len(sid) != 2 or FS in sid or GS in sid or RS in sid:
        raise BuildError("segment id must be 2 characters without separators")
    fields = s._fields
    if s._raw is not None or not fields:  # as parsed: checked when it was read
        return
    wire = FS + FS.join(map("".join, fields))
    if (
        wire.count(FS) != len(fields)
        or GS in wire
        or RS in wire
        or set(map(len, fields)) != _TWO
        or set(map(len, map(_first, fields))) != _TWO
    ):
        raise BuildError(
            f"segment {sid}: field IDs must be 2 characters and values free of separators"
        )


_HEAD = RS + FS + "AM"
_TWO = {2}
_first = itemgetter(0)
