"""The counter's decision per claim, in process: parse, ncpdp.validate, adjudicate.

    .venv/bin/python bench/decision.py [--claims 20000] [--repeat 5]

What the router does for a cash claim before it touches the store, on the
fixture cash B1 with a new Rx number each time: without the state's record
rules (``rules=None``: the capture's own checks only, as before issue 13) and
with them (the KY rules the router passes). Prints the best of ``--repeat``
runs in microseconds per claim, so a busy machine shows its least-disturbed
figure. Runs on a checkout whose `adjudicate` has no ``rules`` argument too
(then only the first figure), to compare before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def messages(n: int) -> list[bytes]:
    from _adapter_helpers import b1, build

    template = build(b1(rx=100_000_000_001))
    return [
        template.replace(b"D2100000000001", b"D2%012d" % (100_000_000_001 + i)) for i in range(n)
    ]


def run(data: list[bytes], rules: object | None, with_rules: bool) -> float:
    """Seconds per claim for the decision path over ``data``."""
    from _adapter_helpers import schedule_of

    import ncpdp
    from cashcapture.adapter import adjudicate

    latest = dt.date.today() + dt.timedelta(days=1)
    extra = {"rules": rules} if with_rules else {}
    start = time.perf_counter()
    for raw in data:
        req = ncpdp.parse(raw)
        d = adjudicate.adjudicate(
            req,
            priors=[None],
            schedule_of=schedule_of,
            pharmacy_known=True,
            auth_numbers=["A1"],
            problems=ncpdp.validate(req),
            latest_service_date=latest,
            **extra,
        )
        ncpdp.build(d.response)
        if d.status != "P":
            raise AssertionError("claim not paid")
    return (time.perf_counter() - start) / len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--claims", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from cashcapture.adapter import adjudicate

    data = messages(args.claims)
    has_rules = "rules" in inspect.signature(adjudicate.adjudicate).parameters
    modes: list[tuple[str, object | None]] = [("capture checks only", None)]
    if has_rules:
        from cashcapture.core.pmp.rules import for_state

        modes.append(("with the state's record rules", for_state("KY")))
    run(data[:500], modes[-1][1], has_rules)  # warm-up: imports, compiled rules, caches
    for name, rules in modes:
        best = min(run(data, rules, has_rules) for _ in range(args.repeat))
        print(f"{name:32s} {best * 1e6:7.1f} us per claim")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
