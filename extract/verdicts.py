"""The state's verdict on files we delivered, as an operator records it.

Two verdicts per submission, never mixed: *checked here* (our validator, when
the file was written: `Submission.collector_status`) and *state* (what the
collector reported: `Submission.state_verdict`, NULL until recorded). Only an
operator's `collector record` or `collector import` sets the second.

A file the state failed goes back on the queue: each fill it carried returns
to what the state held before (nothing after a 00; the earlier record after a
01 or 02) and is sent again by the next run. A record the state rejected becomes
a `RecordReject` (code STATE_REJECT) and waits, like ours, for a corrected claim.

Status report layout (one CSV, one row per file and pharmacy, the counts of the
PMP Clearinghouse "File Status" page): File Name, DEA, Total, Duplicate,
In Process, Errors, Warnings, Imported, Voided, Voids Not Found. A file with
any record in process is "in process"; otherwise "accepted" with its counts.
Rejected-record layout: Rx Number, Fill Date (YYYYMMDD or YYYY-MM-DD), Reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cashcapture.core.csvfile import rows
from cashcapture.core.ids import ascii_digits
from cashcapture.core.store.models import (
    NEW_RECORD,
    REVISED_RECORD,
    STATE_REJECT,
    STATE_VERDICTS,
    Fill,
    Pharmacy,
    RecordReject,
    StateFileCount,
    Submission,
    SubmissionRecord,
)
from cashcapture.core.store.types import utcnow
from extract.packaging import plain_name

ACCEPTED, FAILED, IN_PROCESS = STATE_VERDICTS
DELIVERED = ("uploaded", "processed")
COUNT_COLUMNS = (
    "total",
    "duplicate",
    "in_process",
    "errors",
    "warnings",
    "imported",
    "voided",
    "voids_not_found",
)
STATUS_LAYOUT = ("file_name", "dea", *COUNT_COLUMNS)
REJECT_LAYOUT = ("rx_number", "fill_date", "reason")


class VerdictError(ValueError):
    """A verdict that cannot be recorded (unknown file, not delivered, bad report)."""


@dataclass(frozen=True)
class StateReject:
    rx_number: str
    fill_date: dt.date
    reason: str


@dataclass
class Recorded:
    file_name: str
    verdict: str
    changed: bool = True
    requeued: int = 0
    rejects: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _date(value: str) -> dt.date:
    text = value.strip().replace("-", "")
    return dt.datetime.strptime(text, "%Y%m%d").date()


def read_rejects(text: str) -> list[StateReject]:
    """Rejected records of a collector's answer (REJECT_LAYOUT); VerdictError names the row."""
    out = []
    try:
        for n, row in rows(text, REJECT_LAYOUT, ("rx_number", "fill_date")):
            rx = (row.get("rx_number") or "").strip()
            if not rx:
                raise VerdictError(f"row {n}: rx_number is empty")
            try:
                day = _date(row.get("fill_date") or "")
            except ValueError:
                raise VerdictError(f"row {n}: fill_date is not YYYYMMDD") from None
            reason = (row.get("reason") or "").strip() or "rejected by the state"
            out.append(StateReject(rx, day, reason))
    except ValueError as exc:
        raise VerdictError(str(exc)) from None
    return out


@dataclass(frozen=True)
class StatusLine:
    file_name: str
    dea: str
    counts: dict[str, int]


def read_status(text: str) -> list[StatusLine]:
    """Lines of a file status report (STATUS_LAYOUT, counts as whole numbers)."""
    out = []
    try:
        for n, row in rows(text, STATUS_LAYOUT, STATUS_LAYOUT):
            counts = {}
            for name in COUNT_COLUMNS:
                raw = (row.get(name) or "").strip()
                if not ascii_digits(raw):
                    raise VerdictError(f"row {n}: {name} {raw!r} is not a count")
                counts[name] = int(raw)
            name = (row.get("file_name") or "").strip()
            dea = (row.get("dea") or "").strip().upper()
            if not name or not dea:
                raise VerdictError(f"row {n}: file_name and dea are required")
            out.append(StatusLine(name, dea, counts))
    except ValueError as exc:
        raise VerdictError(str(exc)) from None
    if not out:
        raise VerdictError("no rows: nothing to import")
    return out


def _delivered(session: Session, file_name: str) -> Submission:
    """The file the state names, by the name written or the name delivered (NAME.zip,
    NAME.dat.pgp: the state may report either)."""
    sub = session.scalar(select(Submission).where(Submission.file_name == plain_name(file_name)))
    if sub is None:
        raise VerdictError(f"{file_name}: no such file was written here")
    if sub.state not in DELIVERED:
        raise VerdictError(f"{file_name}: not delivered ({sub.state}); the state cannot have it")
    return sub


