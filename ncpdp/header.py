"""The fixed-width headers, declared once as compiled `construct` Structs.

The layout (order, lengths) comes from header.csv; the attribute names are the
public API. The same Struct parses and builds; values stay raw wire strings
(padding kept) except the transaction count, an int.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

from construct import Bytes, Struct

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

STRUCTS = {
    kind: Struct(*(attr / Bytes(s.length) for attr, s in SLOTS[kind])).compile() for kind in SLOTS
}
_ATTRS = {kind: [a for a, _ in SLOTS[kind]] for kind in SLOTS}
_WIDTHS = {kind: [s.length for _, s in SLOTS[kind]] for kind in SLOTS}
_VALUES = {kind: attrgetter(*_ATTRS[kind]) for kind in SLOTS}
_COUNT_INDEX = {kind: [a for a, _ in SLOTS[kind]].index("transaction_count") for kind in SLOTS}


_DEFAULTS: dict[str, object] = {"transaction_count": 1, "version": "D0"}


def _padded(kind: str, values: dict[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, slot in SLOTS[kind]:
        v = values.get(attr, _DEFAULTS.get(attr, ""))
        out[attr] = v if attr == "transaction_count" else str(v).ljust(slot.length)
    return out


# Headers repeat: a pharmacy's claims share BIN, PCN, provider, date and vendor ID.
# Both directions remember what the construct Structs produced for recent headers
# (exact bytes <-> exact values), so construct stays the only code laying out the
# bytes while the hot path skips it for a header it has seen. CACHE_SIZE = 0 disables.
CACHE_SIZE = 4096
_parsed: dict[bytes, tuple[Any, ...]] = {}
_built: dict[tuple[Any, ...], bytes] = {}


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    if CACHE_SIZE:
        cache[key] = value


def parse_header(kind: str, data: bytes) -> RequestHeader | ResponseHeader:
    """Header at the start of data (caller checked the length)."""
    raw = data[: LENGTHS[kind]]
    vals = _parsed.get(raw)
    if vals is None:
        c = STRUCTS[kind].parse(raw)
        decoded = [c[a].decode("latin-1") for a in _ATTRS[kind]]
        i = _COUNT_INDEX[kind]
        count = decoded[i]
        if not ("0" <= count <= "9"):
            start = sum(s.length for _, s in SLOTS[kind][:i])
            raise ParseError(start, "transaction count (109-A9) is not a digit")
        decoded[i] = int(count)
        vals = tuple(decoded)
        _remember(_parsed, raw, vals)
    header: RequestHeader | ResponseHeader = _CLASSES[kind](*vals)
    return header


def build_header(header: RequestHeader | ResponseHeader) -> bytes:
    kind = "request" if isinstance(header, RequestHeader) else "response"
    key = (kind, _VALUES[kind](header))
    try:
        done = _built.get(key)
    except TypeError:  # an unhashable value: reported below
        done = None
    if done is not None:
        return done
    attrs = _ATTRS[kind]
    vals = list(key[1])
    i = _COUNT_INDEX[kind]
    count = vals[i]
    if type(count) is not int or not 0 <= count <= 9:
        raise BuildError("header transaction_count must be an int 0-9")
    vals[i] = str(count)
    try:
        if [len(v) for v in vals] != _WIDTHS[kind]:
            raise TypeError
        packed = {a: v.encode("latin-1") for a, v in zip(attrs, vals, strict=True)}
    except (TypeError, AttributeError, UnicodeEncodeError):
        for (attr, slot), v in zip(SLOTS[kind], vals, strict=True):
            if not isinstance(v, str):
                raise BuildError(f"header {attr} must be a string") from None
            if len(v) != slot.length:
                raise BuildError(
                    f"header {attr} must be exactly {slot.length} characters (padded)"
                ) from None
        raise BuildError("a header value has a character outside latin-1") from None
    out: bytes = STRUCTS[kind].build(packed)
    _remember(_built, key, out)
    return out
