"""Durable captures per second: one transaction per capture vs group commit.

Each capture is what the adapter commits for a cash B1: the claim (request
and response bytes), the fill with its ASAP fields (after a look-up of its
key), in one unit of work. SQLite (WAL, synchronous=FULL) and PostgreSQL
run side by side in one process. Three ways:

- one per transaction: a capture, then its commit (the batch form, run alone);
- group commit, ORM units: a Session callable per capture (record_claim,
  find_fill, insert_fill), as the adapter did before the batch form;
- group commit, batch units: a `BatchUnit` per capture (one key look-up per
  batch, one executemany per table), as the adapter does now.

    python bench/store.py [--captures 20000] [--concurrency 256] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
from sqlalchemy.engine import make_url

from cashcapture.core.store import (
    GroupCommitter,
    Pharmacy,
    make_engine,
    session_factory,
    upgrade,
    writer_engine,
)
from cashcapture.core.store.groupcommit import BatchUnit
from cashcapture.core.store.repo import Writes, find_fills, write_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# the tests' sample fill and single-change ORM writers: same rows
from _store_helpers import (  # noqa: E402
    answer_claim,
    fill_fields,
    find_fill,
    insert_fill,
    record_claim,
)

PG_URL = os.environ.get("CASHCAPTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUEST = b"x" * 420
RESPONSE = b"y" * 260
DATE_OF_SERVICE = dt.date(2024, 3, 4)  # fill_fields' date of service


def orm_unit(pharmacy_id: int, n: int):
    """The ORM form: look the key up, then record claim and fill."""

    def unit(session):
        if find_fill(session, pharmacy_id, f"{n:09d}", 0, DATE_OF_SERVICE) is not None:
            raise AssertionError("bench keys are unique")
        claim = record_claim(
            session,
            request=REQUEST + str(n).encode(),
            transaction_code="B1",
            bin="999999",
            route="cash",
        )
        insert_fill(session, fill_fields(pharmacy_id, f"{n:09d}"), claim=claim)
        answer_claim(session, claim, response=RESPONSE, status="P")
        return n

    return unit


class Capture(BatchUnit[int]):
    """The batch form: the same look-up and rows, shared with the batch."""

    def __init__(self, pharmacy_id: int, n: int) -> None:
        self.pharmacy_id, self.n = pharmacy_id, n
        self.key = (pharmacy_id, f"{n:09d}", 0, DATE_OF_SERVICE)

    def keys(self, session):
        return (self.key,)

    def apply(self, found, writes: Writes) -> int:
        if self.key in found:
            raise AssertionError("bench keys are unique")
        claim = writes.claim(
            request=REQUEST + str(self.n).encode(),
            transaction_code="B1",
            bin="999999",
            route="cash",
            response=RESPONSE,
            status="P",
        )
        writes.insert_fill(fill_fields(self.pharmacy_id, self.key[1]), claim=claim)
        return self.n


def setup(url: str) -> tuple:
    upgrade(url)
    engine = make_engine(url, pool_size=20)
    with session_factory(engine)() as session:
        pharmacy = Pharmacy(dea="FP1234563", name="Bench")
        session.add(pharmacy)
        session.commit()
        return engine, pharmacy.id


def one_per_transaction(engine, pharmacy_id: int, count: int, base: int) -> float:
    sessions = session_factory(writer_engine(engine))
    start = time.perf_counter()
    for n in range(base, base + count):
        with sessions() as session:
            unit, writes = Capture(pharmacy_id, n), Writes()
            conn = session.connection()
            unit.apply(find_fills(conn, unit.keys(session)), writes)
            write_batch(conn, [writes])
            session.commit()
    return count / (time.perf_counter() - start)


def group_commit(
    engine, pharmacy_id: int, count: int, base: int, concurrency: int, make_unit
) -> tuple:
    async def main(committer):
        queue = iter(range(base, base + count))

        async def client():
            for n in queue:
                await committer.run(make_unit(pharmacy_id, n))

        await asyncio.gather(*(client() for _ in range(concurrency)))

    with GroupCommitter(engine) as committer:
        start = time.perf_counter()
        asyncio.run(main(committer))
        elapsed = time.perf_counter() - start
    return count / elapsed, committer.units / committer.batches


def pg_schema() -> tuple[str, str, str]:
    conninfo = make_url(PG_URL).set(drivername="postgresql").render_as_string(False)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}", conninfo, schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=int, default=20000, help="batch-unit captures")
    parser.add_argument("--orm", type=int, default=5000, help="ORM-unit captures")
    parser.add_argument("--single", type=int, default=1000, help="one-per-transaction captures")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pg_url, conninfo, schema = pg_schema()
        try:
            for name, url in (
                ("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}"),
                ("PostgreSQL", pg_url),
            ):
                engine, pid = setup(url)
                single = one_per_transaction(engine, pid, args.single, 0)
                orm, _ = group_commit(engine, pid, args.orm, 10_000_000, args.concurrency, orm_unit)
                grouped, per_batch = group_commit(
                    engine, pid, args.captures, 20_000_000, args.concurrency, Capture
                )
                engine.dispose()
                rows.append((name, single, orm, grouped, per_batch))
        finally:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    lines = [
        "| database | one per transaction | group commit, ORM units | group commit, batch units "
        "| batch / ORM | captures per commit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, single, orm, grouped, per_batch in rows:
        lines.append(
            f"| {name} | {single:,.0f}/s | {orm:,.0f}/s | {grouped:,.0f}/s | {grouped / orm:.1f}x "
            f"| {per_batch:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.record:
        record(table, args)


def record(table: str, args) -> None:
    path = Path(__file__).with_name("RESULTS.md")
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = (
        f"\n## Store (issue 4)\n\n"
        f"{dt.date.today()}, machine: 2 cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}. `python bench/store.py --captures {args.captures} "
        f"--orm {args.orm} --single {args.single} --concurrency {args.concurrency}`. A capture = "
        f"claim row (request and response bytes) + fill row (ASAP fields, key look-up first), "
        f"durable (SQLite WAL synchronous=FULL; PostgreSQL default synchronous_commit=on). "
        f"Goal: at least 5,000 captures/s on SQLite with group commit. Load average at the "
        f"end of the run: {os.getloadavg()[0]:.1f} (other work shares the 2 cores).\n\n"
        f"{table}\n\n"
        "Batch units: one key look-up per batch, the batch's claims and fills written with "
        "one executemany (COPY on PostgreSQL) per table, ids taken up front; ORM units: "
        "a look-up, ORM objects and a unit-of-work flush per capture.\n"
    )
    if "\n## Store (issue 4)\n" in text:
        head, _, rest = text.partition("\n## Store (issue 4)\n")
        nxt = rest.find("\n## ")
        text = head + section + (rest[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
