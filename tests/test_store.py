"""Store: migrations, fill identity in the database, fill lifecycle. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from _store_helpers import (
    add_pharmacy,
    answer_claim,
    capture,
    fill_fields,
    find_fill,
    insert_fill,
    revise_fill,
    void_fill,
)
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from cashcapture.core.store import (
    Claim,
    DuplicateFill,
    Fill,
    Submission,
    add_record,
    fills_to_report,
    find_claim_by_hash,
    is_duplicate_fill_error,
    make_engine,
    mark_fills_reported,
    session_factory,
    upgrade,
    writer_engine,
)
from cashcapture.core.store.migrate import alembic_config  # noqa: E402

TABLES = {
    "pharmacies",
    "claims",
    "fills",
    "fill_ingredients",
    "submissions",
    "submission_pharmacies",
    "submission_records",
    "record_rejects",
    "state_file_counts",
}


def test_migrations_build_from_empty_and_rerun(db_url):
    upgrade(db_url)
    upgrade(db_url)  # at head already: a no-op, not an error
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert TABLES <= set(inspect(conn).get_table_names())
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert conn.execute(text("select version_num from alembic_version")).scalar() == head
            uniques = {u["name"] for u in inspect(conn).get_unique_constraints("fills")}
            assert "uq_fills_key" in uniques
    finally:
        engine.dispose()


def test_upgrading_a_store_with_data_keeps_every_row(db_url):
    """A migration that changes a column makes SQLite copy the table and drop the old
    one: with foreign keys enforced, that drop deleted a compound's ingredients and
    failed on a reported fill's submission records. Every row survives the upgrade."""
    upgrade(db_url, "multistate")
    engine = make_engine(db_url)
    now = "2026-12-01 10:00:00"
    rows = [
        "INSERT INTO pharmacies (id, dea, name, state, active, created_at, mail_order) "
        f"VALUES (1, 'FP1234563', 'Bluegrass', 'KY', true, '{now}', false)",
        "INSERT INTO fills (id, pharmacy_id, rx_number, fill_number, date_of_service, state, "
        "route, version, needs_report, created_at, updated_at, product_id_qualifier, ndc, "
        f"compound, schedule) VALUES (1, 1, '7001', 0, '2026-11-30', 'new', 'cash', 1, false, "
        f"'{now}', '{now}', '06', '99999999999', true, 'CII')",
        "INSERT INTO fill_ingredients (id, fill_id, sequence, product_id_qualifier, ndc, "
        "quantity) VALUES (1, 1, 1, '01', '00054457125', '10'), (2, 1, 2, '01', "
        "'00143126701', '5')",
        "INSERT INTO submissions (id, file_name, submitter_id, zero_report, record_count, "
        f"valid_record_count, state, created_at, attempts) VALUES (1, 'PMP_KY_X.dat', 'X', "
        f"false, 1, 1, 'uploaded', '{now}', 1)",
        "INSERT INTO submission_records (id, submission_id, fill_id, reporting_status, "
        "fill_version) VALUES (1, 1, 1, '00', 1)",
    ]
    try:
        with engine.begin() as conn:
            for sql in rows:
                conn.execute(text(sql))
        upgrade(db_url)
        with engine.connect() as conn:
            counts = {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("fills", "fill_ingredients", "submission_records")
            }
            fill = conn.execute(text("SELECT schedule, unclassified FROM fills")).one()
            if conn.dialect.name == "sqlite":  # enforcement is back on for every connection
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert counts == {"fills": 1, "fill_ingredients": 2, "submission_records": 1}
    assert tuple(fill) == ("CII", False)


