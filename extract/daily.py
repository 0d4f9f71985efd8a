"""The day's extract: queued fills -> one validated ASAP file per submitter.

For the day (default: yesterday in the configured time zone) every fill whose
last change happened before the day's end and that still needs a report is
streamed from the database, pharmacy by pharmacy, as the DSP01 the state needs
(00 new, 01 revised, 02 void; a reversal before reporting needs nothing). Each
record goes through the shared validator: a bad one is held back as a
RecordReject, the rest are written. A file with a file-level error is kept for
inspection but marked failed and never submitted. Pharmacies with nothing to
report get a zero report (daily or weekly, a setting).

The parts, each a module with a small interface:

    selection   which day, which pharmacies, which fills (the store's reads)
    assembly    grouping into files, names, records, zero reports
    checking    the shared validator over each file; records held back
    recording   files, records, rejects and drops committed in batches
    submit      delivery by SFTP, exactly once (a separate command)

This module runs them over a day, in one process or spread over several.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from sqlalchemy.orm import Session, sessionmaker

from cashcapture.core.store.types import utcnow
from extract.assembly import (
    Assembler,
    Group,
    Names,
    groups,
    mail_order_groups,
    registration_problem,
    zero_period,
)
from extract.checking import Checker
from extract.recording import ExtractResult, FileOutcome, Recorder
from extract.selection import Selection, default_day
from extract.settings import Settings, SettingsError

__all__ = ["Checker", "ExtractResult", "Extractor", "FileOutcome", "extract"]


class Extractor:
    """One extract run over one day: selection -> assembly -> checking -> recording."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        day: dt.date,
        *,
        now: dt.datetime | None = None,
        checker: Checker | None = None,
        progress: Callable[[int, int], None] | None = None,
        before_id: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.day = day
        self.now = now or utcnow()
        local_now = self.now.astimezone(settings.extract.zone())
        self.local_now = local_now
        rules = settings.extract.rules()
        checker = checker or Checker(
            rules,
            local_now.date(),
            drug_list=settings.directory(rules.state),
            po_box=settings.extract.po_box,
        )
        self.progress = progress or (lambda done, total: None)
        self.selection = Selection(sessions, settings, day, self.now, before_id)
        names = Names(settings.extract, local_now, self.selection.taken_names)
        self.assembler = Assembler(settings, self.selection, checker, names)
        self.result = ExtractResult(day=day)
        outbox = settings.outbox_dir() if settings.extract.outbox else None
        self.recorder = Recorder(
            sessions, day, self.now, outbox, self.result, settings.extract.report_state
        )

    def groups(self) -> list[Group]:
        with self.sessions() as session:
            found = groups(self.selection.pharmacies(session), self.settings)
            found += mail_order_groups(self.selection.registered_here(session), self.settings)
            session.expunge_all()
        return found

    def run(self, workers: int = 1) -> ExtractResult:
        """Every group's file, then zero reports; groups spread over `workers` processes."""
        all_groups = self.groups()
        self.selection.resolve_stale_rejects()
        self.selection.last_before()
        usable = []
        for group in all_groups:
            problem = registration_problem(group, self.settings, self.local_now)
            if problem:
                self.result.problems.append(problem)
            else:
                usable.append(group)
        if workers > 1 and len(usable) > 1:
            self._run_parallel(usable, workers)
        else:
            self.run_groups(usable)
        self._zero_reports(usable)
        self.recorder.flush()
        return self.result

    def run_groups(self, groups: list[Group]) -> None:
        total = sum(len(g.pharmacies) for g in groups)
        done = 0
        for group in groups:
            with self.sessions() as session:
                built = self.assembler.build(session, group)
            self.recorder.add(built)
            done += len(group.pharmacies)
            self.progress(done, total)
        self.recorder.flush()

    def _run_parallel(self, groups: list[Group], workers: int) -> None:
        """Groups are independent: hand chunks of them to worker processes."""
        bind = self.sessions.kw["bind"]
        url = bind.url.render_as_string(hide_password=False)
        chunks: list[list[str]] = []
        per_chunk = max(1, len(groups) // (workers * 8))
        for i in range(0, len(groups), per_chunk):
            chunks.append([g.submitter_id for g in groups[i : i + per_chunk]])
        sizes = {g.submitter_id: len(g.pharmacies) for g in groups}
        total, done = sum(sizes.values()), 0
        before_id = self.selection.last_before()
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {
                pool.submit(
                    _extract_chunk, url, self.settings, self.day, self.now, before_id, chunk
                ): chunk
                for chunk in chunks
            }
            for future in as_completed(futures):
                part, active = future.result()
                self.result.files += part.files
                self.result.dropped += part.dropped
                self.result.rejected += part.rejected
                self.assembler.active |= active
                done += sum(sizes[sub] for sub in futures[future])
                self.progress(done, total)
        self.result.files.sort(key=lambda f: f.name)

    def _zero_reports(self, groups: list[Group]) -> None:
        period = zero_period(self.settings, self.day)
        if period is None:
            return
        start, end = period
        busy = self.selection.busy(start, end) | self.assembler.active
        cutoff = self.selection.cutoff
        for group in groups:
            if group.mail_order:  # zero reports are the home state's business
                continue
            for ph in group.pharmacies:
                if ph.id in busy or not ph.active or ph.created_at >= cutoff:
                    continue
                self.recorder.add(self.assembler.zero_report(group, ph, start, end))


def _extract_chunk(
    url: str,
    settings: Settings,
    day: dt.date,
    now: dt.datetime,
    before_id: int | None,
    submitters: list[str],
) -> tuple[ExtractResult, set[int]]:
    """Worker process: the files of these submitters (zero reports stay with the parent).

    One Extractor per worker process and run, so what it reads once (queue
    counts, in-flight fills, names, rejects, groups) serves all its chunks.
    """
    from cashcapture.core.store import make_engine, session_factory

    key = (url, day, now)
    state = _WORKER.get(key)
    if state is None:
        _WORKER.clear()
        ex = Extractor(
            session_factory(make_engine(url)), settings, day, now=now, before_id=before_id
        )
        state = _WORKER[key] = (ex, {g.submitter_id: g for g in ex.groups()})
    ex, by_submitter = state
    ex.result = ex.recorder.result = ExtractResult(day=day)
    ex.assembler.active = set()
    ex.run_groups([by_submitter[sub] for sub in submitters])
    return ex.result, ex.assembler.active


_WORKER: dict[tuple[str, dt.date, dt.datetime], tuple[Extractor, dict[str, Group]]] = {}


def extract(
    sessions: sessionmaker[Session],
    settings: Settings,
    day: dt.date | None = None,
    *,
    now: dt.datetime | None = None,
    checker: Checker | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> ExtractResult:
    """Extract `day` (default yesterday in the configured zone); safe to re-run.

    `workers` (default: the [extract] workers setting) > 1 spreads the
    submitters over that many processes; a custom `checker` runs in-process.
    """
    now = now or utcnow()
    day = day or default_day(settings, now)
    if day >= now.astimezone(settings.extract.zone()).date() + dt.timedelta(days=1):
        raise SettingsError(f"cannot extract {day}: it has not begun")
    workers = settings.extract.workers if workers is None else workers
    ex = Extractor(sessions, settings, day, now=now, checker=checker, progress=progress)
    return ex.run(1 if checker is not None else workers)
