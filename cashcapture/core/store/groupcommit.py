"""Group commit: many captures share one transaction and one fsync.

A unit of work is either a callable taking a Session and returning a value,
or a `BatchUnit` (the adapter's captures), whose reads and writes the
committer shares with the rest of its batch. Callers submit units from any
thread or coroutine; one background thread takes every unit queued so far,
runs them in one transaction, commits once, and only then resolves each
unit's future. So a caller that awaits its result knows its capture is
durable, and throughput does not hang on one sync per capture.

Fast path: callables run back to back with autoflush off (a callable that
honours `repo.OPTIMISTIC` leaves duplicate detection to the unique key).
Batch units are looked up together (`find_fills`: one query for every key of
the batch), each decides without the database (`BatchUnit.apply`, noting
rows in a `Writes`), and the batch's rows go in with one executemany per
table (`write_batch`). Units whose keys collide go in later rounds of the
same transaction, so each sees what the one before it wrote. A batch unit
whose `apply` raises fails alone and writes nothing. If anything else raises
(a unique key another process won, a fill changed under an update:
`StaleFill`) or the commit fails, the batch is rolled back and re-run unit
by unit, each in its own SAVEPOINT, so one bad unit fails alone; a unit that
hit a unique-key violation or a stale fill is retried once in a fresh
savepoint (it then sees the winning row). If that commit fails too, every
waiter gets the exception. Units must therefore be safe to run twice: they
only touch the session (or `Writes`) they are given."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cashcapture.core.store.engine import WriterLock, session_factory, writer_engine
from cashcapture.core.store.repo import (
    OPTIMISTIC,
    FillKey,
    FillRow,
    StaleFill,
    Writes,
    find_fills,
    write_batch,
)
from cashcapture.core.store.types import utcnow

T = TypeVar("T")
_STOP = object()
_RETRY = (IntegrityError, StaleFill)  # another writer won: run again, see its row
log = logging.getLogger(__name__)


class BatchUnit(ABC, Generic[T]):
    """A capture whose fill look-up and row writes are shared with its batch."""

    @abstractmethod
    def keys(self, session: Session) -> Sequence[FillKey]:
        """The fill keys this unit reads (it may query ``session``, e.g. for its pharmacy)."""

    @abstractmethod
    def apply(self, found: Mapping[FillKey, FillRow], writes: Writes) -> T:
        """Decide from the fills ``found`` and note the rows to write; no database here."""


Unit = Callable[[Session], Any] | BatchUnit


class _Ticket:
    """Who decides an awaited unit's fate, under ``_FATE``: its timer, until the
    committer seals it just before COMMIT; after that, the commit's outcome.

    An expired unit is never committed (the caller was told it failed, e.g. reject
    99); a sealed one is answered with its commit's outcome, however late.
    """

    __slots__ = ("late", "state")

    def __init__(self) -> None:
        self.state = _QUEUED
        self.late = False  # the timer fired while sealed: expire if the commit fails


_QUEUED, _SEALED, _EXPIRED = "queued", "sealed", "expired"
_FATE = threading.Lock()
_TIMEOUT_TEXT = "group commit took too long"

#: A thread's future, or an event loop, its asyncio future and the unit's ticket.
Waiter = Future | tuple[asyncio.AbstractEventLoop, asyncio.Future, _Ticket]


class _Expired(Exception):
    """A unit of the batch expired before its commit: the batch runs again without it."""


def _claim(waiter: Waiter) -> bool:
    """False when the caller gave up before its unit ran (then it is not run)."""
    if isinstance(waiter, Future):
        return waiter.set_running_or_notify_cancel()
    return not _expired(waiter)


def _expired(waiter: Waiter) -> bool:
    return not isinstance(waiter, Future) and waiter[2].state == _EXPIRED


def _seal(waiters: Sequence[Waiter]) -> None:
    """Just before COMMIT: from here the commit decides; raises _Expired if one is too late."""
    tickets = [w[2] for w in waiters if not isinstance(w, Future)]
    with _FATE:
        if any(t.state == _EXPIRED for t in tickets):
            raise _Expired
        for t in tickets:
            t.state = _SEALED


def _unseal(waiters: Sequence[Waiter]) -> None:
    """The commit failed: the timers decide again, and one that fired meanwhile expires now."""
    with _FATE:
        for w in waiters:
            if isinstance(w, Future):
                continue
            loop, future, ticket = w
            ticket.state = _EXPIRED if ticket.late else _QUEUED
            if ticket.late:
                loop.call_soon_threadsafe(_settle, future, False, TimeoutError(_TIMEOUT_TEXT))


def _settle(future: Future | asyncio.Future, ok: bool, value: Any) -> None:
    if future.done():  # an asyncio waiter cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _expire(waiter: asyncio.Future, ticket: _Ticket) -> None:
    with _FATE:
        if ticket.state == _SEALED:  # its commit is under way: its outcome answers
            ticket.late = True
            return
        ticket.state = _EXPIRED
    if not waiter.done():
        waiter.set_exception(TimeoutError(_TIMEOUT_TEXT))


def _settle_all(settled: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for future, ok, value in settled:
        _settle(future, ok, value)


class GroupCommitter:
    """Runs submitted units of work in shared transactions on a background thread."""

    def __init__(self, engine: Engine, *, max_batch: int = 1000) -> None:
        self._sessions = session_factory(writer_engine(engine))
        self._lock = WriterLock(engine)
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.units = 0
        self.fallbacks = 0  # batches re-run unit by unit

    # --- public ----------------------------------------------------------------

    def start(self) -> GroupCommitter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
            self._thread.start()
        return self

    def submit(self, unit: Callable[[Session], T] | BatchUnit[T]) -> Future[T]:
        """Queue ``unit``; its future resolves after the commit that holds it."""
        if self._closed:
            raise RuntimeError("group committer is closed")
        self.start()
        future: Future[T] = Future()
        self._queue.put((unit, future))
        return future

    async def run(
        self, unit: Callable[[Session], T] | BatchUnit[T], timeout: float | None = None
    ) -> T:
        """Await ``unit``'s result, available only once it is committed.

        The waiter is an asyncio future: a batch wakes each event loop once
        for all its waiters, not once per unit. Past ``timeout`` seconds it
        raises TimeoutError and the unit is never committed (its batch
        runs again without it), unless its COMMIT had already begun: then
        the answer waits for that commit's outcome.
        """
        if self._closed:
            raise RuntimeError("group committer is closed")
        self.start()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        ticket = _Ticket()
        self._queue.put((unit, (loop, waiter, ticket)))
        if timeout is None:
            return await waiter
        timer = loop.call_later(timeout, _expire, waiter, ticket)
        try:
            return await waiter
        finally:
            timer.cancel()

    def call(self, unit: Callable[[Session], T] | BatchUnit[T], timeout: float | None = None) -> T:
        """Blocking form of `run`, for threads."""
        return self.submit(unit).result(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued unit, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._lock.close()

    def __enter__(self) -> GroupCommitter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the committer thread --------------------------------------------------

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Unit, Waiter]]) -> None:
        live = [(unit, w) for unit, w in batch if _claim(w)]
        while True:
            if not live:
                return
            units = [unit for unit, _ in live]
            waiters = [w for _, w in live]
            try:
                with self._lock:
                    outcomes = self._fast(units, waiters)
                    if outcomes is None:
                        outcomes = self._slow(units, waiters)
            except _Expired:  # rolled back; the others go again without the expired
                live = [(unit, w) for unit, w in live if not _expired(w)]
                continue
            except BaseException as exc:  # never leave a waiter hanging
                log.exception("group commit failed")
                outcomes = [(False, exc)] * len(live)
            break
        self.batches += 1
        self.units += len(live)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, waiter), outcome in zip(live, outcomes, strict=True):
            if isinstance(waiter, Future):
                _settle(waiter, *outcome)
            else:
                by_loop.setdefault(waiter[0], []).append((waiter[1], *outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    @staticmethod
    def _commit(session: Session, waiters: Sequence[Waiter]) -> None:
        _seal(waiters)
        try:
            session.commit()
        except BaseException:
            _unseal(waiters)
            raise

    def _fast(self, units: list[Unit], waiters: Sequence[Waiter]) -> list[tuple[bool, Any]] | None:
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(units)
        with self._sessions() as session:
            session.info[OPTIMISTIC] = True
            try:
                plain = [(i, u) for i, u in enumerate(units) if not isinstance(u, BatchUnit)]
                if plain:
                    with session.no_autoflush:
                        for i, unit in plain:
                            outcomes[i] = (True, unit(session))
                    session.flush()
                batched = [(i, u) for i, u in enumerate(units) if isinstance(u, BatchUnit)]
                if batched:
                    self._batched(session, batched, outcomes)
                self._commit(session, waiters)
            except _Expired:
                session.rollback()
                raise
            except Exception:
                session.rollback()
                self.fallbacks += 1
                return None
        return outcomes

    @staticmethod
    def _batched(
        session: Session,
        units: list[tuple[int, BatchUnit]],
        outcomes: list[tuple[bool, Any]],
    ) -> None:
        """Look up, decide and write the batch units in rounds of distinct keys."""
        conn = session.connection()
        pending = [(i, unit, frozenset(unit.keys(session))) for i, unit in units]
        while pending:
            taken: set[FillKey] = set()
            now, later = [], []
            for item in pending:
                if taken.isdisjoint(item[2]):
                    now.append(item)
                    taken |= item[2]
                else:
                    later.append(item)
            found = find_fills(conn, taken)
            stamp = utcnow()
            writes = []
            for i, unit, _ in now:
                w = Writes(stamp)
                try:
                    outcomes[i] = (True, unit.apply(found, w))
                except Exception as exc:  # a bug in one capture: it alone fails, unwritten
                    outcomes[i] = (False, exc)
                    continue
                writes.append(w)
            write_batch(conn, writes)
            pending = later

    def _slow(self, units: list[Unit], waiters: Sequence[Waiter]) -> list[tuple[bool, Any]]:
        with self._sessions() as session:
            outcomes = [self._one(session, unit) for unit in units]
            try:
                self._commit(session, waiters)
            except _Expired:
                session.rollback()
                raise
            except Exception as exc:
                session.rollback()
                log.warning("group commit: commit failed for %d units", len(units))
                return [(False, exc if ok else value) for ok, value in outcomes]
        return outcomes

    @staticmethod
    def _one(session: Session, unit: Unit) -> tuple[bool, Any]:
        for attempt in (1, 2):
            savepoint = session.begin_nested()
            try:
                if isinstance(unit, BatchUnit):
                    conn = session.connection()
                    found = find_fills(conn, unit.keys(session))
                    writes = Writes()
                    value = unit.apply(found, writes)
                    write_batch(conn, [writes])
                else:
                    value = unit(session)
                    session.flush()
            except _RETRY as exc:
                savepoint.rollback()
                if attempt == 2:
                    return False, exc
            except Exception as exc:
                savepoint.rollback()
                return False, exc
            else:
                savepoint.commit()
                return True, value
        raise AssertionError("unreachable")
