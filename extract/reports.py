"""Submission status, monthly recap and held-back records, as the KY guide shows them.

Queries return plain rows (tuples of strings and numbers) with the guide's
column names; rendering (a rich table, or CSV) is separate, so one query
feeds every format. Dates are shown in the configured time zone.

Status shows two verdicts side by side and says whose each is. "Checked
Here" is ours: the shared validator applies the collector's rules when the file
is written ("Records" and "Valid Records" are what `cashcapture validate` counts
in the file: a zero report is one record, a held-back record is in none and is
listed by `rejects`; "File Failed" is never sent). "State" is the collector's, "unknown"
until an operator records it (`collector record` / `collector import`).
The recap counts what the state counted when it is known, says so in
"Counted By", and leaves ProcessDate empty until the state's date is recorded.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, defer

from cashcapture.core.pmp.records import PAY_OTHER
from cashcapture.core.store.classify import DirectoryFor, unclassified_count, unknown_ndcs
from cashcapture.core.store.models import (
    Claim,
    Fill,
    Pharmacy,
    RecordReject,
    StateFileCount,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)
from extract.settings import Settings
from extract.verdicts import COUNT_COLUMNS, DELIVERED, FAILED, describe

STATUS_COLUMNS = (
    "Submitted Date",
    "Checked Here On",
    "File Name",
    "File Start Date",
    "File End Date",
    "Records",
    "Valid Records",
    "Checked Here",
    "Delivery",
    "State",
    "State Recorded On",
    "PMP",
)
RECAP_COLUMNS = (
    "DEANumber",
    "ProcessDate",
    "SubmissionDate",
    "RecordCount",
    "MinFillDate",
    "MaxFillDate",
    "ProcessFileName",
    "Counted By",
)
LATE_COLUMNS = ("Date Filled", "Deadline", "Fills Not Delivered")
REJECT_COLUMNS = (
    "Facility ID",
    "Refill Code",
    "Rx Number",
    "Date Filled",
    "NDC Number",
    "Reject Reason",
    "Since",
)


@dataclass(frozen=True)
class Report:
    title: str
    columns: Sequence[str]
    rows: list[tuple]


def _day(value: dt.datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).date().isoformat()


def _date(value: dt.date | None) -> str:
    return "" if value is None else value.isoformat()


def _bounds(first: dt.date, last: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[first 00:00, last+1 00:00) in the zone, as UTC instants."""
    start = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return start, end


def status(session: Session, first: dt.date, last: dt.date, zone: ZoneInfo) -> Report:
    """Files written from `first` to `last` (inclusive, local dates), oldest first."""
    start, end = _bounds(first, last, zone)
    stmt = (
        select(Submission)
        .options(defer(Submission.content))
        .where(Submission.created_at >= start, Submission.created_at < end)
        .order_by(Submission.created_at, Submission.id)
    )
    subs = list(session.scalars(stmt))
    counts = _state_counts(session, [sub.id for sub in subs if sub.state_verdict])
    rows = [
        (
            _day(sub.uploaded_at, zone),
            _day(sub.processed_at, zone),
            sub.file_name,
            _date(sub.fill_date_min),
            _date(sub.fill_date_max),
            sub.record_count,
            sub.valid_record_count,
            sub.collector_status or "",
            sub.state,
            describe(sub, counts.get(sub.id)),
            _day(sub.state_recorded_at, zone),
            sub.pmp_state or "",
        )
        for sub in subs
    ]
    return Report(f"Submission status {first} to {last}", STATUS_COLUMNS, rows)


# A fill owes the state a record until one is on the server; a reversal of a fill
# never reported owes nothing.
_OWED = and_(
    Fill.needs_report.is_(True),
    ~and_(Fill.state == "voided", Fill.reported_status.is_(None)),
)


def late(session: Session, deadline: Callable[[dt.date], dt.date], today: dt.date) -> Report:
    """Fills past their reporting deadline and not yet on the collector's server, by
    date filled: what still owes the state a record (a reversal never reported owes
    nothing). `deadline` is the profile's (business days, the state's holidays)."""
    stmt = (
        select(Fill.date_of_service, func.count())
        .where(_OWED)
        .group_by(Fill.date_of_service)
        .order_by(Fill.date_of_service)
    )
    rows = []
    for filled, count in session.execute(stmt):
        due = deadline(filled)
        if due < today:
            rows.append((filled.isoformat(), due.isoformat(), count))
    return Report(f"Fills past their reporting deadline on {today}", LATE_COLUMNS, rows)


def late_everywhere(session: Session, settings: Settings, today: dt.date) -> Report:
    """Late fills for every state this switch reports to, each by its own profile's
    deadline: the home queue, and what each other state is owed by mail order."""
    from extract.selection import mail_order_owed

    home = settings.extract.report_state
    rows = [(*row, home) for row in late(session, settings.extract.deadline, today).rows]
    for state in settings.state_names()[1:]:
        deadline = settings.for_state(state).extract.deadline
        for filled, count in mail_order_owed(session, state):
            due = deadline(filled)
            if due < today:
                rows.append((filled.isoformat(), due.isoformat(), count, state))
    rows.sort()
    return Report(f"Fills past their reporting deadline on {today}", (*LATE_COLUMNS, "PMP"), rows)


