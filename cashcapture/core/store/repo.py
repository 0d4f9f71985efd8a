"""Repository functions: the few reads and writes the adapter and the extract share.

Pure SQLAlchemy on a caller's Session; none of them commits. The adapter runs
one capture (claim + fill changes) as one unit of work, normally through the
`GroupCommitter`, so a capture commits whole or not at all.

One write path for captures, the batch form the group committer runs:
`find_fills` looks a whole batch's keys up in one Core query, each capture
notes its rows in a `Writes`, and `write_batch` inserts a batch's claims and
fills with one executemany per table. The rules a change applies
(`new_fill_values`, `revision_values`, `void_values`) are plain functions so
the tests' single-change ORM helpers (tests/_store_helpers.py) apply the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    case,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cashcapture.core.states import FillState, SubmissionState, fill_move
from cashcapture.core.store.models import (
    NEW_RECORD,
    REVISED_RECORD,
    Claim,
    Fill,
    FillIngredient,
    FillReport,
    Pharmacy,
    PharmacyRegistration,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)
from cashcapture.core.store.sql import (
    BindProcessor,
    bind_processor,
    bulk_insert,
    dbapi_connection,
    table_of,
)
from cashcapture.core.store.types import utcnow

#: Names of the unique fill key as the two databases report a violation of it.
_FILL_KEY_MARKERS = ("uq_fills_key", "fills.pharmacy_id, fills.rx_number")
IN_FLIGHT = (SubmissionState.WRITTEN, SubmissionState.UPLOADING)
#: Session.info flag: a duplicate will fail the commit and the batch is re-run checked.
OPTIMISTIC = "cashcapture.optimistic"


class DuplicateFill(Exception):
    """A fill with this pharmacy + Rx + fill number + date of service exists."""

    def __init__(self, key: tuple, existing_id: int | None = None) -> None:
        super().__init__(f"duplicate fill: pharmacy {key[0]} rx {key[1]} fill {key[2]} {key[3]}")
        self.key = key
        self.existing_id = existing_id


def is_duplicate_fill_error(exc: BaseException) -> bool:
    """True when ``exc`` is the database refusing a second fill with the same key."""
    return isinstance(exc, IntegrityError) and any(m in str(exc.orig) for m in _FILL_KEY_MARKERS)


def claim_hash(content: bytes) -> str:
    """Content hash used to recognise an identical retransmission."""
    return hashlib.sha256(content).hexdigest()


# --- claims -------------------------------------------------------------------


def find_claim_by_hash(session: Session, content_hash: str) -> Claim | None:
    """The latest answered claim with this content hash (a retransmission's original)."""
    stmt = (
        select(Claim)
        .where(Claim.content_hash == content_hash, Claim.response.is_not(None))
        .order_by(Claim.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def claim_answered_with(session: Session, request: bytes, response: bytes) -> bool:
    """Whether a claim of exactly these request and response bytes is stored."""
    stmt = select(Claim.id).where(
        Claim.content_hash == claim_hash(request),
        Claim.request == request,
        Claim.response == response,
    )
    return session.scalars(stmt.limit(1)).first() is not None


# --- pharmacies ---------------------------------------------------------------


def find_pharmacy(session: Session, provider_id: str) -> Pharmacy | None:
    """The pharmacy whose NCPDP ID, NPI or DEA is ``provider_id`` (the claim's 201-B1)."""
    provider_id = provider_id.strip()
    stmt = select(Pharmacy).where(
        or_(
            Pharmacy.ncpdp_id == provider_id,
            Pharmacy.npi == provider_id,
            Pharmacy.dea == provider_id,
        )
    )
    return session.scalars(stmt).first()


def registered_states(session: Session, pharmacy_id: int) -> frozenset[str]:
    """The other states' PMPs a pharmacy is registered with (mail order to their residents)."""
    stmt = select(PharmacyRegistration.state).where(PharmacyRegistration.pharmacy_id == pharmacy_id)
    return frozenset(session.scalars(stmt))


# --- the rules a change applies -------------------------------------------------

_KEY_FIELDS = ("pharmacy_id", "rx_number", "fill_number", "date_of_service")
_FILL_COLUMNS = frozenset(c.key for c in table_of(Fill).columns)


def new_fill_values(fields: Mapping[str, Any], ingredients: Sequence, now: dt.datetime) -> dict:
    """Columns a new fill gets besides its fields."""
    return {
        "state": "new",
        "version": 1,
        "needs_report": not fields.get("unclassified"),
        "created_at": now,
        "updated_at": now,
        "compound": bool(fields.get("compound")) or bool(ingredients),
    }


def revision_values(
    key: tuple,
    state: str,
    version: int | None,
    fields: Mapping[str, Any],
    ingredients: Sequence | None,
    now: dt.datetime,
) -> dict:
    """Columns a rebill or correction sets; refuses a key change or an unknown field."""
    for name, value in fields.items():
        if name in _KEY_FIELDS and value != key[_KEY_FIELDS.index(name)]:
            raise ValueError(f"revise_fill cannot change the fill key ({name})")
        if name not in _FILL_COLUMNS or name == "id":
            raise TypeError(f"unknown fill field {name!r}")
    out = {k: v for k, v in fields.items() if k not in _KEY_FIELDS}
    if ingredients is not None:
        out["compound"] = bool(ingredients)
    out.update(
        state=fill_move(state, FillState.REVISED),
        version=(version or 1) + 1,
        updated_at=now,
        needs_report=not out.get("unclassified"),  # an unknown NDC waits for its class
    )
    return out


def void_values(
    state: str, version: int | None, reported_status: str | None, now: dt.datetime
) -> dict:
    """Columns a void sets: queued for a 02 record only if the state holds the fill."""
    held = reported_status in (NEW_RECORD, REVISED_RECORD)
    return {
        "state": fill_move(state, FillState.VOIDED),
        "version": (version or 1) + 1,
        "updated_at": now,
        "needs_report": held,
    }


# --- the batch form (group commit's hot path) ------------------------------------

FillKey = tuple[int, str, int, dt.date]  # pharmacy id, Rx number, fill number, date of service


class StaleFill(Exception):
    """A fill changed between its look-up and its update (another writer got there first)."""


@dataclass(frozen=True, slots=True)
class FillRow:
    """A fill as a batch look-up sees it, with the claim that last changed it."""

    id: int
    key: FillKey
    state: str
    version: int
    reported_status: str | None
    last_request: bytes | None
    last_response: bytes | None


_LAST_CLAIM = "LEFT JOIN claims c ON c.id = coalesce(f.updated_by_claim_id, f.created_by_claim_id)"
# PostgreSQL: one statement text for any batch, the key columns as arrays, a
# LATERAL probe of the unique index per key (LIMIT 1 keeps the planner from
# flattening it into a join, which it may plan as a scan of a table it has no
# statistics for yet).
_FIND_FILLS_PG = (
    "SELECT k.i, f.id, f.state, f.version, f.reported_status, c.request, c.response "
    "FROM unnest(%(p)s::bigint[], %(r)s::text[], %(n)s::int[], %(d)s::date[]) "
    "WITH ORDINALITY AS k(p, r, n, d, i) "
    "JOIN LATERAL (SELECT id, state, version, reported_status, created_by_claim_id, "
    "updated_by_claim_id FROM fills WHERE pharmacy_id = k.p AND rx_number = k.r "
    "AND fill_number = k.n AND date_of_service = k.d LIMIT 1) f ON true " + _LAST_CLAIM
)


def _find_fills_sqlite(count: int) -> str:
    # SQLite: the keys as a VALUES table, joined to the unique index key by key
    rows = ", ".join(["(?, ?, ?, ?, ?)"] * count)
    return (
        "SELECT k.column1, f.id, f.state, f.version, f.reported_status, c.request, c.response "
        f"FROM (VALUES {rows}) k JOIN fills f ON f.pharmacy_id = k.column2 "
        "AND f.rx_number = k.column3 AND f.fill_number = k.column4 "
        "AND f.date_of_service = k.column5 " + _LAST_CLAIM
    )


def find_fills(conn: Connection, keys: Iterable[FillKey]) -> dict[FillKey, FillRow]:
    """The fills held for ``keys``, by key, in one query (absent keys are left out).

    Each key is one probe of the unique key's index, however many pharmacies,
    Rx numbers and dates the batch mixes, and whatever statistics the
    database has (a batch's keys as a table joined to ``fills``).
    """
    wanted = list(set(keys))
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        p, r, n, d = (list(col) for col in zip(*wanted, strict=True))
        # Planned afresh each time (prepare=False): psycopg would prepare it after
        # five runs, and a generic plan made while the table was small scans it.
        cursor = dbapi_connection(conn).cursor()
        try:
            cursor.execute(_FIND_FILLS_PG, {"p": p, "r": r, "n": n, "d": d}, prepare=False)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        base = 1  # WITH ORDINALITY counts from 1
    else:
        to_db = _DATE_BIND.get(conn.dialect.name) or _date_bind(conn)
        params = [v for i, k in enumerate(wanted) for v in (i, k[0], k[1], k[2], to_db(k[3]))]
        sql = _FIND_SQL.get(len(wanted)) or _FIND_SQL.setdefault(
            len(wanted), _find_fills_sqlite(len(wanted))
        )
        rows = conn.exec_driver_sql(sql, tuple(params))
        base = 0
    found: dict[FillKey, FillRow] = {}
    for i, fill_id, state, version, reported, request, response in rows:
        key = wanted[i - base]
        found[key] = FillRow(fill_id, key, state, version, reported, request, response)
    return found


_FIND_SQL: dict[int, str] = {}
_DATE_BIND: dict[str, Any] = {}


def _date_bind(conn: Connection) -> Any:
    """How the dialect stores a date (SQLAlchemy's own bind processor)."""
    proc = bind_processor(table_of(Fill).c.date_of_service.type, conn.dialect)
    return _DATE_BIND.setdefault(conn.dialect.name, proc or (lambda v: v))


class Ref:
    """The id a batch row gets when its batch is written (read it after the commit)."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: int | None = None


class Writes:
    """The rows one capture writes, kept until `write_batch` writes its whole batch.

    Nothing touches the database before `write_batch`, so a capture that fails
    half way leaves nothing behind: its `Writes` is simply dropped.
    """

    __slots__ = ("claims", "fills", "ingredients", "updates", "now")

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or utcnow()
        self.claims: list[tuple[Ref, dict]] = []
        self.fills: list[tuple[Ref, dict, Ref | None]] = []
        self.ingredients: list[tuple[Ref, list[Mapping[str, Any]], bool]] = []  # bool: replace
        self.updates: list[tuple[FillRow, dict, Ref | None]] = []

    def claim(
        self,
        *,
        request: bytes,
        transaction_code: str,
        bin: str,
        route: str,
        response: bytes,
        status: str,
        reject_codes: Iterable[str] = (),
        pcn: str | None = None,
        service_provider_id: str | None = None,
        pharmacy_id: int | None = None,
        content_hash: str | None = None,
        received_at: dt.datetime | None = None,
    ) -> Ref:
        """A claim as received, with the response sent for it."""
        ref = Ref()
        row = {
            "received_at": received_at or self.now,
            "answered_at": self.now,
            "transaction_code": transaction_code,
            "bin": bin,
            "pcn": pcn,
            "route": route,
            "service_provider_id": service_provider_id,
            "pharmacy_id": pharmacy_id,
            "status": status,
            "reject_codes": " ".join(reject_codes) or None,
            "content_hash": content_hash if content_hash is not None else claim_hash(request),
            "request": request,
            "response": response,
        }
        self.claims.append((ref, row))
        return ref

    def insert_fill(
        self,
        fields: Mapping[str, Any],
        *,
        claim: Ref | None = None,
        ingredients: Iterable[Mapping[str, Any]] = (),
    ) -> Ref:
        """A new fill; its key's uniqueness is the database's to enforce."""
        unknown = set(fields) - _FILL_COLUMNS
        if unknown or "id" in fields:
            raise TypeError(f"unknown fill fields {sorted(unknown or {'id'})}")
        ingredients = list(ingredients)
        ref = Ref()
        row = {**_FILL_DEFAULTS, **fields, **new_fill_values(fields, ingredients, self.now)}
        self.fills.append((ref, row, claim))
        if ingredients:
            self.ingredients.append((ref, ingredients, False))
        return ref

    def revise_fill(
        self,
        fill: FillRow,
        fields: Mapping[str, Any],
        *,
        claim: Ref | None = None,
        ingredients: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        """A rebill or correction of ``fill``; also revives a voided fill. Queued for report."""
        if ingredients is not None:
            ingredients = list(ingredients)
        values = revision_values(fill.key, fill.state, fill.version, fields, ingredients, self.now)
        self.updates.append((fill, values, claim))
        if ingredients is not None:
            ref = Ref()
            ref.id = fill.id
            self.ingredients.append((ref, ingredients, True))

    def void_fill(self, fill: FillRow, *, claim: Ref | None = None) -> None:
        """A void of ``fill`` (a B2); queued for a 02 record only if the state holds it."""
        values = void_values(fill.state, fill.version, fill.reported_status, self.now)
        self.updates.append((fill, values, claim))


def _column_defaults(table: Table) -> dict[str, Any]:
    # executemany needs every row to name the same columns: scalar defaults fill gaps
    return {
        c.key: getattr(c.default, "arg", None)
        if c.default is not None and c.default.is_scalar
        else None
        for c in table.columns
        if not c.primary_key
    }


_FILL_DEFAULTS = _column_defaults(table_of(Fill))
_INGREDIENT_DEFAULTS = _column_defaults(table_of(FillIngredient))
_INGREDIENT_DELETE = delete(FillIngredient).where(
    FillIngredient.fill_id.in_(bindparam("ids", expanding=True))
)


def write_batch(conn: Connection, batch: Sequence[Writes]) -> None:
    """Write every capture's rows: one executemany per table, then the updates.

    Ids are taken up front (`_take_ids`), so fills name their claims without a
    round trip per row. An update applies only to the fill version its capture
    saw (else `StaleFill`); a second fill with a key raises the database's
    IntegrityError. Either way the caller rolls back and retries capture by
    capture.
    """
    claims = [c for w in batch for c in w.claims]
    fills = [f for w in batch for f in w.fills]
    claim_ids, fill_ids = _take_ids(conn, len(claims), len(fills))
    if claims:
        for (ref, row), new_id in zip(claims, claim_ids, strict=True):
            ref.id = row["id"] = new_id
        insert_many(conn, table_of(Claim), [row for _, row in claims])
    if fills:
        for (ref, row, claim), new_id in zip(fills, fill_ids, strict=True):
            ref.id = row["id"] = new_id
            row["created_by_claim_id"] = claim.id if claim is not None else None
        insert_many(conn, table_of(Fill), [row for _, row, _ in fills])
    for w in batch:
        for fill, values, claim in w.updates:
            if claim is not None:
                values = dict(values, updated_by_claim_id=claim.id)
            stmt = update(Fill).where(Fill.id == fill.id, Fill.version == fill.version)
            if conn.execute(stmt.values(values)).rowcount != 1:
                raise StaleFill(f"fill {fill.id} changed since it was read")
    replaced = [ref.id for w in batch for ref, _, replace in w.ingredients if replace]
    if replaced:
        conn.execute(_INGREDIENT_DELETE, {"ids": replaced})
    rows = [
        {**_INGREDIENT_DEFAULTS, **item, "fill_id": ref.id}
        for w in batch
        for ref, items, _ in w.ingredients
        for item in items
    ]
    if rows:
        insert_many(conn, table_of(FillIngredient), rows)


_PLANS: dict[tuple[Any, ...], list[tuple[int, BindProcessor]]] = {}


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` (dicts naming the same columns) in one go, through `bulk_insert`.

    What `conn.execute(insert(table), rows)` does, without its per-row
    bookkeeping (a third of a capture's CPU): each value goes through the
    column type's own bind processor, once per distinct date, time or decimal
    of the batch, so the stored form is exactly SQLAlchemy's. A unique
    violation is raised as SQLAlchemy's IntegrityError.
    """
    if not rows:
        return
    dialect = conn.dialect
    columns = tuple(rows[0])
    plan_key = (dialect, table, columns)
    procs = _PLANS.get(plan_key)
    if procs is None:
        procs = _PLANS[plan_key] = [
            (i, p) for i, k in enumerate(columns) if (p := bind_processor(table.c[k].type, dialect))
        ]
    memo: dict[tuple[int, Any], Any] = {}
    params: list[list] = []
    for row in rows:
        values = [row[k] for k in columns]
        for i, proc in procs:
            value = values[i]
            if value is None:
                continue
            if isinstance(value, dt.date | Decimal):  # few distinct ones per batch
                got = memo.get((i, value), memo)
                if got is memo:
                    got = memo[(i, value)] = proc(value)
                values[i] = got
            else:
                values[i] = proc(value)
        params.append(values)
    bulk_insert(conn, table, columns, params)


def _take_ids(conn: Connection, claims: int, fills: int) -> tuple[Sequence[int], Sequence[int]]:
    """Fresh primary keys: ``claims`` for claims, ``fills`` for fills.

    PostgreSQL: from the columns' sequences (one round trip), so concurrent
    writers never share one. SQLite: past the current maxima, which holds
    because the writer's transaction began IMMEDIATE (no other writer until
    it commits); a writer that did not would fail on the primary key, never
    reuse a row.
    """
    if not claims and not fills:
        return (), ()
    if conn.dialect.name == "postgresql":
        cursor = dbapi_connection(conn).cursor()
        try:
            cursor.execute(_NEXT_IDS, {"c": claims, "f": fills})
            claim_ids, fill_ids = cursor.fetchone()
        finally:
            cursor.close()
        return claim_ids, fill_ids
    top_claim, top_fill = conn.exec_driver_sql(_TOP_IDS).one()
    return (
        range((top_claim or 0) + 1, (top_claim or 0) + 1 + claims),
        range((top_fill or 0) + 1, (top_fill or 0) + 1 + fills),
    )


_NEXT_IDS = (
    "SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('claims', 'id')) "
    "FROM generate_series(1, %(c)s)), "
    "ARRAY(SELECT nextval(pg_get_serial_sequence('fills', 'id')) FROM generate_series(1, %(f)s))"
)
_TOP_IDS = "SELECT (SELECT max(id) FROM claims), (SELECT max(id) FROM fills)"


# --- extract side -------------------------------------------------------------


def fills_to_report(
    session: Session,
    pharmacy_ids: Iterable[int],
    *,
    exclude_in_flight: bool = True,
    yield_per: int = 1000,
) -> Iterator[Fill]:
    """Stream the fills queued for a report (new, revised, void), in file order.

    Fills already carried by a file not yet delivered are left out, so a re-run
    of the extract does not put them in a second file.
    """
    stmt = select(Fill).where(Fill.needs_report.is_(True), Fill.pharmacy_id.in_(list(pharmacy_ids)))
    if exclude_in_flight:
        in_flight = (
            select(SubmissionRecord.id)
            .join(Submission)
            .where(SubmissionRecord.fill_id == Fill.id, Submission.state.in_(IN_FLIGHT))
        )
        stmt = stmt.where(~exists(in_flight))
    stmt = stmt.order_by(Fill.pharmacy_id, Fill.date_of_service, Fill.id)
    yield from session.scalars(stmt.execution_options(yield_per=yield_per))


def add_record(session: Session, submission: Submission, fill: Fill) -> SubmissionRecord:
    """Note that ``submission`` carries ``fill`` as its current reporting status."""
    status = fill.reporting_status
    if status is None:
        raise ValueError(f"fill {fill.id} has nothing to report")
    record = SubmissionRecord(
        submission=submission, fill_id=fill.id, reporting_status=status, fill_version=fill.version
    )
    session.add(record)
    return record


def mark_fills_reported(session: Session, submission_id: int, at: dt.datetime | None = None) -> int:
    """After the file is on the server: record what the state now holds. Returns the count.

    One UPDATE for the whole file. A fill changed while its file was in flight
    stays queued: revised, it needs a 01; voided after a 00 or 01 went, it
    needs the 02 (the state now holds the record, although nothing was held
    when the reversal arrived and its void dequeued it). Fills of this
    session are expired, so they read the new values.
    """
    # A file for a state that is not its pharmacies' home: that state's FillReports.
    other_state = session.scalar(
        select(Submission.pmp_state)
        .join(submission_pharmacies, submission_pharmacies.c.submission_id == Submission.id)
        .join(Pharmacy, Pharmacy.id == submission_pharmacies.c.pharmacy_id)
        .where(Submission.id == submission_id, Pharmacy.state != Submission.pmp_state)
        .limit(1)
    )
    if other_state is not None:
        return _mark_reported_to(session, other_state, submission_id, at or utcnow())
    rec = select(SubmissionRecord).where(
        SubmissionRecord.submission_id == submission_id, SubmissionRecord.fill_id == Fill.id
    )
    status = rec.with_only_columns(SubmissionRecord.reporting_status).scalar_subquery()
    version = rec.with_only_columns(SubmissionRecord.fill_version).scalar_subquery()
    still_needed = case(
        (Fill.version == version, False),
        (Fill.state == "voided", status.in_((NEW_RECORD, REVISED_RECORD))),
        else_=True,
    )
    result = session.execute(
        update(Fill)
        .where(exists(rec))
        .values(
            reported_status=status,
            reported_at=at or utcnow(),
            last_submission_id=submission_id,
            needs_report=still_needed,
        )
        .execution_options(synchronize_session=False)
    )
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Fill):
            session.expire(obj)
    return int(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def _mark_reported_to(session: Session, state: str, submission_id: int, at: dt.datetime) -> int:
    """Another state's PMP now holds these records: one FillReport per fill and state,
    replaced by the newer one (what that state holds is what went last)."""
    records = session.execute(
        select(
            SubmissionRecord.fill_id,
            SubmissionRecord.reporting_status,
            SubmissionRecord.fill_version,
        ).where(SubmissionRecord.submission_id == submission_id)
    ).all()
    if not records:
        return 0
    ids = [fill_id for fill_id, _, _ in records]
    session.execute(
        delete(FillReport).where(FillReport.state == state, FillReport.fill_id.in_(ids))
    )
    session.execute(
        insert(FillReport),
        [
            dict(
                fill_id=fill_id,
                state=state,
                reported_status=status,
                reported_version=version,
                reported_at=at,
                submission_id=submission_id,
            )
            for fill_id, status, version in records
        ],
    )
    return len(records)
