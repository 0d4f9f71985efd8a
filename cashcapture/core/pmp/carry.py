"""What an ASAP element can carry: the writer writes latin-1 text, so a value holds
printable latin-1 characters only (no control character, no CR or LF, nothing beyond
latin-1 such as full-width digits) and never the file's element separator or segment
terminator. The counter, the pharmacy registry and the extract ask this one rule."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from cashcapture.core.pmp.asap import ELEMENT_SEPARATOR

SEGMENT_TERMINATOR = "~"  # TH09 as the writer sends it unless a profile says otherwise
REASON = "has a character the state's file cannot carry"


@functools.cache
def _refused(sep: str, term: str) -> re.Pattern[str]:
    return re.compile(f"[^\\x20-\\x7e\\xa0-\\xff]|{re.escape(sep)}|{re.escape(term)}")


def carriable(value: str, sep: str = ELEMENT_SEPARATOR, term: str = SEGMENT_TERMINATOR) -> bool:
    """True when ``value`` can stand as one element of a file using ``sep`` and ``term``."""
    return _refused(sep, term).search(value) is None


def first_uncarriable(
    elements: Sequence[str], sep: str = ELEMENT_SEPARATOR, term: str = SEGMENT_TERMINATOR
) -> int | None:
    """Index of the first element of an encoded segment (id first) that cannot be carried."""
    refused = _refused(sep, term)
    if refused.search("".join(elements)) is None:  # the usual case: one search
        return None
    return next(i for i, v in enumerate(elements) if refused.search(v))
