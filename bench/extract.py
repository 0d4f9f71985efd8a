"""Benchmark: a national day extracted, validated and written, SQLite and PostgreSQL.

    python bench/extract.py [--fills 1000000] [--pharmacies 5000] [--backend sqlite,postgresql]
                            [--package none|zip|pgp]

Populates a fresh database per backend with the day's fills (bulk insert; COPY on
PostgreSQL), then runs the real extract (`extract.daily.extract`: streaming
query, shared validator per record, streaming writer, file-level validation,
records and rejects committed) in a child process and reports its wall time
and peak memory (ru_maxrss of the child). Goal: under 60 s and under 1 GiB.
With --package zip or pgp the child then packs every written file as delivery
would (`extract.packaging`: zip, or OpenPGP to a freshly made collector key) and
reports that time too; the goal then holds for extract + packing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from itertools import islice
from pathlib import Path

import psycopg
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from cashcapture.core import drugs
from cashcapture.core.store import Fill, Pharmacy, make_engine, upgrade

PG_URL = os.environ.get("CASHCAPTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DAY = dt.date.today() - dt.timedelta(days=1)
FIRST = ("JANE", "JOHN", "MARY", "ROBERT", "LINDA", "JAMES", "ANNA", "PAUL")
LAST = ("SMITH", "JONES", "BROWN", "DAVIS", "MILLER", "WILSON", "MOORE", "TAYLOR", "CLARK")


def dea(prefix: str, n: int) -> str:
    """A DEA number with a valid check digit."""
    d = [int(c) for c in f"{n:06d}"]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return f"{prefix}{n:06d}{check}"


def pharmacy_rows(n: int) -> list[dict]:
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    return [
        dict(
            id=i + 1,
            dea=dea("B" + chr(65 + i % 26), i),
            ncpdp_id=f"{i:07d}",
            npi=None,
            name=f"Pharmacy {i}",
            address1=f"{i} Main St",
            city="Frankfort",
            state="KY",
            zip="40601",
            submitter_id=None,
            reg_key=f"R{i}",
            active=True,
            created_at=created,
        )
        for i in range(n)
    ]


def fill_rows(fills: int, pharmacies: int):
    ndcs = [d.ndc11 for d in islice(drugs.load("KY"), 50)]
    when = dt.datetime.combine(DAY, dt.time(12), dt.UTC)
    per = fills // pharmacies
    for i in range(fills):
        p = i // per if i // per < pharmacies else i % pharmacies
        patient = i // 2
        yield dict(
            pharmacy_id=p + 1,
            rx_number=str(10_000_000 + i),
            fill_number=i % 3,
            date_of_service=DAY,
            state="new",
            route="cash",
            version=1,
            needs_report=True,
            created_at=when,
            updated_at=when,
            product_id_qualifier="01",
            compound=False,
            patient_id_jurisdiction="KY",
            patient_id_qualifier="06",
            patient_id=f"K{patient:08d}",
            patient_last_name=LAST[patient % len(LAST)],
            patient_first_name=FIRST[patient % len(FIRST)],
            patient_address1=f"{patient % 9000 + 1} Elm St",
            patient_city="Lexington",
            patient_state="KY",
            patient_zip="40507",
            patient_dob=dt.date(1950 + patient % 50, 1 + patient % 12, 1 + patient % 28),
            patient_gender="MF"[patient % 2],
            date_written=DAY - dt.timedelta(days=3),
            refills_authorized=2,
            ndc=ndcs[i % len(ndcs)],
            quantity=Decimal(30 + i % 60),
            days_supply=15,
            payment_type="01",
            prescriber_dea="AB1234563",
            schedule="CII",
        )


def populate_sqlite(url: str, fills: int, pharmacies: int) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Pharmacy.__table__), pharmacy_rows(pharmacies))
        batch: list[dict] = []
        for row in fill_rows(fills, pharmacies):
            batch.append(row)
            if len(batch) == 20_000:
                conn.execute(insert(Fill.__table__), batch)
                batch = []
        if batch:
            conn.execute(insert(Fill.__table__), batch)
    engine.dispose()


def populate_postgresql(url: str, schema: str, fills: int, pharmacies: int) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Pharmacy.__table__), pharmacy_rows(pharmacies))
    engine.dispose()
    columns = list(next(fill_rows(1, 1)).keys())
    with psycopg.connect(_conninfo(), autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        with pg.cursor().copy(f"COPY fills ({', '.join(columns)}) FROM STDIN") as copy:
            for row in fill_rows(fills, pharmacies):
                copy.write_row([row[c] for c in columns])
        pg.execute("ANALYZE fills")


def requeue(url: str) -> None:
    """Forget the files of the last run so the same day can be extracted again.

    Plain connections without foreign-key checks: deleting 5,000 submissions
    with SQLite checking fills.last_submission_id (unindexed) would scan a
    million fills per row.
    """
    tables = ("submission_records", "submission_pharmacies", "record_rejects", "submissions")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        with sqlite3.connect(parsed.database) as db:
            for table in tables:
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE fills SET needs_report = 1 WHERE needs_report = 0")
        return
    schema = dict(parsed.query)["options"].split("=", 1)[1]
    with psycopg.connect(_conninfo(), autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        pg.execute("SET session_replication_role = replica")  # no FK triggers: a bench reset
        for table in tables:
            pg.execute(f"DELETE FROM {table}")
        pg.execute("UPDATE fills SET needs_report = true WHERE NOT needs_report")


def _conninfo() -> str:
    return make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)


CHILD = """
import datetime as dt, json, resource, sys, time
from pathlib import Path
from cashcapture.core.store import make_engine, session_factory
from extract.daily import extract
from extract.settings import ExtractSettings, Settings
url, outbox, day = sys.argv[1], sys.argv[2], dt.date.fromisoformat(sys.argv[3])
workers, package = int(sys.argv[4]), sys.argv[5]
settings = Settings(extract=ExtractSettings(timezone="UTC", zero_reports="off"),
                    base_dir=Path(outbox))
