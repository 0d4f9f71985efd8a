"""Group commit: a unit commits whole or not at all, and its result comes only after commit."""

from __future__ import annotations

import asyncio

import pytest
from _store_helpers import capture, hold_committer
from sqlalchemy import event, func, select

from cashcapture.core.store import Claim, DuplicateFill, Fill, GroupCommitter, session_factory


def _count(engine, model) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count(model.id)))


def test_results_arrive_only_after_commit(db_engine, pharmacy_id):
    """When a future resolves, another connection already sees the unit's rows."""
    seen: list[bool] = []

    def check(future) -> None:
        fill_id = future.result()
        with session_factory(db_engine)() as other:
            seen.append(other.get(Fill, fill_id) is not None)

    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        futures = []
        for n in range(20):
            unit = lambda s, n=n: (f := capture(s, pharmacy_id, rx=f"RX{n}"), s.flush(), f.id)[2]  # noqa: E731
            futures.append(committer.submit(unit))
        assert not any(f.done() for f in futures)
        for f in futures:
            f.add_done_callback(check)
        gate.set()
        ids = [f.result(30) for f in futures]
        assert len(set(ids)) == 20
    assert seen == [True] * 20
    assert committer.batches == 2 and committer.units == 21


def test_failing_unit_fails_alone(db_engine, pharmacy_id):
    def bad(session):
        capture(session, pharmacy_id, rx="BAD")
        session.flush()
        raise RuntimeError("adjudication bug")

    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        good1 = committer.submit(lambda s: capture(s, pharmacy_id, rx="G1") and "g1")
        broken = committer.submit(bad)
        good2 = committer.submit(lambda s: capture(s, pharmacy_id, rx="G2") and "g2")
        gate.set()
        assert good1.result(30) == "g1" and good2.result(30) == "g2"
        with pytest.raises(RuntimeError, match="adjudication bug"):
            broken.result(30)
    with session_factory(db_engine)() as session:
        assert sorted(session.scalars(select(Fill.rx_number))) == ["G1", "G2"]
        assert session.scalar(select(func.count(Claim.id))) == 2  # BAD's claim rolled back too


def test_duplicate_in_one_batch_gets_duplicate_fill(db_engine, pharmacy_id):
    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        a = committer.submit(lambda s: capture(s, pharmacy_id, rx="SAME").rx_number)
        b = committer.submit(lambda s: capture(s, pharmacy_id, rx="SAME").rx_number)
        gate.set()
        assert a.result(30) == "SAME"
        with pytest.raises(DuplicateFill):
            b.result(30)
    assert _count(db_engine, Fill) == 1 and _count(db_engine, Claim) == 1


def test_commit_failure_reaches_every_waiter(db_engine, pharmacy_id):
    def poisoned(session):
        def boom(_session):
            raise OSError("disk gone")

        event.listen(session, "before_commit", boom)
        capture(session, pharmacy_id, rx="P")

    with GroupCommitter(db_engine) as committer:
        gate = hold_committer(committer)
        futures = [
            committer.submit(lambda s, n=n: capture(s, pharmacy_id, rx=f"C{n}")) for n in range(3)
        ]
        futures.append(committer.submit(poisoned))
        gate.set()
        for f in futures:
            with pytest.raises(OSError, match="disk gone"):
                f.result(30)
    assert _count(db_engine, Fill) == 0 and _count(db_engine, Claim) == 0


def test_asyncio_waiters_share_transactions(db_engine, pharmacy_id):
    async def main(committer):
        async def one(n):
            return await committer.run(lambda s: capture(s, pharmacy_id, rx=f"A{n}").rx_number)

        return await asyncio.gather(*(one(n) for n in range(200)))

    with GroupCommitter(db_engine) as committer:
        results = asyncio.run(main(committer))
    assert sorted(results) == sorted(f"A{n}" for n in range(200))
    assert _count(db_engine, Fill) == 200
    assert committer.batches < 200  # grouped


def test_closed_committer_refuses_work(db_engine):
    committer = GroupCommitter(db_engine).start()
    committer.close()
    with pytest.raises(RuntimeError, match="closed"):
        committer.submit(lambda s: None)
