"""Identifier checks shared by the registry, the counter and the state's validator.

Digits are ASCII 0-9 only: ``str.isdigit`` and ``\\d`` take superscripts and
other scripts' digits, which no collector's file can carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
    if _NPI.match(npi) is None:
        return False
    # imported here: stdnum.util loads pydoc and ssl (~14 ms), which would double
    # the import time of the adjudication that only needs this on a claim
    from stdnum import luhn

    return bool(luhn.is_valid(NPI_PREFIX + npi))


def ascii_digits(value: str) -> bool:
    """True for a non-empty string of ASCII 0-9 (what a numeric field may hold)."""
    return value.isascii() and value.isdigit()


# Social Security Number area rules by name (the state rules' `ssn` setting).
# "ssa": as the SSA issues numbers since its randomization of 25 June 2011 (area
# not 000, 666 or 900-999). "2011": the 2011 KY guide's "773 or higher is not
# valid", older than that randomization; kept for the 2011 rules only.
SSN_AREA_RULES: dict[str, Callable[[int], bool]] = {
    "ssa": lambda area: area not in (0, 666) and area < 900,
    "2011": lambda area: 0 < area <= 772,
}


def ssn_ok(ssn: str, rule: str = "ssa") -> bool:
    """Nine ASCII digits, the area allowed by `rule`, group not 00, serial not 0000."""
    if len(ssn) != 9 or not ssn.isascii() or not ssn.isdigit():
        return False
    return SSN_AREA_RULES[rule](int(ssn[:3])) and ssn[3:5] != "00" and ssn[5:] != "0000"
