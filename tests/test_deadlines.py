# ruff: noqa: F811
"""Reporting deadlines: a fill is due by its date filled plus the profile's business
days; `status` lists the late ones, `run-daily` exits 1 naming how many and writes
the gauge to [extract] metrics_file."""

from __future__ import annotations

import datetime as dt

from _extract_helpers import good_fill, pharmacies, sessions, settings  # noqa: F401
from _sftp_server import sftp_server  # noqa: F401
from freezegun import freeze_time
from sqlalchemy import update

import cli
from cashcapture.core.store import Fill
from extract import reports

CHRISTMAS_EVE = dt.date(2026, 12, 24)  # a Thursday: Christmas and a weekend follow


def _fills(sessions):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        due = good_fill(s, ph["solo"], "A1", date_of_service=CHRISTMAS_EVE).id
        good_fill(s, ph["solo"], "A2", date_of_service=CHRISTMAS_EVE - dt.timedelta(days=1))
        early = CHRISTMAS_EVE - dt.timedelta(days=9)
        sent = good_fill(s, ph["solo"], "A3", date_of_service=early).id
        never = good_fill(s, ph["solo"], "A4", date_of_service=early).id
        s.execute(
            update(Fill).where(Fill.id == sent).values(needs_report=False, reported_status="00")
        )
        s.execute(update(Fill).where(Fill.id == never).values(state="voided"))  # owes nothing
    return due


def test_late_counts_what_is_owed_past_the_business_day_deadline(sessions, tmp_path):  # noqa: F811
    _fills(sessions)
    deadline = settings(tmp_path).extract.deadline  # KY: one business day, KY holidays
    with sessions() as s:
        on_monday = reports.late(s, deadline, dt.date(2026, 12, 28))
        on_tuesday = reports.late(s, deadline, dt.date(2026, 12, 29))
    # Wed 23rd was due Thu 24th; Thu 24th is due Mon 28th (Christmas, the weekend)
    assert on_monday.rows == [("2026-12-23", "2026-12-24", 1)]
    assert on_tuesday.rows == [("2026-12-23", "2026-12-24", 1), ("2026-12-24", "2026-12-28", 1)]
    assert reports.late_count(on_tuesday) == 2
    assert reports.late_line(on_tuesday).startswith("2 fills past the reporting deadline")
    seven_days = settings(tmp_path, profile="KY-2011").extract.deadline
    with sessions() as s:
        assert reports.late(s, seven_days, dt.date(2026, 12, 29)).rows == []


def _config(tmp_path, server, extra: str = "") -> str:
    path = tmp_path / "cc.toml"
    path.write_text(
        '[extract]\ntimezone = "America/New_York"\nzero_reports = "off"\n'
        f'metrics_file = "late.prom"\n{extra}\n' + server.info.toml()
    )
    return str(path)


def test_status_lists_late_fills(sessions, tmp_path, migrated_db_url, sftp_server, capsys):  # noqa: F811
    _fills(sessions)
    cfg = _config(tmp_path, sftp_server)
    with freeze_time("2026-12-29 15:00:00"):
        assert cli.main(["status", "--db", migrated_db_url, "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "Fills past their reporting deadline on 2026-12-29" in out
    assert "2026-12-24" in out and "2026-12-28" in out


def _run_daily_on_the_29th(db: str, cfg: str) -> int:
    with freeze_time("2026-12-29 15:00:00"):
        return cli.main(["run-daily", "--date", "2026-12-28", "--db", db, "--config", cfg])


def test_run_daily_exits_1_naming_the_late_fills(
    sessions,
    tmp_path,
    migrated_db_url,
    sftp_server,
    capsys,  # noqa: F811
):
    _fills(sessions)
    with sessions.begin() as s:  # the 23rd's fill is held back at extract: it stays owed
        s.execute(update(Fill).where(Fill.rx_number == "A2").values(ndc="00000000000"))
    cfg = _config(tmp_path, sftp_server)
    code = _run_daily_on_the_29th(migrated_db_url, cfg)
    out, err = capsys.readouterr()
    assert code == 1 and "uploaded    PMP_KY_" in out  # the 24th's fill went
    late = [line for line in err.splitlines() if "past the reporting deadline" in line]
    assert late == [
        "cashcapture: 1 fill past the reporting deadline not yet delivered; "
        "oldest filled 2026-12-23, due 2026-12-24"
    ]
    prom = (tmp_path / "late.prom").read_text()
    assert "cashcapture_fills_late 1.0" in prom and "cashcapture_fills_queued 1.0" in prom


def test_run_daily_delivering_everything_is_not_late(
    sessions,
    tmp_path,
    migrated_db_url,
    sftp_server,
    capsys,  # noqa: F811
):
    _fills(sessions)
    cfg = _config(tmp_path, sftp_server)
    code = _run_daily_on_the_29th(migrated_db_url, cfg)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "past the reporting deadline" not in err
    assert "cashcapture_fills_late 0.0" in (tmp_path / "late.prom").read_text()