def _back_to_state_copy(
    session: Session, sub: Submission, fill_ids: list[int] | None, requeue: bool
) -> int:
    """Fills of `sub` return to what the state held before it; `requeue`: send them again."""
    stmt = (
        select(Fill, SubmissionRecord.reporting_status)
        .join(SubmissionRecord, SubmissionRecord.fill_id == Fill.id)
        .where(SubmissionRecord.submission_id == sub.id, Fill.last_submission_id == sub.id)
    )
    if fill_ids is not None:
        stmt = stmt.where(Fill.id.in_(fill_ids))
    n = 0
    for fill, sent in session.execute(stmt):
        fill.reported_status = None if sent == NEW_RECORD else REVISED_RECORD
        fill.needs_report = fill.needs_report or requeue
        n += 1
    return n


def _verdict(sub: Submission, verdict: str, now: dt.datetime, note: str | None) -> bool:
    if sub.state_verdict == FAILED and verdict != FAILED:
        raise VerdictError(
            f"{sub.file_name}: already recorded as failed by the state and queued again"
        )
    changed = sub.state_verdict != verdict
    sub.state_verdict, sub.state_recorded_at = verdict, now
    if note:
        sub.state_note = note
    return changed


def record(
    session: Session,
    file_name: str,
    verdict: str,
    rejects: list[StateReject] = (),  # type: ignore[assignment]
    now: dt.datetime | None = None,
) -> Recorded:
    """Record the state's verdict on one delivered file (no commit; all or nothing)."""
    if verdict not in (ACCEPTED, FAILED):
        raise VerdictError(f"verdict must be accepted or failed, not {verdict!r}")
    if verdict == FAILED and rejects:
        raise VerdictError("a failed file has no record rejects: the whole file goes again")
    now = now or utcnow()
    sub = _delivered(session, file_name)
    already_failed = sub.state_verdict == FAILED
    out = Recorded(file_name, verdict, _verdict(sub, verdict, now, None))
    if verdict == FAILED and not already_failed:
        out.requeued = _back_to_state_copy(session, sub, None, requeue=True)
    fills = _fills_by_key(session, sub.id)
    open_ = set(
        session.scalars(
            select(RecordReject.fill_id).where(
                RecordReject.submission_id == sub.id,
                RecordReject.code == STATE_REJECT,
            )
        )
    )
    rejected: list[int] = []
    for rej in rejects:
        fill_id = fills.get((rej.rx_number, rej.fill_date))
        if fill_id is None:
            raise VerdictError(
                f"{file_name}: no record with Rx {rej.rx_number} filled {rej.fill_date} in it"
            )
        if fill_id in open_:
            continue  # recorded before
        open_.add(fill_id)
        rejected.append(fill_id)
        session.add(
            RecordReject(
                submission_id=sub.id,
                fill_id=fill_id,
                code=STATE_REJECT,
                message=f"state: {rej.reason}",
                created_at=now,
            )
        )
    if rejected:
        _back_to_state_copy(session, sub, rejected, requeue=False)
        out.changed = True
    out.rejects = len(rejected)
    session.flush()
    return out


def _fills_by_key(session: Session, submission_id: int) -> dict[tuple[str, dt.date], int]:
    stmt = (
        select(Fill.rx_number, Fill.date_of_service, Fill.id)
        .join(SubmissionRecord, SubmissionRecord.fill_id == Fill.id)
        .where(SubmissionRecord.submission_id == submission_id)
    )
    return {(rx, day): fid for rx, day, fid in session.execute(stmt)}


def import_status(
    session: Session, lines: list[StatusLine], now: dt.datetime | None = None
) -> list[Recorded]:
    """Record a status report's counts and the verdict they imply, per file (no commit)."""
    now = now or utcnow()
    by_file: dict[str, list[StatusLine]] = {}
    for line in lines:
        by_file.setdefault(line.file_name, []).append(line)
    out = []
    for name, file_lines in by_file.items():
        sub = _delivered(session, name)
        carried = {
            p.dea: p.id
            for p in session.scalars(
                select(Pharmacy).where(Pharmacy.id.in_([ph.id for ph in sub.pharmacies]))
            )
        }
        totals = dict.fromkeys(COUNT_COLUMNS, 0)
        for line in file_lines:
            pid = carried.get(line.dea)
            if pid is None:
                raise VerdictError(f"{name}: pharmacy {line.dea} is not in that file")
            row = session.scalar(
                select(StateFileCount).where(
                    StateFileCount.submission_id == sub.id, StateFileCount.pharmacy_id == pid
                )
            )
            if row is None:
                row = StateFileCount(submission_id=sub.id, pharmacy_id=pid)
                session.add(row)
            for key, value in line.counts.items():
                setattr(row, key, value)
                totals[key] += value
            row.recorded_at = now
        verdict = IN_PROCESS if totals["in_process"] else ACCEPTED
        if sub.state_verdict == FAILED:
            raise VerdictError(f"{name}: already recorded as failed by the state and queued again")
        done = Recorded(name, verdict, _verdict(sub, verdict, now, None), counts=totals)
        out.append(done)
    session.flush()
    return out


def describe(sub: Submission, counts: dict[str, int] | None) -> str:
    """The 'State' column: the recorded verdict and counts, or 'unknown'."""
    if sub.state_verdict is None:
        return "unknown"
    if not counts:
        return sub.state_verdict
    return (
        f"{sub.state_verdict}: {counts['imported']} of {counts['total']} imported, "
        f"{counts['errors']} errors"
    )