def late_count(report: Report) -> int:
    return sum(row[2] for row in report.rows)


def late_line(report: Report) -> str:
    """One line for an operator (stderr of run-daily): how many, and since when."""
    n = late_count(report)
    oldest = report.rows[0] if report.rows else None
    since = f"; oldest filled {oldest[0]}, due {oldest[1]}" if oldest else ""
    return f"{n} fill{'s' if n != 1 else ''} past the reporting deadline not yet delivered{since}"


@dataclass(frozen=True)
class UnknownDrugs:
    """Fills waiting for a newer drug directory, and the distinct NDCs they carry."""

    fills: int
    ndcs: int

    def line(self) -> str:
        return (
            f"{self.fills} fill{'s' if self.fills != 1 else ''} captured for NDCs not in the "
            f"drug directory wait to be classified, {self.ndcs} NDC"
            f"{'s' if self.ndcs != 1 else ''} still unknown "
            "(cashcapture drugs unknown; drugs import of newer FDA files)"
        )


def unknown_drugs(session: Session, directory_for: DirectoryFor) -> UnknownDrugs:
    """What waits for classification, by the directory `directory_for` gives a state."""
    fills = unclassified_count(session)
    return UnknownDrugs(fills, len(unknown_ndcs(session, directory_for)) if fills else 0)


def write_metrics(path: str, late_fills: int, queued: int, waiting: UnknownDrugs) -> None:
    """Gauges for Prometheus's node_exporter textfile collector (batch jobs have no
    endpoint to scrape): written to a temp file and renamed, as the library does."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    Gauge(
        "cashcapture_fills_late",
        "Fills past their reporting deadline not yet delivered to the state",
        registry=registry,
    ).set(late_fills)
    Gauge("cashcapture_fills_queued", "Fills waiting for a report", registry=registry).set(queued)
    Gauge(
        "cashcapture_ndcs_unknown",
        "NDCs of captured fills that the drug directory does not hold",
        registry=registry,
    ).set(waiting.ndcs)
    Gauge(
        "cashcapture_fills_unclassified",
        "Fills captured for an NDC not in the drug directory, not reported until classified",
        registry=registry,
    ).set(waiting.fills)
    Gauge(
        "cashcapture_extract_last_run_timestamp_seconds",
        "When run-daily last finished",
        registry=registry,
    ).set_to_current_time()
    write_to_textfile(path, registry)


def queued(session: Session) -> int:
    """Fills that still owe the state a record, whatever their deadline."""
    stmt = select(func.count()).select_from(Fill).where(_OWED)
    return int(session.scalar(stmt) or 0)


def _state_counts(session: Session, ids: list[int]) -> dict[int, dict[str, int]]:
    """Per submission, the state's counts summed over its pharmacies (only those reported)."""
    if not ids:
        return {}
    cols = [getattr(StateFileCount, name) for name in COUNT_COLUMNS]
    stmt = (
        select(StateFileCount.submission_id, *(func.sum(c) for c in cols))
        .where(StateFileCount.submission_id.in_(ids))
        .group_by(StateFileCount.submission_id)
    )
    return {
        sid: dict(zip(COUNT_COLUMNS, (int(v) for v in values), strict=True))
        for sid, *values in session.execute(stmt)
    }


UNCLASSIFIED_COLUMNS = ("BIN", "PCN", "Fills", "First Fill", "Last Fill")


