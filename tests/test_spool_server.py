"""Never lose an insured fill: the payer's answer is relayed when the store is down, and the
capture, spooled first, reaches the store exactly once. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import stat
import time
from pathlib import Path

import psycopg
from _adapter_helpers import (
    CASH_BIN,
    INSURED_BIN,
    PATIENT_PHI,
    Client,
    FakePayer,
    ServerProcess,
    b1,
    build,
    load,
    register_pharmacy,
    rejects,
    schedule_of,
    statuses,
    write_config,
)
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from cashcapture.adapter import config, router
from cashcapture.adapter.server import AdapterServer
from cashcapture.adapter.spool import Spool
from cashcapture.core.store import Claim, Fill, make_engine, session_factory


def _count(db_url: str, model) -> int:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return s.scalar(select(func.count()).select_from(model))
    finally:
        engine.dispose()


def _execute(db_url: str, sql: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


async def _until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _insured_config(db_url: str, spool_file: Path, payer_port: int) -> config.Config:
    return config.from_dict(
        {
            "adapter": {"db": db_url, "spool": str(spool_file)},
            "listeners": [{"host": "127.0.0.1", "port": 0}],
            "payers": [
                {
                    "route": INSURED_BIN,
                    "host": "127.0.0.1",
                    "port": payer_port,
                    "payment_type": "commercial",
                }
            ],
        }
    )


def _paid_by_payer(answer: bytes, payer: FakePayer, request: bytes) -> None:
    assert answer == payer.answer(request)  # the payer's answer, unchanged
    assert statuses(answer) == ["P"]


def test_store_down_answer_relayed_then_replayed_at_start_exactly_once(db_url, tmp_path):
    """A real server process; the fills table gone while the claim is paid, back before a
    restart. The spool holds the record twice (a replay interrupted before its removal)."""
    register_pharmacy(db_url)
    spool_file = tmp_path / "captures.spool"
    request = load("b1_insured.dat")

    async def main() -> None:
        payer = await FakePayer().start()
        cfg = write_config(
            tmp_path,
            db_url,
            0,
            extra=f'[[payers]]\nroute = "{INSURED_BIN}"\nhost = "127.0.0.1"\nport = {payer.port}\n'
            'payment_type = "commercial"\n',
        )
        spool_line = f"spool = {json.dumps(str(spool_file))}\n"
        cfg.write_text(cfg.read_text().replace("[adapter]\n", "[adapter]\n" + spool_line, 1))
        log = tmp_path / "server.log"
        try:
            server = ServerProcess(cfg, log)
            [port] = await asyncio.to_thread(server.wait_listening)
            _execute(db_url, "ALTER TABLE fills RENAME TO fills_away")  # the store fails
            with Client(port) as c:
                answer = await asyncio.to_thread(c.exchange, request)
            _paid_by_payer(answer, payer, request)
            assert payer.received == [request]
            assert stat.S_IMODE(spool_file.stat().st_mode) == 0o600
            assert spool_file.stat().st_size > len(request) + len(answer)
            assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0

            _execute(db_url, "ALTER TABLE fills_away RENAME TO fills")  # the store is back
            assert _count(db_url, Fill) == 0
            spool_file.write_bytes(spool_file.read_bytes() * 2)  # the same record twice
            server = ServerProcess(cfg, log)
            await asyncio.to_thread(server.wait_listening, 2)  # start-up replay came first
            assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0
        finally:
            await payer.stop()
        engine = make_engine(db_url)
        with session_factory(engine)() as s:
            [fill] = s.scalars(select(Fill)).all()
            [claim] = s.scalars(select(Claim)).all()
        engine.dispose()
        assert (fill.route, fill.payment_type, fill.state) == ("insured", "04", "new")
        assert (claim.request, claim.response) == (request, answer)  # the payer's answer kept
        assert fill.created_by_claim_id == claim.id
        assert spool_file.stat().st_size == 0  # removed once committed
        logged = log.read_text()
        assert '"capture_failed"' in logged and '"spool_replayed"' in logged
        for phi in PATIENT_PHI:  # the spool holds patient data; the log never does
            assert phi not in logged

    asyncio.run(main())


class _LockHeld:
    """Another connection holding the store's write lock (SQLite) or the claims table."""

    def __init__(self, db_url: str) -> None:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite":
            self.conn = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
            self.conn.execute("BEGIN EXCLUSIVE")
        else:
            schema = url.query["options"].split("search_path=")[1]
            conninfo = url.set(drivername="postgresql", query={}).render_as_string(False)
            self.conn = psycopg.connect(conninfo)
            self.conn.execute(f'LOCK TABLE "{schema}".claims IN ACCESS EXCLUSIVE MODE')

    def release(self) -> None:
        self.conn.rollback() if isinstance(self.conn, psycopg.Connection) else self.conn.close()
        self.conn.close()


