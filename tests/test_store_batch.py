"""The batch form of the capture writes: one look-up per batch, one executemany per table.

Every test runs on SQLite and PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from decimal import Decimal

import pytest
from _store_helpers import (
    add_pharmacy,
    capture,
    fill_fields,
    find_fill,
    hold_committer,
    insert_fill,
)
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.exc import IntegrityError

from cashcapture.core.states import IllegalTransition
from cashcapture.core.store import (
    BatchUnit,
    Claim,
    Fill,
    FillIngredient,
    GroupCommitter,
    Writes,
    session_factory,
    writer_engine,
)
from cashcapture.core.store.repo import (  # internal: tested directly
    StaleFill,
    find_fills,
    write_batch,
)
from cashcapture.core.store.sql import bulk_insert

DOS = dt.date(2024, 3, 4)
INGREDIENTS = [
    {"sequence": 1, "ndc": "00406052362", "quantity": Decimal("1.5")},
    {"sequence": 2, "ndc": "00000000001", "quantity": Decimal("98.5"), "dosage_units": "03"},
]


def _write(engine, *writes: Writes) -> None:
    with writer_engine(engine).begin() as conn:
        write_batch(conn, list(writes))


def _rows(engine, model, **where) -> list:
    with session_factory(engine)() as session:
        stmt = select(model).filter_by(**where).order_by(model.id)
        return list(session.scalars(stmt))


def _new_capture(pharmacy_id: int, rx: str, **fields) -> tuple[Writes, object, object]:
    writes = Writes()
    claim = writes.claim(
        request=f"B1 {rx}".encode(),
        transaction_code="B1",
        bin="999999",
        route="cash",
        response=b"paid",
        status="P",
        pharmacy_id=pharmacy_id,
    )
    fill = writes.insert_fill(fill_fields(pharmacy_id, rx, **fields), claim=claim)
    return writes, claim, fill


COMPARED = [c.key for c in Fill.__table__.columns if not c.key.endswith(("id", "_at"))]


def test_batch_insert_stores_what_the_orm_stores(db_engine, pharmacy_id):
    """Claims and fills written by write_batch read back as the ORM path's do."""
    captures = [_new_capture(pharmacy_id, f"{n}", days_supply=10 + n) for n in range(1, 6)]
    _write(db_engine, *(w for w, _, _ in captures))
    with session_factory(db_engine)() as session:
        insert_fill(session, fill_fields(pharmacy_id, "999", days_supply=11))
        session.commit()
    by_orm = _rows(db_engine, Fill, rx_number="999")[0]
    for n, (_, claim, fill) in enumerate(captures, start=1):
        assert claim.id is not None and fill.id is not None
        stored = _rows(db_engine, Fill, id=fill.id)[0]
        assert stored.created_by_claim_id == claim.id and stored.updated_by_claim_id is None
        assert stored.created_at == stored.updated_at and stored.created_at.tzinfo is not None
        expected = {c: getattr(by_orm, c) for c in COMPARED}
        expected.update(rx_number=str(n), days_supply=10 + n)
        assert {c: getattr(stored, c) for c in COMPARED} == expected
        saved = _rows(db_engine, Claim, id=claim.id)[0]
        assert (saved.request, saved.response, saved.status) == (f"B1 {n}".encode(), b"paid", "P")
        assert saved.content_hash is not None and saved.answered_at is not None
    assert len({fill.id for _, _, fill in captures}) == 5


def test_find_fills_matches_whole_keys_only(db_engine, pharmacy_id):
    """One query for many keys; a row matching each column's list but not a key stays out."""
    w, claim, _ = _new_capture(pharmacy_id, "100", fill_number=1, date_of_service=DOS)
    w2, _, _ = _new_capture(pharmacy_id, "200", fill_number=0, date_of_service=DOS.replace(day=5))
    _write(db_engine, w, w2)
    wanted = [
        (pharmacy_id, "100", 0, DOS.replace(day=5)),  # each column's value exists, the key not
        (pharmacy_id, "200", 0, DOS.replace(day=5)),
        (pharmacy_id, "100", 1, DOS),
        (pharmacy_id, "300", 0, DOS),
    ]
    with db_engine.connect() as conn:
        found = find_fills(conn, wanted)
        assert find_fills(conn, []) == {}
    assert sorted(found) == sorted(wanted[1:3])
    row = found[(pharmacy_id, "100", 1, DOS)]
    assert (row.state, row.version, row.reported_status) == ("new", 1, None)
    assert (row.last_request, row.last_response) == (b"B1 100", b"paid")


