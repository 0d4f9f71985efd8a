"""ASAP write / read / validate throughput, side by side in one run.

    .venv/bin/python bench/asap.py [--records 200000] [--record-check 20000]
                                   [--profiles KY-2011,KY]

Each profile (KY-2011: ASAP 4.1; KY: 4.2) is run in turn in the one process, so the
versions' figures sit side by side.

Goal (issue 6): validate 1,000,000 records in under 20 s on this machine.
The figure for 1M is measured at --records and extrapolated linearly (the
validator streams record by record, so time is linear in records); run with
--records 1000000 to measure it directly.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

# bench/extract.py (another benchmark) would shadow the extract package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from cashcapture.core import drugs, profiles  # noqa: E402
from cashcapture.core.pmp.asap.samples import DAY, header, records  # noqa: E402
from cashcapture.core.pmp.validate import Validator, validate_record  # noqa: E402
from extract.reader import read  # noqa: E402
from extract.writer import AsapWriter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--record-check", type=int, default=20_000)
    ap.add_argument("--pharmacies", type=int, default=20)
    ap.add_argument("--profiles", default="KY-2011,KY", help="state profiles, in turn")
    args = ap.parse_args()
    n = args.records
    recs = list(records(n, pharmacies=args.pharmacies))
    print(f"python {platform.python_version()}, {n} records")
    for name in args.profiles.split(","):
        run(profiles.load(name), recs, args.record_check)


def run(profile: profiles.Profile, recs: list, record_check: int) -> None:
    n = len(recs)
    rules = profile.rules()
    drug_list = drugs.load(rules.state)
    today = date(DAY.year, DAY.month, DAY.day + 1)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    with AsapWriter(buf, replace(header(), version=profile.asap_version)) as w:
        for r in recs:
            w.add(r.pharmacy, r.patient, r.fill)
    t_write = time.perf_counter() - t0
    data = buf.getvalue()

    t0 = time.perf_counter()
    f = read(data)
    t_read = time.perf_counter() - t0
    assert sum(1 for _ in f.records()) == n

    t0 = time.perf_counter()
    report = Validator(rules, drug_list=drug_list, today=today).validate(data)
    t_validate = time.perf_counter() - t0
    assert report.exit_code == 0 and report.records == n, report.to_text()[:500]

    m = min(record_check, n)
    v = Validator(rules, drug_list=drug_list, today=today)
    t0 = time.perf_counter()
    for r in recs[:m]:
        assert not validate_record(r, today=today, validator=v)
    t_rec = time.perf_counter() - t0

    mb = len(data) / 1e6
    print(f"profile {profile.name} (ASAP {profile.asap_version}), {mb:.1f} MB file")
    rows = [
        ("write (streaming AsapWriter)", n, t_write),
        ("read (bytes -> AsapFile)", n, t_read),
        (f"validate file ({profile.name}, drug list)", n, t_validate),
        ("validate_record (extract path)", m, t_rec),
    ]
    for label, k, t in rows:
        print(f"{label:34s} {k:>8d} rec {t:7.2f} s {k / t:>10,.0f} rec/s  1M: {1e6 * t / k:6.1f} s")
    print(f"validate vs write: {t_validate / t_write:.2f}x the write time")


if __name__ == "__main__":
    main()
