"""Benchmark: the time `import cashcapture.adapter.adjudicate` takes (goal: under 100 ms).

    python bench/importtime.py [--runs 7] [--module cashcapture.adapter.adjudicate]

Runs `python -X importtime -c "import MODULE"` in fresh processes and reports
the module's cumulative import time (minimum and median of the runs), then the
slowest parts of the fastest run by their own time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def one_run(module: str) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, name) of every import of one fresh interpreter."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        rows.append((int(own), int(total), name.strip()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--module", default="cashcapture.adapter.adjudicate")
    args = ap.parse_args()
    runs = [one_run(args.module) for _ in range(args.runs)]
    totals = [next(t for _, t, n in rows if n == args.module) for rows in runs]
    best = runs[totals.index(min(totals))]
    print(
        f"import {args.module}: min {min(totals) / 1000:.1f} ms, "
        f"median {statistics.median(totals) / 1000:.1f} ms over {args.runs} runs"
    )
    for own, total, name in sorted(best, reverse=True)[:8]:
        print(f"  {name:40} self {own / 1000:6.1f} ms  cumulative {total / 1000:6.1f} ms")


if __name__ == "__main__":
    main()
