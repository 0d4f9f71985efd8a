"""Recording built files: submissions, their records, rejects and drops, in batches.

A batch of files is recorded in one transaction. The file's bytes go into the
database with its Submission row, so a file and its 'written' state become
durable together: a crash at any point leaves either nothing (the fills stay
queued) or complete written files. The outbox folder gets a copy of each file
for people to read, after the commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session, sessionmaker

from cashcapture.core.private import write_private
from cashcapture.core.store.models import (
    Fill,
    RecordReject,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)
from cashcapture.core.store.sql import bulk_insert, table_of
from extract.assembly import STATUS_CODES, Built, Pending
from extract.submit import writing

ACCEPT, FILE_FAILED = "Accept", "File Failed"
BATCH_BYTES = 32 * 1024 * 1024  # file contents held before one recording transaction
BATCH_FILES = 500
_RECORD_COLUMNS = ("submission_id", "fill_id", "reporting_status", "fill_version")


@dataclass
class FileOutcome:
    name: str
    submitter_id: str
    pharmacies: int
    records: int  # records in the file (valid records)
    held_back: int
    status: str  # Accept / File Failed
    zero_report: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class ExtractResult:
    day: dt.date
    files: list[FileOutcome] = field(default_factory=list)
    dropped: int = 0  # reversed before they were ever reported
    rejected: int = 0  # records held back
    problems: list[str] = field(default_factory=list)  # registrations that block a file

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == FILE_FAILED]


class Recorder:
    """Built files in, recorded in batches; outcomes added to `result`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        day: dt.date,
        now: dt.datetime,
        outbox: Path | None,
        result: ExtractResult,
        state: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.day = day
        self.now = now
        self.outbox = outbox
        self.result = result
        self.state = state  # the PMP the run's files go to (Submission.pmp_state)
        self._batch: list[Built] = []
        self._batch_bytes = 0

    def add(self, built: Built) -> None:
        self._batch.append(built)
        self._batch_bytes += len(built.content or b"")
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_FILES:
            self.flush()

    def flush(self) -> None:
        """Record the batch: files, their records, rejects and drops, in one transaction."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        outcomes: list[tuple[Built, FileOutcome]] = []
        with writing(self.sessions) as s:
            for b in batch:
                submission_id = None
                if b.content is not None:
                    submission_id, outcome = self._record_file(s, b)
                    outcomes.append((b, outcome))
                self._drop(s, b.pending.dropped)
                self._save_rejects(s, submission_id, b)
        for b, outcome in outcomes:
            if self.outbox is not None and b.content is not None:
                write_private(self.outbox / b.name, b.content)  # made when first needed
            self.result.files.append(outcome)
        for b in batch:
            self.result.dropped += len(b.pending.dropped)
            self.result.rejected += len(b.pending.rejects)

    def _record_file(self, s: Session, b: Built) -> tuple[int, FileOutcome]:
        pending = b.pending
        status = FILE_FAILED if b.errors else ACCEPT
        lo, hi = b.zero or pending.fill_range()
        values = dict(
            file_name=b.name,
            pmp_state=self.state,
            submitter_id=b.group.submitter_id,
            extract_date=self.day,
            zero_report=b.zero is not None,
            fill_date_min=lo,
            fill_date_max=hi,
            # counted as `validate` counts the file: the records in it (a zero report's
            # one), valid unless the file failed; held-back records are in `rejects`
            record_count=len(pending.fill_ids) or int(b.zero is not None),
            valid_record_count=0 if b.errors else len(pending.fill_ids) or int(b.zero is not None),
            state="failed" if b.errors else "written",
            created_at=self.now,
            processed_at=self.now,
            collector_status=status,
            collector_answer="\n".join(b.errors) or None,
            last_error=b.errors[0] if b.errors else None,
            content=b.content,
            path=str(self.outbox / b.name) if self.outbox is not None else None,
            attempts=0,
        )
        sub_id = s.execute(insert(Submission).values(values).returning(Submission.id)).scalar_one()
        pharmacies = {b.pharmacy_id} if b.pharmacy_id else set(pending.pharmacy_ids)
        if pharmacies:
            s.execute(
                insert(submission_pharmacies),
                [{"submission_id": sub_id, "pharmacy_id": p} for p in sorted(pharmacies)],
            )
        if not b.errors:
            self._insert_records(s, sub_id, pending)
        outcome = FileOutcome(
            name=b.name,
            submitter_id=b.group.submitter_id,
            pharmacies=len(pharmacies),
            records=len(pending.fill_ids),
            held_back=len(pending.rejects),
            status=status,
            zero_report=b.zero is not None,
            errors=b.errors,
        )
        return sub_id, outcome

    @staticmethod
    def _insert_records(s: Session, submission_id: int, pending: Pending) -> None:
        rows = (
            (submission_id, fid, STATUS_CODES[status], version)
            for fid, version, status in zip(
                pending.fill_ids, pending.versions, pending.statuses, strict=True
            )
        )
        # one bulk insert (COPY on PostgreSQL): a national day is a million rows
        bulk_insert(s.connection(), table_of(SubmissionRecord), _RECORD_COLUMNS, rows)

    @staticmethod
    def _drop(s: Session, dropped: list[tuple[int, int]]) -> None:
        """Reversed before ever reported: nothing for the state, off the queue."""
        for fill_id, version in dropped:
            s.execute(
                update(Fill)
                .where(Fill.id == fill_id, Fill.version == version)
                .values(needs_report=False)
                .execution_options(synchronize_session=False)
            )

    def _save_rejects(self, s: Session, submission_id: int | None, b: Built) -> None:
        rows: list[dict[str, Any]] = []
        for fill_id, problems in b.pending.rejects.items():
            known = b.open_rejects.get(fill_id, set())
            for p in problems:
                if (p.segment, p.element_id, p.reject_reason) in known:
                    continue  # still the same problem, already listed
                known.add((p.segment, p.element_id, p.reject_reason))
                rows.append(
                    {
                        "submission_id": submission_id,
                        "fill_id": fill_id,
                        "segment": p.segment,
                        "element": p.element_id,
                        "code": p.severity,
                        "message": p.reject_reason,
                        "created_at": self.now,
                    }
                )
        if rows:
            s.execute(insert(table_of(RecordReject)), rows)
        if b.open_rejects and b.content is not None and not b.errors:
            went = set(b.pending.fill_ids)
            passed = [fid for fid in b.open_rejects if fid in went]
            if passed:
                s.execute(
                    update(RecordReject)
                    .where(RecordReject.fill_id.in_(passed), RecordReject.resolved_at.is_(None))
                    .values(resolved_at=self.now)
                )
