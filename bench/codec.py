"""Codec throughput, ours against dzero-python 1.0.2, on the fixtures/ncpdp messages.

    .venv/bin/python bench/codec.py [--seconds 1.0] [--distinct N]

--distinct N runs the rows over N copies of each fixture with every header distinct
(provider, date of service, Rx number), so nothing seen before can be reused.

Rows (messages per second over the whole fixture set, ours and dzero measured in
alternation, best of 10 slices of CPU time of this process, so that other processes on
the shared machine slow neither side):
  parse                  ours: ncpdp.parse(bytes)      dzero: Request/Response.parse(str)
                         (ours splits a segment into fields only when asked; dzero
                         splits every field into a dict)
  parse+validate         ours: parse, validate (requests)   dzero: parse (no validation)
  parse+typed+validate   ours: parse, typed access to a set of fields, validate (requests)
                         dzero: parse and the same field look-ups (dzero has no D.0 rules
                         and no typed access; it gets the raw strings)
  build                  ours: ncpdp.build of messages held as field lists (from JSON)
                         dzero: to_s() of its parsed objects
  validate+build         ours: validate (requests) then build      dzero: to_s()
  build (as parsed)      ours: ncpdp.build of the parsed message (kept wire text)
  parse+validate+build   ours: parse, validate (requests), build as parsed (the adapter's
                         forwarding path)      dzero: parse, to_s()
dzero is handed str already decoded from latin-1 (its API takes str) and returns str:
that favours dzero. dzero validates nothing: "validate" rows are work only ours does.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dzero_python as dz  # noqa: E402

import ncpdp  # noqa: E402

# fields read in the "typed access" rows: (segment, field)
ACCESS = {
    "request": [
        ("07", "D2"),
        ("07", "D7"),
        ("07", "E7"),
        ("07", "D5"),
        ("07", "DE"),
        ("11", "DU"),
        ("01", "C4"),
        ("01", "CB"),
    ],
    "response": [("21", "AN"), ("22", "D2"), ("23", "F5"), ("23", "F9")],
}


SLICES = 10


def load() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "fixtures" / "ncpdp").glob("*.dat"))]


def distinct(msgs: list[bytes], copies: int) -> list[bytes]:
    """``copies`` of every fixture, each with a header seen nowhere else (provider ID and
    date of service) and, in a request's claim segment, its own Rx number, so that no
    cache of recent headers or values can help."""
    out = []
    for k in range(copies):
        day = f"2024{1 + k % 12:02d}{1 + k % 28:02d}"
        for b in msgs:
            m = ncpdp.parse(b)
            m.header.service_provider_id = f"{1000000000 + k:<15}"
            m.header.date_of_service = day
            for seg in (s for t in m.transactions for s in t if s.id == "07"):
                seg.fields = [(c, f"{k:012d}" if c == "D2" else v) for c, v in seg.fields]
            out.append(ncpdp.build(m))
    assert len(set(out)) == len(out)
    return out


def rates(
    ours: Callable[[], None], theirs: Callable[[], None], n_msgs: int, seconds: float
) -> tuple[float, float]:
    """Messages per second of both, measured in alternation (the machine is shared,
    so both see the same load), best of SLICES slices of about `seconds` / SLICES each,
    in CPU time of this process (time spent waiting for a core counts for neither)."""
    clock = time.process_time
    plan = []
    for fn in (ours, theirs):
        fn()  # warm up (first-use compilation)
        t0 = clock()
        fn()
        one = max(clock() - t0, 1e-6)
        plan.append((fn, max(1, int(seconds / SLICES / one))))
    best = [float("inf"), float("inf")]
    for _ in range(SLICES):
        for k, (fn, rounds) in enumerate(plan):
            t0 = clock()
            for _ in range(rounds):
                fn()
            best[k] = min(best[k], (clock() - t0) / rounds)
    return n_msgs / best[0], n_msgs / best[1]


def ours_parse(msgs: list[bytes]) -> Callable[[], None]:
    parse = ncpdp.parse

    def run() -> None:
        for b in msgs:
            parse(b)

    return run


def ours_parse_validate(msgs: list[bytes]) -> Callable[[], None]:
    parse, validate = ncpdp.parse, ncpdp.validate

    def run() -> None:
        for b in msgs:
            m = parse(b)
            if m.kind == "request":
                validate(m)

    return run


def ours_full(msgs: list[bytes]) -> Callable[[], None]:
    parse, validate, typed, find = ncpdp.parse, ncpdp.validate, ncpdp.typed, ncpdp.find

    def run() -> None:
        for b in msgs:
            m = parse(b)
            groups = m.transactions or [[]]
            for t in groups:
                segs = m.segments + t
                for seg_id, code in ACCESS[m.kind]:
                    s = find(segs, seg_id)
                    if s is not None and (raw := s.get(code)) is not None:
                        typed(code, raw)
            if m.kind == "request":
                validate(m)

    return run


def ours_build(msgs: list[bytes], validate_first: bool) -> Callable[[], None]:
    held = [ncpdp.from_json(ncpdp.to_json(ncpdp.parse(b))) for b in msgs]
    build, validate = ncpdp.build, ncpdp.validate

    def run() -> None:
        for m in held:
            if validate_first and m.kind == "request":
                validate(m)
            build(m)

    return run


def ours_build_parsed(msgs: list[bytes]) -> Callable[[], None]:
    held = [ncpdp.parse(b) for b in msgs]
    build = ncpdp.build

    def run() -> None:
        for m in held:
            build(m)

    return run


def ours_forward(msgs: list[bytes]) -> Callable[[], None]:
    parse, validate, build = ncpdp.parse, ncpdp.validate, ncpdp.build

    def run() -> None:
        for b in msgs:
            m = parse(b)
            if m.kind == "request":
                validate(m)
            build(m)

    return run


def _dz_class(s: str):
    return dz.Response if s.startswith("D0") else dz.Request


def dz_parse(msgs: list[bytes]) -> Callable[[], None]:
    items = [(_dz_class(s), s) for s in (b.decode("latin-1") for b in msgs)]

    def run() -> None:
        for cls, s in items:
            cls.parse(s)

    return run


def dz_full(msgs: list[bytes]) -> Callable[[], None]:
    items = [
        (_dz_class(s), s, "response" if s.startswith("D0") else "request")
        for s in (b.decode("latin-1") for b in msgs)
    ]

    def run() -> None:
        for cls, s, kind in items:
            t = cls.parse(s)
            groups = t.transaction_groups or [None]
            for g in groups:
                segs = t.transmission_group.segments + (g.segments if g else [])
                for seg_id, code in ACCESS[kind]:
                    for seg in segs:
                        if seg.__class__.segment_identifier == seg_id:
                            seg[code]
                            break

    return run


def dz_forward(msgs: list[bytes]) -> Callable[[], None]:
    items = [(_dz_class(s), s) for s in (b.decode("latin-1") for b in msgs)]

    def run() -> None:
        for cls, s in items:
            cls.parse(s).to_s()

    return run


def dz_build(msgs: list[bytes]) -> Callable[[], None]:
    held = [_dz_class(s).parse(s) for s in (b.decode("latin-1") for b in msgs)]

    def run() -> None:
        for t in held:
            t.to_s()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument(
        "--distinct", type=int, default=0, metavar="N",
        help="N copies of each fixture, every header distinct (date, provider, Rx)",
    )
    args = ap.parse_args()
    msgs = load()
    if args.distinct:
        msgs = distinct(msgs, args.distinct)
    n = len(msgs)
    lossless = sum(_dz_class(s).parse(s).to_s() == s for s in (b.decode("latin-1") for b in msgs))
    rows = [
        ("parse", ours_parse(msgs), dz_parse(msgs)),
        ("parse+validate", ours_parse_validate(msgs), dz_parse(msgs)),
        ("parse+typed+validate", ours_full(msgs), dz_full(msgs)),
        ("build", ours_build(msgs, False), dz_build(msgs)),
        ("validate+build", ours_build(msgs, True), dz_build(msgs)),
        ("build (as parsed)", ours_build_parsed(msgs), dz_build(msgs)),
        ("parse+validate+build", ours_forward(msgs), dz_forward(msgs)),
    ]
    print(
        f"{n} fixture messages ({sum(map(len, msgs))} bytes), Python "
        f"{platform.python_version()}, {platform.machine()}"
    )
    print(
        f"dzero rebuilds {lossless}/{n} byte for byte; ours {n}/{n}; "
        f"{'every header distinct' if args.distinct else 'the 14 fixtures looped'}"
    )
    print(f"{'operation':24} {'ours msg/s':>12} {'dzero msg/s':>12} {'ratio':>7}")
    for name, ours, theirs in rows:
        a, b = rates(ours, theirs, n, args.seconds)
        print(f"{name:24} {a:12,.0f} {b:12,.0f} {a / b:7.2f}")
    print(
        "goals (issue 3): parse >= 3x dzero with validation on (rows parse+validate, and\n"
        "  with typed access parse+typed+validate); build >= 2x dzero (row build; with\n"
        "  ncpdp.validate first: validate+build)"
    )


if __name__ == "__main__":
    main()
