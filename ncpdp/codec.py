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

from .errors import BuildError, ParseError
from .header import LENGTHS, RequestHeader, ResponseHeader, build_header, parse_header
from .message import FS, GS, RS, Request, Response, Segment

_V = "[^\x1c\x1d\x1e]"
_SEG = f"\x1e\x1cAM{_V}{{2}}(?:\x1c{_V}{{2}}{_V}*)*"
_BODY = re.compile(f"(?:{_SEG})*(?:\x1d(?:{_SEG})+)*")
_SEPS = FS + GS + RS
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
        kind, hlen, cls = "request", REQUEST_LEN, Request
    if len(data) < hlen:
        raise ParseError(len(data), f"{kind} header needs {hlen} bytes, got {len(data)}")
    header = parse_header(kind, data)
    body = data[hlen:].decode("latin-1")
    if _BODY.fullmatch(body) is None:
        offset, reason = _diagnose(body)
        raise ParseError(hlen + offset, reason)
    groups = body.split(GS)
    return cls(header, _segments(groups[0]), [_segments(g) for g in groups[1:]])


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
        parts = [_segment_wire(s) for s in msg.segments]
        for t in msg.transactions:
            if not t:
                raise BuildError("a transaction group needs at least one segment")
            parts.append(GS)
            parts.extend([_segment_wire(s) for s in t])
        body = "".join(parts).encode("latin-1")
    except BuildError:
        raise
    except UnicodeEncodeError:
        raise BuildError("a field value has a character outside latin-1") from None
    except (TypeError, AttributeError):
        raise BuildError("segments must be Segment objects with string codes and values") from None
    return head + body


def _segment_wire(s: Segment) -> str:
    sid = s.id
    if len(sid) != 2 or FS in sid or GS in sid or RS in sid:
        raise BuildError("segment id must be 2 characters without separators")
    if s._raw is not None:  # as parsed: checked when it was read
        return RS + FS + "AM" + sid + s._raw
    fields = s._fields
    wire = "".join([FS + c + v for c, v in fields])  # type: ignore[union-attr]
    if (
        wire.count(FS) != len(fields)  # type: ignore[arg-type]
        or GS in wire
        or RS in wire
        or not all(len(c) == 2 for c, _ in fields)  # type: ignore[union-attr]
    ):
        raise BuildError(
            f"segment {sid}: field IDs must be 2 characters and values free of separators"
        )
    return RS + FS + "AM" + sid + wire