engine = make_engine(url)
t0 = time.perf_counter()
result = extract(session_factory(engine), settings, day, workers=workers)
elapsed = time.perf_counter() - t0
packed = pack_seconds = 0
if package != "none":
    from extract import packaging
    key = None
    if package == "pgp":
        public, _ = packaging.generate_key_pair("bench collector <bench@example.org>")
        (Path(outbox) / "collector.asc").write_text(public)
        key = packaging.load_public_key(Path(outbox) / "collector.asc")
    packer = packaging.Packer(package, key)
    t1 = time.perf_counter()
    for f in result.files:
        data = (settings.outbox_dir() / f.name).read_bytes()
        packed += len(packer.pack(packer.remote_name(f.name), f.name, data))
    pack_seconds = time.perf_counter() - t1
print(json.dumps(dict(seconds=elapsed, pack_seconds=pack_seconds, packed_bytes=packed,
                      files=len(result.files), records=result.records,
                      rejected=result.rejected, failed=len(result.failed),
                      peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      worker_peak_kib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)))
"""


def run_extract(url: str, outbox: Path, workers: int, package: str = "none") -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(outbox), DAY.isoformat(), str(workers), package],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # ru_maxrss of the extract process itself, and of its largest worker process
    out.update(wall=wall, peak_mib=out["peak_kib"] / 1024, worker_mib=out["worker_peak_kib"] / 1024)
    return out


def show(r: dict) -> None:
    rate = r["records"] / r["seconds"] if r["seconds"] else 0
    print(
        f"{r['backend']:<10} workers {r['workers']} | populate {r['populate']:6.1f} s | "
        f"extract {r['seconds']:6.1f} s (process {r['wall']:6.1f} s) "
        f"{rate:9,.0f} records/s | peak {r['peak_mib']:7.1f} MiB "
        f"(largest worker {r['worker_mib']:6.1f} MiB) | files {r['files']:,} "
        f"records {r['records']:,} rejected {r['rejected']} failed {r['failed']}"
        + (
            f" | {r['package']}: packing {r['pack_seconds']:.1f} s "
            f"({r['packed_bytes'] / 2**20:,.1f} MiB), extract + packing "
            f"{r['seconds'] + r['pack_seconds']:.1f} s"
            if r["package"] != "none"
            else ""
        ),
        flush=True,
    )


def bench(
    backend: str, fills: int, pharmacies: int, workers: list[int], work: Path, package: str
) -> list:
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
    else:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_conninfo(), autocommit=True) as pg:
            pg.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"  # requeue() reads it back
    try:
        upgrade(url)
        t0 = time.perf_counter()
        if backend == "sqlite":
            populate_sqlite(url, fills, pharmacies)
        else:
            populate_postgresql(url, schema, fills, pharmacies)
        populate = time.perf_counter() - t0
        results = []
        for n in workers:
            if n != workers[0]:  # the first run reported everything: queue the day again
                requeue(url)
            result = run_extract(url, work / f"out-{backend}-{n}", n, package)
            result.update(backend=backend, populate=populate, workers=n, package=package)
            show(result)
            results.append(result)
        return results
    finally:
        if schema:
            with psycopg.connect(_conninfo(), autocommit=True) as pg:
                pg.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fills", type=int, default=1_000_000)
    ap.add_argument("--pharmacies", type=int, default=5_000)
    ap.add_argument("--backend", default="sqlite,postgresql")
    ap.add_argument("--workers", default="1,2", help="worker process counts to run, e.g. 1,2")
    ap.add_argument("--package", default="none", choices=("none", "zip", "pgp"))
    args = ap.parse_args()
    print(f"{args.fills:,} fills across {args.pharmacies:,} pharmacies, day {DAY}")
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backend.split(","):
            bench(backend, args.fills, args.pharmacies, workers, Path(tmp), args.package)


if __name__ == "__main__":
    main()
