"""The one PO Box rule, shared by the counter and the state's validator.

A street line is a PO Box when it holds "PO BOX", "P O BOX", "P.O. BOX" or
"POST OFFICE BOX" as words (dots and spaces between the letters optional,
"POBOX" too). "BX" is taken for "BOX" after "PO" ("PO BX 3"): pharmacy systems
abbreviate it so and no street name reads "PO BX". Words that merely start
with P and O (POPLAR, PROSPECT, SPORT, APOLLO) are streets.
"""

from __future__ import annotations

import re

PO_BOX_PATTERN = r"(?<![A-Z0-9])(?:P\s*\.?\s*O\s*\.?|POST\s+OFFICE)\s*(?:BOX|BX)(?![A-Z])"
_PO_BOX = re.compile(PO_BOX_PATTERN, re.I)


def is_po_box(street: str) -> bool:
    """True when the street line is a PO Box (see the module docstring)."""
    return _PO_BOX.search(street) is not None