def test_migrations_build_what_the_models_say(migrated_db_url):
    """A column, index, constraint or type added to a model without its migration (or
    the reverse) shows here, on SQLite and PostgreSQL."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from cashcapture.core.store.models import Base

    engine = make_engine(migrated_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_is_durable_wal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    engine.dispose()


def test_default_url_comes_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CASHCAPTURE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    engine = make_engine()
    assert engine.url.database == str(tmp_path / "env.db")
    engine.dispose()


def test_fill_round_trip_keeps_every_value(db_session):
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id, quantity=Decimal("2.5"), compound=False)
    db_session.commit()
    db_session.expunge_all()
    got = find_fill(db_session, pharmacy.id, "1000001", 0, dt.date(2024, 3, 4))
    assert got is not None and got.id == fill.id
    assert got.quantity == Decimal("2.500") and str(got.quantity) == "2.500"
    assert got.patient_dob == dt.date(1970, 1, 2)
    assert got.created_at.tzinfo is not None
    assert got.state == "new" and got.needs_report and got.reporting_status == "00"
    assert got.created_by_claim_id is not None
    assert db_session.get(Claim, got.created_by_claim_id).transaction_code == "B1"


def test_compound_fill_keeps_ingredients_in_order(db_session):
    pharmacy = add_pharmacy(db_session)
    rows = [
        {"sequence": 2, "ndc": "00000000002", "quantity": Decimal("1.25")},
        {"sequence": 1, "ndc": "00000000001", "quantity": Decimal("10")},
    ]
    insert_fill(db_session, fill_fields(pharmacy.id, ndc="99999000000"), ingredients=rows)
    db_session.commit()
    db_session.expunge_all()
    got = db_session.scalars(select(Fill)).one()
    assert got.compound
    assert [(i.sequence, i.ndc, i.quantity) for i in got.ingredients] == [
        (1, "00000000001", Decimal("10.000")),
        (2, "00000000002", Decimal("1.250")),
    ]


def test_duplicate_fill_in_same_session_is_refused(db_session):
    pharmacy = add_pharmacy(db_session)
    first = capture(db_session, pharmacy.id)
    db_session.flush()
    with pytest.raises(DuplicateFill) as info:
        insert_fill(db_session, fill_fields(pharmacy.id))
    assert info.value.existing_id == first.id
    # another fill number or date is another fill
    insert_fill(db_session, fill_fields(pharmacy.id, fill_number=1))
    insert_fill(db_session, fill_fields(pharmacy.id, date_of_service=dt.date(2024, 3, 5)))
    db_session.commit()
    assert db_session.scalar(select(func.count(Fill.id))) == 3


def test_database_enforces_fill_key_across_connections(db_engine):
    """Two sessions that both miss the other's row: the database lets one win."""
    sessions = session_factory(db_engine)
    with sessions() as setup:
        pharmacy_id = add_pharmacy(setup).id
        setup.commit()
    a, b = sessions(), sessions()
    try:
        a.add(Fill(**fill_fields(pharmacy_id)))
        b.add(Fill(**fill_fields(pharmacy_id)))
        a.commit()
        with pytest.raises(IntegrityError) as info:
            b.commit()
        assert is_duplicate_fill_error(info.value)
    finally:
        a.close()
        b.close()
    with sessions() as check:
        assert check.scalar(select(func.count(Fill.id))) == 1


def test_concurrent_writers_exactly_one_wins(db_engine):
    sessions = session_factory(writer_engine(db_engine))
    with sessions() as setup:
        pharmacy_id = add_pharmacy(setup).id
        setup.commit()
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def writer(n: int) -> None:
        with sessions() as session:
            barrier.wait()
            try:
                capture(session, pharmacy_id, days_supply=n)
                session.commit()
                outcomes.append("won")
            except DuplicateFill:
                outcomes.append("duplicate")
            except IntegrityError as exc:
                assert is_duplicate_fill_error(exc)
                outcomes.append("duplicate")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["duplicate"] * 3 + ["won"]
    with sessions() as check:
        assert check.scalar(select(func.count(Fill.id))) == 1
        assert check.scalar(select(func.count(Claim.id))) == 1  # the losers' claims rolled back


def test_claim_answer_and_lookup_by_hash(db_session):
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id)
    claim = fill.created_by_claim
    assert find_claim_by_hash(db_session, claim.content_hash) is None  # not answered yet
    answer_claim(db_session, claim, response=b"resp", status="P", reject_codes=[])
    db_session.commit()
    found = find_claim_by_hash(db_session, claim.content_hash)
    assert found is not None and found.response == b"resp" and found.reject_codes is None
    assert found.answered_at >= found.received_at


