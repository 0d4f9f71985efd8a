"""Strict reading of the CSV files operators hand us (registry, collector reports).

One reader for all of them: an unterminated quote, a stray quote, a row longer
than the header or a field over the csv module's limit is an error naming the
line, never a row built from whatever the parser made of it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence


class CsvError(ValueError):
    """A CSV that cannot be read as the layout says; the message names the line."""


def rows(text: str, known: Sequence[str], required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """(data row number from 1, {column: value}) of a CSV whose header names `known` columns.

    Header names are matched without case, surrounding blanks, spaces or
    underscores ("In Process" = "in_process"); blank lines are skipped.
    """

    def norm(name: str) -> str:
        return name.strip().lower().replace(" ", "").replace("_", "")

    wanted = {norm(k): k for k in known}
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise CsvError("empty file: expected a header line with column names")
        names = []
        for h in header:
            if norm(h) not in wanted:
                raise CsvError(f"header: unknown column {h.strip()!r}")
            names.append(wanted[norm(h)])
        if missing := [c for c in required if c not in names]:
            raise CsvError(f"header: column {missing[0]} is required")
        for n, values in enumerate((v for v in reader if any(x.strip() for x in v)), start=1):
            if len(values) > len(names):
                raise CsvError(f"row {n}: more values than columns")
            yield n, dict(zip(names, values, strict=False))
    except csv.Error as exc:
        raise CsvError(f"line {reader.line_num}: not valid CSV ({exc})") from None
