"""The JSON contract other tools rely on:

    {"kind": "request"|"response", "header": {...}, "segments": [segment, ...],
     "transactions": [[segment, ...], ...]}
    segment = {"id": "07", "fields": [["EM", "1"], ["D2", "000000123456"], ...]}

Header values are raw wire strings (padding kept) except transaction_count (int).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from .errors import BuildError
from .header import RequestHeader, ResponseHeader
from .message import Request, Response, Segment

_KINDS = {"request": (Request, RequestHeader), "response": (Response, ResponseHeader)}


def to_json(msg: Request | Response) -> dict[str, Any]:
    return {
        "kind": msg.kind,
        "header": asdict(msg.header),
        "segments": [_seg(s) for s in msg.segments],
        "transactions": [[_seg(s) for s in t] for t in msg.transactions],
    }


def _seg(s: Segment) -> dict[str, Any]:
    return {"id": s.id, "fields": [[c, v] for c, v in s.fields]}


def from_json(d: Any) -> Request | Response:
    """Message from the JSON contract; raises BuildError saying what is wrong."""
    if not isinstance(d, dict):
        raise BuildError("message JSON must be an object")
    kind = d.get("kind")
    if kind not in _KINDS:
        raise BuildError('"kind" must be "request" or "response"')
    cls, hcls = _KINDS[kind]
    h = d.get("header")
    if not isinstance(h, dict):
        raise BuildError('"header" must be an object')
    names = [f.name for f in fields(hcls)]
    missing = [n for n in names if n not in h]
    extra = [k for k in h if k not in names]
    if missing or extra:
        raise BuildError(f"{kind} header: missing keys {missing}, unknown keys {extra}")
    for n in names:
        ok = isinstance(h[n], int) if n == "transaction_count" else isinstance(h[n], str)
        if not ok or isinstance(h[n], bool):
            want = "an int" if n == "transaction_count" else "a string"
            raise BuildError(f"header {n} must be {want}")
    segs = d.get("segments", [])
    txns = d.get("transactions", [])
    if not isinstance(segs, list) or not isinstance(txns, list):
        raise BuildError('"segments" and "transactions" must be lists')
    message: Request | Response = cls(
        hcls(**{n: h[n] for n in names}),
        [_from_seg(s, f"segments[{i}]") for i, s in enumerate(segs)],
        [_txn(t, i) for i, t in enumerate(txns)],
    )
    return message


def _txn(t: Any, i: int) -> list[Segment]:
    if not isinstance(t, list):
        raise BuildError(f"transactions[{i}] must be a list of segments")
    return [_from_seg(s, f"transactions[{i}][{j}]") for j, s in enumerate(t)]


def _from_seg(s: Any, where: str) -> Segment:
    if not isinstance(s, dict) or not isinstance(s.get("id"), str):
        raise BuildError(f'{where} must be an object with a string "id"')
    fl = s.get("fields", [])
    if not isinstance(fl, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in fl
    ):
        raise BuildError(f'{where}: "fields" must be a list of [code, value] string pairs')
    return Segment(s["id"], [(c, v) for c, v in fl])


def dumps(msg: Request | Response) -> str:
    """to_json as text, one line per segment (what `cashcapture decode` prints)."""
    d = to_json(msg)

    def seg(s: dict[str, Any]) -> str:
        return json.dumps(s)

    lines = ["{", f'  "kind": {json.dumps(d["kind"])},', f'  "header": {json.dumps(d["header"])},']
    segs = ",\n".join(f"    {seg(s)}" for s in d["segments"])
    lines.append('  "segments": [' + (f"\n{segs}\n  " if segs else "") + "],")
    txns = ",\n".join(
        "    [\n" + ",\n".join(f"      {seg(s)}" for s in t) + "\n    ]" for t in d["transactions"]
    )
    lines.append('  "transactions": [' + (f"\n{txns}\n  " if txns else "") + "]")
    lines.append("}")
    return "\n".join(lines)