def test_store_locked_answer_relayed_late_commit_and_replay_make_one_fill(
    migrated_db_url, tmp_path, monkeypatch
):
    """The router gives up waiting on a locked store and spools; the capture it gave up on
    is never committed by the committer, and the replay commits it once."""
    register_pharmacy(migrated_db_url)
    monkeypatch.setattr(router, "COMMIT_TIMEOUT", 0.5)
    request = load("b1_insured.dat")
    spool_file = tmp_path / "captures.spool"

    async def main() -> None:
        payer = await FakePayer().start()
        cfg = _insured_config(migrated_db_url, spool_file, payer.port)
        server = AdapterServer(cfg, schedule_of)
        server.router.spool_every = 0.1
        await server.start()
        try:
            with Client(server.ports[0]) as c:
                lock = await asyncio.to_thread(_LockHeld, migrated_db_url)
                try:
                    answer = await asyncio.to_thread(c.exchange, request)
                    _paid_by_payer(answer, payer, request)
                    assert Spool(spool_file).pending()
                finally:
                    await asyncio.to_thread(lock.release)
            await _until(lambda: not Spool(spool_file).pending())
            await asyncio.sleep(0.3)  # a few more replay rounds: nothing more arrives
        finally:
            await server.shutdown()
            await payer.stop()

    asyncio.run(main())
    assert _count(migrated_db_url, Fill) == 1
    assert _count(migrated_db_url, Claim) == 1


def test_no_spool_for_an_insured_claim_that_changes_no_fill(migrated_db_url, tmp_path):
    """Nothing controlled was paid: nothing worth patient data on disk."""
    register_pharmacy(migrated_db_url)
    spool_file = tmp_path / "captures.spool"

    async def main() -> None:
        payer = await FakePayer().start()
        cfg = _insured_config(migrated_db_url, spool_file, payer.port)
        server = AdapterServer(cfg, lambda ndc: None)  # no drug is controlled
        await server.start()
        try:
            _execute(migrated_db_url, "ALTER TABLE claims RENAME TO claims_away")
            with Client(server.ports[0]) as c:
                answer = await asyncio.to_thread(c.exchange, load("b1_insured.dat"))
            assert statuses(answer) == ["P"]
        finally:
            await server.shutdown()
            await payer.stop()

    asyncio.run(main())
    assert not spool_file.exists()


def _exchange(port: int, request: bytes) -> bytes:
    with Client(port) as c:
        return c.exchange(request)


def test_claims_answered_99_on_a_locked_store_are_never_captured(migrated_db_url, monkeypatch):
    """Reject 99 tells the pharmacy nothing was captured: once the store is free again,
    the claims the router gave up on must not be committed after all."""
    register_pharmacy(migrated_db_url)
    monkeypatch.setattr(router, "COMMIT_TIMEOUT", 0.5)
    cfg = config.from_dict(
        {
            "adapter": {"db": migrated_db_url},
            "listeners": [{"host": "127.0.0.1", "port": 0}],
            "routes": {"cash": [CASH_BIN]},
        }
    )

    async def main() -> tuple[list[bytes], bytes]:
        server = AdapterServer(cfg, schedule_of)
        await server.start()
        port = server.ports[0]
        try:
            lock = await asyncio.to_thread(_LockHeld, migrated_db_url)
            try:
                requests = [build(b1(rx=7000000 + i)) for i in range(6)]
                answers = await asyncio.gather(
                    *(asyncio.to_thread(_exchange, port, r) for r in requests)
                )
                await asyncio.sleep(1.0)  # well past the timeout, the lock still held
            finally:
                await asyncio.to_thread(lock.release)
            await asyncio.sleep(1.5)  # the committer gets the store back
            after = await asyncio.to_thread(_exchange, port, build(b1(rx=7100000)))
        finally:
            await server.shutdown()
        return answers, after

    answers, after = asyncio.run(main())
    assert [statuses(a) for a in answers] == [["R"]] * 6
    assert all(rejects(a) == ["99"] for a in answers)
    assert statuses(after) == ["P"]  # the store works again
    assert _count(migrated_db_url, Fill) == 1  # only the claim answered P
    assert _count(migrated_db_url, Claim) == 1
