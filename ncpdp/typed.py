"""Typed access to raw field values and back, driven by each field's format.

kind    format          python
text    X(n)            str (as on the wire)
int     9(n)            int                   wire: zero-filled to n
date    9(8) "...Date"  datetime.date         wire: CCYYMMDD
decimal 9(n)v999        Decimal (implied decimals)  wire: zero-filled
money   s9(n)v99        Decimal, sign and last digit overpunched ({ A-I, } J-R)

Errors name the field, never the value.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from .dictionary import FIELDS, OVERPUNCH, OVERPUNCH_OUT, field_name

TypedValue = str | int | Decimal | datetime.date


def typed(code: str, raw: str) -> TypedValue:
    """Python value of a raw field value; raises ValueError if it does not fit the format.

    Unknown field codes and text fields give the raw string back.
    """
    reader = _READERS.get(code)
    if reader is None:
        return raw
    read, scale = reader
    try:
        return read(raw, scale)
    except (ValueError, KeyError, IndexError, InvalidOperation):
        f = FIELDS[code]
        raise ValueError(f"{field_name(code)} ({code}) is not a valid {f.format} value") from None


def wire(code: str, value: TypedValue) -> str:
    """Raw wire value of a Python value for field `code` (inverse of `typed`)."""
    f = FIELDS.get(code)
    if f is None or f.kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"{field_name(code)} ({code}) takes a string")
        if f is not None and len(value) > f.max_length:
            raise ValueError(f"{field_name(code)} ({code}) is longer than {f.max_length}")
        return value
    try:
        out = _WRITE[f.kind](value, f.scale, f.max_length)
    except (ValueError, TypeError, AttributeError, InvalidOperation):
        out = None
    if out is None or len(out) > f.max_length:
        raise ValueError(f"{field_name(code)} ({code}) cannot hold this value as {f.format}")
    return out


def _digits(raw: str) -> str:
    if not raw.isascii() or not raw.isdigit():
        raise ValueError
    return raw


def _read_int(raw: str, _scale: int) -> int:
    return int(_digits(raw))


def _read_date(raw: str, _scale: int) -> datetime.date:
    if len(raw) != 8:
        raise ValueError
    return datetime.date.fromisoformat(_digits(raw))  # CCYYMMDD


def _read_decimal(raw: str, scale: int) -> Decimal:
    return Decimal(f"{_digits(raw)}E-{scale}")


def _read_money(raw: str, scale: int) -> Decimal:
    digit, sign = OVERPUNCH[raw[-1]]
    digits = raw[:-1] + digit
    _digits(digits)
    if sign < 0 and digits.strip("0"):  # a negative zero reads as 0
        return Decimal(f"-{digits}E-{scale}")
    return Decimal(f"{digits}E-{scale}")


def _write_int(value: int, _scale: int, length: int) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    return str(value).zfill(length)


def _write_date(value: datetime.date, _scale: int, _length: int) -> str | None:
    if not isinstance(value, datetime.date):
        return None
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _units(value: Decimal | int, scale: int) -> int | None:
    """Value in units of 10**-scale, or None if it needs more decimals."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        return None
    d = Decimal(value).scaleb(scale)
    if not d.is_finite() or d != d.to_integral_value():
        return None
    return int(d)


def _write_decimal(value: Decimal | int, scale: int, length: int) -> str | None:
    n = _units(value, scale)
    if n is None or n < 0:
        return None
    return str(n).zfill(length)


def _write_money(value: Decimal | int, scale: int, length: int) -> str | None:
    n = _units(value, scale)
    if n is None:
        return None
    digits = str(abs(n)).zfill(length)
    return digits[:-1] + OVERPUNCH_OUT[(digits[-1], -1 if n < 0 else 1)]


_Reader = Callable[[str, int], TypedValue]
_Writer = Callable[..., str | None]
_READ: dict[str, _Reader] = {
    "int": _read_int, "date": _read_date, "decimal": _read_decimal, "money": _read_money
}
# field code -> (reader, implied decimals); text and unknown fields read as they are
_READERS: dict[str, tuple[_Reader, int]] = {
    code: (_READ[f.kind], f.scale) for code, f in FIELDS.items() if f.kind != "text"
}
_WRITE: dict[str, _Writer] = {
    "int": _write_int, "date": _write_date, "decimal": _write_decimal, "money": _write_money
}