def unclassified_payers(session: Session, first: dt.date, last: dt.date) -> Report:
    """Insured fills from `first` to `last` reported as DSP16 99 (other), by BIN/PCN.

    A payer route without a `payment_type` in the config gets 99, never a guessed
    04; this lists those routes so the operator can name their class.
    """
    stmt = (
        select(
            Claim.bin,
            Claim.pcn,
            func.count(Fill.id),
            func.min(Fill.date_of_service),
            func.max(Fill.date_of_service),
        )
        .join(Claim, Claim.id == Fill.created_by_claim_id)
        .where(
            Fill.route == "insured",
            Fill.payment_type == PAY_OTHER,
            Fill.date_of_service >= first,
            Fill.date_of_service <= last,
        )
        .group_by(Claim.bin, Claim.pcn)
        .order_by(Claim.bin, Claim.pcn)
    )
    rows = [(b, p or "", n, _date(lo), _date(hi)) for b, p, n, lo, hi in session.execute(stmt)]
    return Report(
        "Insured fills reported as payment type 99 (other): give these payer routes a payment_type",
        UNCLASSIFIED_COLUMNS,
        rows,
    )


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """'YYYY-MM' -> first and last day; ValueError with a clear message otherwise."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month must be YYYY-MM, got {month!r}") from None
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, nxt - dt.timedelta(days=1)


def recap(session: Session, month: str, zone: ZoneInfo) -> Report:
    """Per pharmacy, each file delivered in the month with that pharmacy's count and dates."""
    first, last = month_bounds(month)
    start, end = _bounds(first, last, zone)
    in_month = and_(
        Submission.state.in_(DELIVERED),
        Submission.state_verdict.is_distinct_from(FAILED),
        Submission.uploaded_at >= start,
        Submission.uploaded_at < end,
    )
    per_pharmacy = (
        select(
            SubmissionRecord.submission_id.label("sid"),
            Fill.pharmacy_id.label("pid"),
            func.count().label("n"),
            func.min(Fill.date_of_service).label("lo"),
            func.max(Fill.date_of_service).label("hi"),
        )
        .join(Fill, Fill.id == SubmissionRecord.fill_id)
        .where(SubmissionRecord.submission_id.in_(select(Submission.id).where(in_month)))
        .group_by(SubmissionRecord.submission_id, Fill.pharmacy_id)
        .subquery()
    )
    sp = submission_pharmacies
    stmt = (
        select(
            Pharmacy.dea,
            Submission.state_recorded_at,
            Submission.uploaded_at,
            per_pharmacy.c.n,
            per_pharmacy.c.lo,
            per_pharmacy.c.hi,
            Submission.fill_date_min,
            Submission.fill_date_max,
            Submission.file_name,
            StateFileCount.total,
        )
        .join(sp, sp.c.submission_id == Submission.id)
        .join(Pharmacy, Pharmacy.id == sp.c.pharmacy_id)
        .outerjoin(
            per_pharmacy,
            and_(per_pharmacy.c.sid == Submission.id, per_pharmacy.c.pid == Pharmacy.id),
        )
        .outerjoin(
            StateFileCount,
            and_(
                StateFileCount.submission_id == Submission.id,
                StateFileCount.pharmacy_id == Pharmacy.id,
            ),
        )
        .where(in_month)
        .order_by(Pharmacy.dea, Submission.uploaded_at, Submission.id)
    )
    rows = [
        (
            dea,
            _day(state_at, zone),  # the state's date only: ours is not its processing
            _day(uploaded, zone),
            n or 0 if state_total is None else state_total,
            _date(lo or file_lo),  # a zero report: the period it covers
            _date(hi or file_hi),
            name,
            "checked here" if state_total is None else "state",
        )
        for dea, state_at, uploaded, n, lo, hi, file_lo, file_hi, name, state_total in (
            session.execute(stmt)
        )
    ]
    return Report(f"KASPER submission recap {month}", RECAP_COLUMNS, rows)


def rejects(
    session: Session,
    zone: ZoneInfo,
    include_resolved: bool = False,
    *,
    pharmacy: str | None = None,
    day: dt.date | None = None,
) -> Report:
    """Records held back, in the guide's reject table layout, plus since when.

    `pharmacy` (a DEA) and `day` (held back that local day) make the daily list
    an operator sends to one pharmacy: fills the counter paid that the state's
    rules keep out of the file until the pharmacy corrects the claim.
    """
    stmt = (
        select(RecordReject, Fill, Pharmacy.dea)
        .join(Fill, Fill.id == RecordReject.fill_id)
        .join(Pharmacy, Pharmacy.id == Fill.pharmacy_id)
        .order_by(Pharmacy.dea, Fill.date_of_service, Fill.rx_number, RecordReject.id)
    )
    if not include_resolved:
        stmt = stmt.where(RecordReject.resolved_at.is_(None))
    if pharmacy is not None:
        stmt = stmt.where(Pharmacy.dea == pharmacy.strip().upper())
    if day is not None:
        start, end = _bounds(day, day, zone)
        stmt = stmt.where(RecordReject.created_at >= start, RecordReject.created_at < end)
    rows = [
        (
            dea,
            str(fill.fill_number),
            fill.rx_number,
            fill.date_of_service.strftime("%Y%m%d"),
            fill.ndc,
            rej.message,
            _day(rej.created_at, zone) + (" (resolved)" if rej.resolved_at else ""),
        )
        for rej, fill, dea in session.execute(stmt)
    ]
    return Report("Records held back", REJECT_COLUMNS, rows)


# --- rendering ------------------------------------------------------------------------


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(report.columns)
    out.writerows(report.rows)
    return buf.getvalue()


def render(report: Report, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or logged: don't fold file names at 80 columns
            console = Console(width=240)
    if not report.rows:
        console.print(f"{report.title}: nothing found")
        return
    table = Table(title=report.title)
    for name in report.columns:
        numeric = name in ("Records", "Valid Records", "RecordCount")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in report.rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


@contextmanager
def progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields update(done, total)."""
    if not enabled:
        yield lambda done, total: None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