def test_find_fills_mixes_pharmacies_and_dates(db_engine, pharmacy_id):
    with session_factory(db_engine)() as session:
        other = add_pharmacy(session, dea="BB1234563").id
        session.commit()
    stored, absent = [], []
    writes = Writes()
    for n in range(150):
        key = ((pharmacy_id, other)[n // 2 % 2], f"{n}", n % 3, DOS + dt.timedelta(days=n % 5))
        if n % 2:
            names = ("pharmacy_id", "rx_number", "fill_number", "date_of_service")
            writes.insert_fill({**fill_fields(pharmacy_id), **dict(zip(names, key, strict=True))})
            stored.append(key)
        else:
            absent.append(key)
    _write(db_engine, writes)
    with db_engine.connect() as conn:
        found = find_fills(conn, stored + absent + stored[:3])  # repeats are one key
    assert sorted(found) == sorted(stored)
    assert {k[0] for k in found} == {pharmacy_id, other}
    assert all(row.key == key for key, row in found.items())


def test_revise_and_void_follow_the_orm_rules(db_engine, pharmacy_id):
    w, _, _ = _new_capture(pharmacy_id, "100")
    _write(db_engine, w)
    key = (pharmacy_id, "100", 0, DOS)
    with db_engine.connect() as conn:
        row = find_fills(conn, [key])[key]
    bad = Writes()
    with pytest.raises(ValueError, match="fill key"):
        bad.revise_fill(row, {"rx_number": "101"})
    with pytest.raises(TypeError, match="unknown fill field"):
        bad.revise_fill(row, {"colour": "red"})
    with pytest.raises(TypeError, match="unknown fill fields"):
        bad.insert_fill({"colour": "red"})

    rebill = Writes()
    rebill_claim = rebill.claim(
        request=b"B3", transaction_code="B3", bin="999999", route="cash", response=b"ok", status="P"
    )
    rebill.revise_fill(row, {"days_supply": 7}, claim=rebill_claim, ingredients=INGREDIENTS)
    _write(db_engine, rebill)
    fill = _rows(db_engine, Fill, id=row.id)[0]
    assert (fill.state, fill.version, fill.days_supply, fill.compound) == ("revised", 2, 7, True)
    assert fill.updated_by_claim_id == rebill_claim.id and fill.needs_report
    assert [(i.sequence, i.ndc, i.quantity) for i in fill.ingredients] == [
        (1, "00406052362", Decimal("1.500")),
        (2, "00000000001", Decimal("98.500")),
    ]

    with db_engine.connect() as conn:
        row = find_fills(conn, [key])[key]
    assert (row.version, row.last_request) == (2, b"B3")
    again = Writes()
    again.revise_fill(row, {}, ingredients=INGREDIENTS[:1])  # replaces, never appends
    _write(db_engine, again)
    assert [i.sequence for i in _rows(db_engine, FillIngredient, fill_id=row.id)] == [1]

    with db_engine.connect() as conn:
        row = find_fills(conn, [key])[key]
    void = Writes()
    void.void_fill(row)
    _write(db_engine, void)
    fill = _rows(db_engine, Fill, id=row.id)[0]
    assert (fill.state, fill.version, fill.needs_report) == ("voided", 4, False)  # never reported

    # reported, then voided: a 02 record is due (a fresh fill: a voided one is never voided again)
    w, _, _ = _new_capture(pharmacy_id, "777")
    _write(db_engine, w)
    key = (pharmacy_id, "777", 0, DOS)
    with db_engine.connect() as conn:
        fill_id = find_fills(conn, [key])[key].id
    with session_factory(db_engine)() as session:
        session.get(Fill, fill_id).reported_status = "01"
        session.commit()
    with db_engine.connect() as conn:
        row = find_fills(conn, [key])[key]
    void = Writes()
    void.void_fill(row)
    _write(db_engine, void)
    assert _rows(db_engine, Fill, id=row.id)[0].needs_report is True
    with db_engine.connect() as conn:
        voided = find_fills(conn, [key])[key]
    with pytest.raises(IllegalTransition):  # and never a second void of a voided fill
        Writes().void_fill(voided)


def test_update_of_a_stale_fill_is_refused(db_engine, pharmacy_id):
    w, _, _ = _new_capture(pharmacy_id, "100")
    _write(db_engine, w)
    key = (pharmacy_id, "100", 0, DOS)
    with db_engine.connect() as conn:
        seen = find_fills(conn, [key])[key]
    first = Writes()
    first.void_fill(seen)
    _write(db_engine, first)
    late = Writes()
    late.revise_fill(seen, {"days_supply": 3})  # decided on version 1, the fill is at 2
    late_claim = late.claim(
        request=b"B3", transaction_code="B3", bin="999999", route="cash", response=b"x", status="P"
    )
    with pytest.raises(StaleFill):
        _write(db_engine, late)
    fill = _rows(db_engine, Fill, id=seen.id)[0]
    assert (fill.state, fill.version) == ("voided", 2)
    assert _rows(db_engine, Claim, id=late_claim.id) == []  # rolled back with it


def test_second_fill_with_a_key_is_refused_by_the_database(db_engine, pharmacy_id):
    _write(db_engine, _new_capture(pharmacy_id, "100")[0])
    with pytest.raises(IntegrityError):
        _write(db_engine, _new_capture(pharmacy_id, "100")[0])
    assert len(_rows(db_engine, Fill)) == 1 and len(_rows(db_engine, Claim)) == 1


# --- batch units in the group committer ---------------------------------------------


class Capture(BatchUnit[str]):
    """A B1 as the adapter does it: insert when the key is free, else report a duplicate."""

    def __init__(self, pharmacy_id: int, rx: str, *, blind_once: bool = False) -> None:
        self.key = (pharmacy_id, rx, 0, DOS)
        self.blind = blind_once  # first run ignores the look-up (another writer's race)
        self.runs = 0
        self.claim = None

    def keys(self, session):
        return [self.key]

    def apply(self, found, writes: Writes) -> str:
        self.runs += 1
        if self.key in found and not (self.blind and self.runs == 1):
            return f"duplicate of {found[self.key].id}"
        self.claim = writes.claim(
            request=self.key[1].encode(),
            transaction_code="B1",
            bin="999999",
            route="cash",
            response=b"paid",
            status="P",
        )
        writes.insert_fill(fill_fields(self.key[0], self.key[1]), claim=self.claim)
        return "inserted"


class Void(BatchUnit[int]):
    def __init__(self, key, *, stale_once: bool = False) -> None:
        self.key, self.stale, self.runs = key, stale_once, 0

    def keys(self, session):
        return [self.key]

    def apply(self, found, writes: Writes) -> int:
        self.runs += 1
        row = found[self.key]
        if self.stale and self.runs == 1:  # decided on an older version than the store holds
            row = dataclasses.replace(row, version=row.version - 1)
        writes.void_fill(row)
        return row.version


class Broken(Capture):
    def apply(self, found, writes: Writes) -> str:
        super().apply(found, writes)
        raise RuntimeError("adjudication bug")


def test_batch_units_commit_together_and_answer_after_commit(db_engine, pharmacy_id):
    seen: list[bool] = []
    units = [Capture(pharmacy_id, f"{n}") for n in range(30)]

    def check(future, unit) -> None:
        assert future.result() == "inserted"
        with session_factory(db_engine)() as other:
            seen.append(other.get(Claim, unit.claim.id) is not None)

    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        futures = [committer.submit(u) for u in units]
        assert not any(f.done() for f in futures)
        for f, u in zip(futures, units, strict=True):
            f.add_done_callback(lambda f, u=u: check(f, u))
        gate.set()
        assert [f.result(30) for f in futures] == ["inserted"] * 30
    assert seen == [True] * 30
    assert committer.batches == 2 and committer.fallbacks == 0
    assert len(_rows(db_engine, Fill)) == 30


def test_same_key_twice_in_a_batch_second_sees_the_first(db_engine, pharmacy_id):
    """Colliding units go in a later round of the same transaction: no doubling, no fallback."""
    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        a, other, b = (
            committer.submit(Capture(pharmacy_id, rx)) for rx in ("SAME", "OTHER", "SAME")
        )
        gate.set()
        assert (a.result(30), other.result(30)) == ("inserted", "inserted")
        fill_id = _rows(db_engine, Fill, rx_number="SAME")[0].id
        assert b.result(30) == f"duplicate of {fill_id}"
    assert committer.fallbacks == 0 and committer.batches == 2
    assert len(_rows(db_engine, Fill)) == 2 and len(_rows(db_engine, Claim)) == 2


def test_failing_batch_unit_fails_alone_and_writes_nothing(db_engine, pharmacy_id):
    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        good1 = committer.submit(Capture(pharmacy_id, "G1"))
        broken = committer.submit(Broken(pharmacy_id, "BAD"))
        good2 = committer.submit(Capture(pharmacy_id, "G2"))
        gate.set()
        assert good1.result(30) == good2.result(30) == "inserted"
        with pytest.raises(RuntimeError, match="adjudication bug"):
            broken.result(30)
    assert committer.fallbacks == 0
    assert [f.rx_number for f in _rows(db_engine, Fill)] == ["G1", "G2"]
    assert len(_rows(db_engine, Claim)) == 2


def test_key_won_by_another_writer_falls_back_unit_by_unit(db_engine, pharmacy_id):
    """A unique violation (another process inserted the key after our look-up) sinks no one."""
    with GroupCommitter(db_engine) as committer:
        committer.call(Capture(pharmacy_id, "TAKEN"), 30)
        gate = hold_committer(committer)
        racer = Capture(pharmacy_id, "TAKEN", blind_once=True)
        futures = [committer.submit(Capture(pharmacy_id, f"N{n}")) for n in range(5)]
        raced = committer.submit(racer)
        gate.set()
        assert [f.result(30) for f in futures] == ["inserted"] * 5
        taken = _rows(db_engine, Fill, rx_number="TAKEN")[0].id
        assert raced.result(30) == f"duplicate of {taken}"
    assert committer.fallbacks == 1 and racer.runs == 2
    assert len(_rows(db_engine, Fill)) == 6 and len(_rows(db_engine, Claim)) == 6


def test_stale_update_is_retried_on_the_fresh_row(db_engine, pharmacy_id):
    with GroupCommitter(db_engine) as committer:
        committer.call(Capture(pharmacy_id, "100"), 30)
        void = Void((pharmacy_id, "100", 0, DOS), stale_once=True)
        assert committer.call(void, 30) == 1
    assert void.runs == 2 and committer.fallbacks == 1
    fill = _rows(db_engine, Fill)[0]
    assert (fill.state, fill.version) == ("voided", 2)


def test_two_committers_never_double_a_fill(db_engine, pharmacy_id):
    """Two committers (as two adapter processes) race on the same keys: each stored once."""
    keys = [f"R{n}" for n in range(40)]

    async def flood(committer):
        return await asyncio.gather(*(committer.run(Capture(pharmacy_id, k)) for k in keys))

    with GroupCommitter(db_engine) as one, GroupCommitter(db_engine) as two:
        results: dict[str, list[str]] = {}
        threads = [
            threading.Thread(target=lambda c=c, n=n: results.update({n: asyncio.run(flood(c))}))
            for n, c in (("one", one), ("two", two))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for i, key in enumerate(keys):
        outcomes = sorted(r[i].split(" ")[0] for r in results.values())
        assert outcomes == ["duplicate", "inserted"], key
    with session_factory(db_engine)() as session:
        assert session.scalar(select(func.count(Fill.id))) == 40
        assert session.scalar(select(func.count(Claim.id))) == 40
        assert find_fill(session, pharmacy_id, "R7", 0, DOS) is not None


def test_orm_and_batch_units_share_a_batch(db_engine, pharmacy_id):
    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        orm = committer.submit(lambda s: capture(s, pharmacy_id, rx="ORM").rx_number)
        batch = committer.submit(Capture(pharmacy_id, "BATCH"))
        gate.set()
        assert (orm.result(30), batch.result(30)) == ("ORM", "inserted")
    assert sorted(f.rx_number for f in _rows(db_engine, Fill)) == ["BATCH", "ORM"]


def test_run_times_out_and_a_unit_not_started_never_runs(db_engine, pharmacy_id):
    unit = Capture(pharmacy_id, "LATE")

    async def late(committer):
        with pytest.raises(TimeoutError):
            await committer.run(unit, timeout=0.2)
        return await committer.run(Capture(pharmacy_id, "ON TIME"), timeout=30)

    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        threading.Timer(1.0, gate.set).start()
        assert asyncio.run(late(committer)) == "inserted"
    assert unit.runs == 0
    assert [f.rx_number for f in _rows(db_engine, Fill)] == ["ON TIME"]


# --- the one bulk insert (store batches and the extract's records) ------------------


def test_bulk_insert_takes_tuples_in_any_column_order_and_refuses_a_duplicate(db_engine):
    table = Table(
        "bulk_probe",
        MetaData(),
        Column("a", Integer, primary_key=True),
        Column("b", String(8)),
        Column("c", Integer),
    )
    table.create(db_engine)
    with db_engine.begin() as conn:  # columns named out of the table's order, rows a generator
        bulk_insert(conn, table, ("c", "b", "a"), ((n * 10, f"r{n}", n) for n in range(1, 4)))
    with db_engine.connect() as conn:
        got = conn.execute(select(table.c.a, table.c.b, table.c.c).order_by(table.c.a)).all()
    assert [tuple(r) for r in got] == [(1, "r1", 10), (2, "r2", 20), (3, "r3", 30)]
    with pytest.raises(IntegrityError), db_engine.begin() as conn:
        bulk_insert(conn, table, ("a", "b", "c"), [(4, "r4", 40), (2, "again", 0)])
    with db_engine.connect() as conn:  # the failed batch left nothing behind
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 3