def test_void_before_report_drops_the_fill(db_session):
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id)
    void_fill(db_session, fill)
    db_session.commit()
    assert fill.state == "voided" and fill.version == 2
    assert not fill.needs_report and fill.reporting_status is None
    assert list(fills_to_report(db_session, [pharmacy.id])) == []


def _deliver(session, pharmacy, name):
    submission = Submission(file_name=name, submitter_id=pharmacy.dea, state="written")
    session.add(submission)
    session.flush()
    for fill in list(fills_to_report(session, [pharmacy.id])):
        add_record(session, submission, fill)
    session.flush()
    return submission


def test_report_lifecycle_new_revise_void(db_session):
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id)
    db_session.flush()
    first = _deliver(db_session, pharmacy, "f1")
    # written but not delivered: a re-run of the extract does not take it again
    assert list(fills_to_report(db_session, [pharmacy.id])) == []
    first.state = "uploaded"
    assert mark_fills_reported(db_session, first.id) == 1
    assert not fill.needs_report and fill.reported_status == "00"
    assert fill.last_submission_id == first.id

    revise_fill(db_session, fill, {"quantity": Decimal("20")})
    assert fill.needs_report and fill.reporting_status == "01" and fill.state == "revised"
    second = _deliver(db_session, pharmacy, "f2")
    # revised again while the file is in flight: stays queued after delivery
    revise_fill(db_session, fill, {"days_supply": 10})
    second.state = "uploaded"
    mark_fills_reported(db_session, second.id)
    assert fill.reported_status == "01" and fill.needs_report

    void_fill(db_session, fill)
    assert fill.needs_report and fill.reporting_status == "02"
    third = _deliver(db_session, pharmacy, "f3")
    rows = db_session.execute(
        text("select reporting_status from submission_records where submission_id = :s"),
        {"s": third.id},
    ).scalars()
    assert list(rows) == ["02"]
    third.state = "uploaded"
    mark_fills_reported(db_session, third.id)
    assert not fill.needs_report and fill.reporting_status is None
    db_session.commit()


def test_void_while_the_00_is_in_flight_goes_out_as_02(db_session):
    # The reversal arrives while the file carrying the fill's 00 is uploading:
    # nothing is held yet, so the void dequeues the fill; once the file is on
    # the server the state holds the 00, and the 02 must follow.
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id)
    db_session.flush()
    uploading = _deliver(db_session, pharmacy, "f1")
    void_fill(db_session, fill)
    assert not fill.needs_report and fill.reporting_status is None
    db_session.commit()
    uploading.state = "uploaded"
    assert mark_fills_reported(db_session, uploading.id) == 1
    db_session.commit()
    assert (fill.reported_status, fill.needs_report, fill.reporting_status) == ("00", True, "02")
    assert [f.id for f in fills_to_report(db_session, [pharmacy.id])] == [fill.id]
    void_file = _deliver(db_session, pharmacy, "f2")
    void_file.state = "uploaded"
    assert mark_fills_reported(db_session, void_file.id) == 1
    assert (fill.reported_status, fill.needs_report, fill.reporting_status) == ("02", False, None)
    assert list(fills_to_report(db_session, [pharmacy.id])) == []


def test_revise_cannot_move_the_key(db_session):
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id)
    with pytest.raises(ValueError, match="fill key"):
        revise_fill(db_session, fill, {"rx_number": "other"})
    with pytest.raises(TypeError, match="unknown fill field"):
        revise_fill(db_session, fill, {"no_such": 1})


def test_naive_datetime_is_refused(db_session):
    pharmacy = add_pharmacy(db_session)
    fill = capture(db_session, pharmacy.id)
    fill.reported_at = dt.datetime(2024, 1, 1)
    with pytest.raises(Exception, match="naive datetime"):
        db_session.flush()


def test_concurrent_upgrades_from_empty(db_url):
    """Workers that start together all end at head, none fails."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(db_url)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and errors == []
    engine = make_engine(db_url)
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(text("select version_num from alembic_version")).scalar() == head
    engine.dispose()
