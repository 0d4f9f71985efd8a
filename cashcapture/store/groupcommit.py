"""Group commit: many captures share one transaction and one fsync.

A unit of work is a callable taking a Session and returning a value. Callers
submit units from any thread or coroutine; one background thread takes every
unit queued so far, runs them in one transaction, commits once, and only then
resolves each unit's future. So a caller that awaits its result knows its
capture is durable, and throughput does not hang on one sync per capture.

Fast path: the units run back to back with autoflush off, `insert_fill`
leaves duplicate detection to the unique key, and the batch commits once.
If any unit raises or the commit fails, the batch is rolled back and re-run
unit by unit, each in its own SAVEPOINT, so one bad unit fails alone; a
unit that hit a unique-key violation is retried once in a fresh savepoint
(it then sees the winning row: `DuplicateFill`). If that commit fails too,
every waiter gets the exception. Units must therefore be safe to run twice:
they only touch the session they are given.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .engine import session_factory, writer_engine
from .repo import OPTIMISTIC

T = TypeVar("T")
Unit = Callable[[Session], Any]
_STOP = object()
log = logging.getLogger(__name__)


class GroupCommitter:
    """Runs submitted units of work in shared transactions on a background thread."""

    def __init__(self, engine: Engine, *, max_batch: int = 1000) -> None:
        self._sessions = session_factory(writer_engine(engine))
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.units = 0

    # --- public ----------------------------------------------------------------

    def start(self) -> GroupCommitter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
            self._thread.start()
        return self

    def submit(self, unit: Callable[[Session], T]) -> Future[T]:
        """Queue ``unit``; its future resolves after the commit that holds it."""
        if self._closed:
            raise RuntimeError("group committer is closed")
        self.start()
        future: Future[T] = Future()
        self._queue.put((unit, future))
        return future

    async def run(self, unit: Callable[[Session], T]) -> T:
        """Await ``unit``'s result, available only once it is committed."""
        return await asyncio.wrap_future(self.submit(unit))

    def call(self, unit: Callable[[Session], T], timeout: float | None = None) -> T:
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

    def _run_batch(self, batch: list[tuple[Unit, Future]]) -> None:
        live = [(unit, fut) for unit, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        units = [unit for unit, _ in live]
        try:
            outcomes = self._fast(units)
            if outcomes is None:
                outcomes = self._slow(units)
        except BaseException as exc:  # never leave a waiter hanging
            log.exception("group commit failed")
            outcomes = [(False, exc)] * len(live)
        self.batches += 1
        self.units += len(live)
        for (_, fut), (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _fast(self, units: list[Unit]) -> list[tuple[bool, Any]] | None:
        with self._sessions() as session:
            session.info[OPTIMISTIC] = True
            try:
                with session.no_autoflush:
                    values = [unit(session) for unit in units]
                session.commit()
            except Exception:
                session.rollback()
                return None
        return [(True, v) for v in values]

    def _slow(self, units: list[Unit]) -> list[tuple[bool, Any]]:
        with self._sessions() as session:
            outcomes = [self._one(session, unit) for unit in units]
            try:
                session.commit()
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
                value = unit(session)
                session.flush()
            except IntegrityError as exc:
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
