"""Human-readable rendering of a message: one line per header field and field,
with the dictionary's names and the typed value where the format gives one."""

from __future__ import annotations

from dataclasses import fields

from .dictionary import field_name, segment_name
from .header import SLOTS
from .message import Request, Response, Segment
from .typed import typed


def names_table(msg: Request | Response) -> str:
    rows: list[tuple[str, str, str, str]] = []
    header = {f.name: getattr(msg.header, f.name) for f in fields(msg.header)}
    rows.append(("", f"{msg.kind.upper()} HEADER", "", ""))
    for attr, hs in SLOTS[msg.kind]:
        rows.append(
            (
                hs.code,
                hs.name,
                repr(header[attr]) if isinstance(header[attr], str) else str(header[attr]),
                "",
            )
        )
    for s in msg.segments:
        _segment(rows, s, "")
    for i, t in enumerate(msg.transactions, 1):
        rows.append(("", f"TRANSACTION {i}", "", ""))
        for s in t:
            _segment(rows, s, "  ")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}" + (f"  = {d}" if d else "") for a, b, c, d in rows]
    return "\n".join(line.rstrip() for line in lines)


def _segment(rows: list[tuple[str, str, str, str]], s: Segment, indent: str) -> None:
    rows.append((f"{indent}AM{s.id}", f"{segment_name(s.id)} segment", "", ""))
    for code, raw in s.fields:
        try:
            v = typed(code, raw)
        except ValueError:
            shown = "(not a valid value for its format)"
        else:
            shown = "" if isinstance(v, str) else str(v)
        rows.append((f"{indent}  {code}", field_name(code), repr(raw), shown))
