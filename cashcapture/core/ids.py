"""Identifier checks shared by the registry, the counter and the state's validator.

Digits are ASCII 0-9 only: ``str.isdigit`` and ``\\d`` take superscripts and
other scripts' digits, which no collector's file can carry.
"""

from __future__ import annotations

import re

from stdnum import luhn

_DEA = re.compile(r"[A-Z][A-Z9][0-9]{7}\Z")
_NPI = re.compile(r"[0-9]{10}\Z")
NPI_PREFIX = "80840"  # the card issuer prefix CMS puts before an NPI for its Luhn digit


def dea_check_digit(six_digits: str) -> int:
    """(1st + 3rd + 5th) + 2 x (2nd + 4th + 6th), last digit."""
    d = [ord(c) - 48 for c in six_digits]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10


def dea_ok(dea: str) -> bool:
    """Two letters (the second may be 9) and seven digits whose last is the check digit."""
    return _DEA.match(dea) is not None and dea_check_digit(dea[2:8]) == ord(dea[8]) - 48


def npi_ok(npi: str) -> bool:
    """Ten digits whose last is the Luhn digit of 80840 + the first nine."""
    return _NPI.match(npi) is not None and luhn.is_valid(NPI_PREFIX + npi)


def ascii_digits(value: str) -> bool:
    """True for a non-empty string of ASCII 0-9 (what a numeric field may hold)."""
    return value.isascii() and value.isdigit()
