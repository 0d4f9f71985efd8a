"""NCPDP Telecommunication D.0 codec: pure (sans-IO), bytes in, values out, and back.

    msg = ncpdp.parse(data)          # Request | Response, or ParseError
    data = ncpdp.build(msg)          # bytes; build(parse(b)) == b
    ncpdp.find(msg.transactions[0], "07").get("D2")
    ncpdp.typed("DU", "0000125{")    # Decimal("12.50")
"""

from . import responses
from .codec import build, parse, peek_header
from .dictionary import FIELDS, REJECT_CODES, SEGMENTS, field_name, segment_name
from .errors import BuildError, ParseError
from .header import RequestHeader, ResponseHeader
from .jsonio import from_json, to_json
from .message import Request, Response, Segment, find, find_all
from .typed import typed, wire
from .validate import Problem, validate

__all__ = [
    "FIELDS",
    "REJECT_CODES",
    "SEGMENTS",
    "BuildError",
    "ParseError",
    "Problem",
    "Request",
    "RequestHeader",
    "Response",
    "ResponseHeader",
    "Segment",
    "build",
    "field_name",
    "find",
    "find_all",
    "from_json",
    "parse",
    "peek_header",
    "responses",
    "segment_name",
    "to_json",
    "typed",
    "validate",
    "wire",
]
