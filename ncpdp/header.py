"""The fixed-width headers: header.csv's layout, also declared as `construct` Structs.

The layout (order, lengths) comes from header.csv; the attribute names are the
public API. Parse and build slice by the table's offsets; `STRUCTS` declares
the same layout as `construct` Structs, built on first use so that importing
the codec does not import construct (~40 ms); a test keeps both equal. Values
stay raw wire strings (padding kept) except the transaction count, an int.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter, itemgetter
from typing import Any

from .dictionary import HEADER
from .errors import BuildError, ParseError

# header.csv field code -> attribute name
_ATTR = {
    "A1": "bin",
    "A2": "version",
    "A3": "transaction_code",
    "A4": "pcn",
    "A9": "transaction_count",
    "B2": "service_provider_id_qualifier",
    "B1": "service_provider_id",
    "D1": "date_of_service",
    "AK": "software_vendor_cert_id",
    "F1": "header_response_status",
}


@dataclass(slots=True)
class RequestHeader:
    """56-byte request header (BIN first)."""

    bin: str
    version: str
    transaction_code: str
    pcn: str
    transaction_count: int
    service_provider_id_qualifier: str
    service_provider_id: str
    date_of_service: str
    software_vendor_cert_id: str

    @classmethod
    def make(cls, **values: object) -> RequestHeader:
        """Header from unpadded values: pads text right with spaces; count stays an int."""
        return cls(**_padded("request", values))


@dataclass(slots=True)
class ResponseHeader:
    """31-byte response header (version "D0" first)."""

    version: str
    transaction_code: str
    transaction_count: int
    header_response_status: str
    service_provider_id_qualifier: str
    service_provider_id: str
    date_of_service: str

    @classmethod
    def make(cls, **values: object) -> ResponseHeader:
        return cls(**_padded("response", values))


_CLASSES = {"request": RequestHeader, "response": ResponseHeader}
LENGTHS = {kind: sum(s.length for s in slots) for kind, slots in HEADER.items()}
SLOTS = {kind: [(_ATTR[s.code], s) for s in slots] for kind, slots in HEADER.items()}

for _kind, _cls in _CLASSES.items():  # the table and the class must agree on the order
    assert [f.name for f in fields(_cls)] == [a for a, _ in SLOTS[_kind]], _kind


# The hot path slices by the table's offsets (one decode, C-level slicing)
# instead of running a Struct per message, so no header memo is needed: every
# header costs the same, seen before or not.
def _spans(slots: list[tuple[str, Any]]) -> list[tuple[int, int]]:
    spans, at = [], 0
    for _, slot in slots:
        spans.append((at, at + slot.length))
        at += slot.length
    return spans


_SPANS = {kind: _spans(SLOTS[kind]) for kind in SLOTS}
_STRUCTS: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`STRUCTS`: the construct declaration of each header, made on first use."""
    if name != "STRUCTS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _STRUCTS:
        from construct import Bytes, Struct

        for kind, slots in SLOTS.items():
            _STRUCTS[kind] = Struct(*(attr / Bytes(s.length) for attr, s in slots))
    return _STRUCTS


_SLICER = {kind: itemgetter(*(slice(a, b) for a, b in _SPANS[kind])) for kind in SLOTS}
_ATTRS = {kind: [a for a, _ in SLOTS[kind]] for kind in SLOTS}
_WIDTHS = {kind: [s.length for _, s in SLOTS[kind]] for kind in SLOTS}
_VALUES = {kind: attrgetter(*_ATTRS[kind]) for kind in SLOTS}
_COUNT_INDEX = {kind: _ATTRS[kind].index("transaction_count") for kind in SLOTS}
_DIGITS = {str(d): d for d in range(10)}


_DEFAULTS: dict[str, object] = {"transaction_count": 1, "version": "D0"}


def _padded(kind: str, values: dict[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, slot in SLOTS[kind]:
        v = values.get(attr, _DEFAULTS.get(attr, ""))
        out[attr] = v if attr == "transaction_count" else str(v).ljust(slot.length)
    return out


def parse_header(kind: str, data: bytes) -> RequestHeader | ResponseHeader:
    """Header at the start of data (caller checked the length)."""
    vals = list(_SLICER[kind](data[: LENGTHS[kind]].decode("latin-1")))
    i = _COUNT_INDEX[kind]
    count = _DIGITS.get(vals[i])
    if count is None:
        raise ParseError(_SPANS[kind][i][0], "transaction count (109-A9) is not a digit")
    vals[i] = count
    header: RequestHeader | ResponseHeader = _CLASSES[kind](*vals)
    return header


def build_header(header: RequestHeader | ResponseHeader) -> bytes:
    kind = "request" if isinstance(header, RequestHeader) else "response"
    vals = list(_VALUES[kind](header))
    i = _COUNT_INDEX[kind]
    count = vals[i]
    if type(count) is not int or not 0 <= count <= 9:
        raise BuildError("header transaction_count must be an int 0-9")
    vals[i] = str(count)
    try:
        if [len(v) for v in vals] != _WIDTHS[kind]:
            raise TypeError
        return "".join(vals).encode("latin-1")
    except (TypeError, UnicodeEncodeError):
        for (attr, slot), v in zip(SLOTS[kind], vals, strict=True):
            if not isinstance(v, str):
                raise BuildError(f"header {attr} must be a string") from None
            if len(v) != slot.length:
                raise BuildError(
                    f"header {attr} must be exactly {slot.length} characters (padded)"
                ) from None
        raise BuildError("a header value has a character outside latin-1") from None
