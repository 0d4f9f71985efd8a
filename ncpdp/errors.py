"""Errors of the codec. Their texts name offsets, field IDs and reasons, never values:
field values are patient data."""

from __future__ import annotations


class ParseError(ValueError):
    """Bytes that are not a well-formed D.0 message; the only error `parse` raises."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[type[ParseError], tuple[int, str]]:
        # keep pickling (xdist, multiprocessing) working
        return (type(self), (self.offset, self.reason))


class BuildError(ValueError):
    """A message value that cannot be written as D.0 bytes (or read from JSON)."""
