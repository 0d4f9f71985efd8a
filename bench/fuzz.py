"""Fuzz the parser with mutated fixtures: only ParseError may escape, and every
input that parses must build back to the very same bytes.

    .venv/bin/python bench/fuzz.py [--count 1000000] [--seed 1]

Prints how many inputs were parsed and rejected; exits 1 on the first other
exception or round-trip failure (the input is written to fuzz-failure.dat).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _ncpdp_helpers import fixture_files, mutate  # noqa: E402

import ncpdp  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seeds = [p.read_bytes() for p in fixture_files()]
    outcome: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    parse, build, ParseError = ncpdp.parse, ncpdp.build, ncpdp.ParseError
    t0 = time.perf_counter()
    for i in range(args.count):
        data = mutate(rng.choice(seeds), rng)
        try:
            msg = parse(data)
        except ParseError as e:
            if not 0 <= e.offset <= len(data):
                return _fail(data, i, f"offset {e.offset} outside the input")
            outcome["rejected (ParseError)"] += 1
            reasons[e.reason.split(",")[0].split(" got ")[0]] += 1
            continue
        except Exception as e:  # the bug this script hunts
            return _fail(data, i, f"{type(e).__name__} escaped parse")
        try:
            same = build(msg) == data
        except Exception as e:
            return _fail(data, i, f"{type(e).__name__} from build of a parsed message")
        if not same:
            return _fail(data, i, "build(parse(b)) != b")
        outcome["parsed, rebuilt byte for byte"] += 1
    dt = time.perf_counter() - t0
    print(
        f"{args.count:,} mutated inputs from {len(seeds)} fixtures (seed {args.seed}) "
        f"in {dt:.1f} s ({args.count / dt:,.0f}/s)"
    )
    for k, v in outcome.most_common():
        print(f"  {k}: {v:,}")
    print("  other exceptions: 0")
    print("top rejection reasons:")
    for k, v in reasons.most_common(8):
        print(f"  {v:>9,}  {k}")
    return 0


def _fail(data: bytes, i: int, what: str) -> int:
    Path("fuzz-failure.dat").write_bytes(data)
    print(f"FAIL at input {i}: {what} (input in fuzz-failure.dat)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
