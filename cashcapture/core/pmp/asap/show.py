"""A readable view of an ASAP file: one segment a line, each element named.

Works on any file `split` can cut into segments, even one the validator fails,
so an operator can see where it breaks.
"""

from __future__ import annotations

from cashcapture.core.pmp.asap import DEFAULT_VERSION, VERSIONS, table
from cashcapture.core.pmp.asap.codec import split

_INDENT = {"PHA": 1, "PAT": 2, "DSP": 3, "PRE": 4, "CDI": 4, "AIR": 4, "TP": 1}


def describe(data: bytes) -> str:
    """Text view; raises AsapError when the file cannot be cut into segments."""
    sp = split(data)
    th = sp.segments[0].split(sp.separator)
    version = th[1] if len(th) > 1 and th[1] in VERSIONS else DEFAULT_VERSION
    t = table(version)
    lines = [
        f"ASAP {version}: {len(sp.segments)} segments, element separator "
        f"{sp.separator!r}, segment terminator {sp.terminator!r}"
    ]
    for n, seg in enumerate(sp.segments, 1):
        vals = seg.split(sp.separator)
        sid = vals[0]
        pad = "  " * _INDENT.get(sid, 0)
        lines.append(f"{n:>6} {pad}{sid}")
        spec = t.segments.get(sid, ())
        for i, v in enumerate(vals[1:], 1):
            if not v:
                continue
            el = spec[i - 1] if i <= len(spec) else None
            name = f"{el.id} {el.name}" if el else f"{sid}{i:02d} (not defined in {version})"
            lines.append(f"{'':>6} {pad}  {name}: {v}")
    return "\n".join(lines)
