"""The state's verdict, apart from ours: collector record / import, status and recap columns."""

from __future__ import annotations

import csv
import datetime as dt
import io

from _extract_helpers import TODAY, good_fill, pharmacies, sessions  # noqa: F401
from _sftp_server import sftp_server  # noqa: F401
from sqlalchemy import select

import cli
from cashcapture.core.store import Fill, RecordReject, Submission


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out)))


def delivered(sessions, sftp_server, tmp_path, url, capsys):  # noqa: F811
    """Two fills of one pharmacy, run-daily on a real SFTP server; (db args, file name)."""
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1")
        good_fill(s, ph["solo"], "A2")
    cfg = tmp_path / "cc.toml"
    head = '[extract]\ntimezone = "UTC"\nzero_reports = "off"\n\n'
    cfg.write_text(head + sftp_server.info.toml())
    db = ["--db", url, "--config", str(cfg)]
    code, out, err = run(capsys, "run-daily", "--date", TODAY.isoformat(), *db)
    assert code == 0, out + err
    with sessions() as s:
        (name,) = s.scalars(select(Submission.file_name))
    return db, name


def status_row(capsys, db, name) -> dict[str, str]:
    code, out, _ = run(capsys, "status", "--csv", "--from", TODAY.isoformat(), *db)
    assert code == 0
    return next(r for r in table(out) if r["File Name"] == name)


def test_status_keeps_our_check_apart_from_the_state_verdict(
    sessions, sftp_server, tmp_path, migrated_db_url, capsys  # noqa: F811
):
    db, name = delivered(sessions, sftp_server, tmp_path, migrated_db_url, capsys)
    row = status_row(capsys, db, name)
    assert row["Checked Here"] == "Accept" and row["State"] == "unknown"
    assert row["State Recorded On"] == "" and "Processed Date" not in row
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    code, out, _ = run(capsys, "recap", "--month", month, "--csv", *db)
    (recap,) = table(out)
    assert recap["Counted By"] == "checked here" and recap["ProcessDate"] == ""

    code, out, err = run(capsys, "collector", "record", name, "--status", "accepted", *db)
    assert code == 0 and "state verdict accepted recorded" in out, err
    row = status_row(capsys, db, name)
    assert row["State"] == "accepted" and row["Checked Here"] == "Accept"
    assert row["State Recorded On"] == dt.datetime.now(dt.UTC).date().isoformat()
    code, out, _ = run(capsys, "collector", "record", name, "--status", "accepted", *db)
    assert code == 0 and "already recorded" in out

    report = tmp_path / "status.csv"
    report.write_text(
        "File Name,DEA,Total,Duplicate,In Process,Errors,Warnings,Imported,Voided,"
        f"Voids Not Found\n{name},FP1234563,2,0,0,1,0,1,0,0\n"
    )
    code, out, err = run(capsys, "collector", "import", str(report), *db)
    assert code == 0 and "1 of 2 imported, 1 errors" in out, err
    assert status_row(capsys, db, name)["State"] == "accepted: 1 of 2 imported, 1 errors"
    code, out, _ = run(capsys, "recap", "--month", month, "--csv", *db)
    (recap,) = table(out)
    assert recap["Counted By"] == "state" and recap["RecordCount"] == "2"
    assert recap["ProcessDate"] != ""


def test_a_failed_file_is_queued_again_and_sent_on_the_next_run(
    sessions, sftp_server, tmp_path, migrated_db_url, capsys  # noqa: F811
):
    db, name = delivered(sessions, sftp_server, tmp_path, migrated_db_url, capsys)
    with sessions() as s:
        assert not any(s.scalars(select(Fill.needs_report)))
    code, out, err = run(capsys, "collector", "record", name, "--status", "failed", *db)
    assert code == 0 and "2 records queued to be sent again" in out, err
    with sessions() as s:
        assert [(f.needs_report, f.reported_status) for f in s.scalars(select(Fill))] == [
            (True, None),
            (True, None),
        ]
    assert status_row(capsys, db, name)["State"] == "failed"
    code, out, err = run(capsys, "run-daily", "--date", TODAY.isoformat(), *db)
    assert code == 0 and "records=2" in out, out + err
    with sessions() as s:
        names = set(s.scalars(select(Submission.file_name)))
        assert len(names) == 2 and not any(s.scalars(select(Fill.needs_report)))
    code, _, err = run(capsys, "collector", "record", name, "--status", "accepted", *db)
    assert code == 2 and "already recorded as failed" in err


def test_records_the_state_rejected_wait_for_a_correction_like_ours(
    sessions, sftp_server, tmp_path, migrated_db_url, capsys  # noqa: F811
):
    db, name = delivered(sessions, sftp_server, tmp_path, migrated_db_url, capsys)
    rejects = tmp_path / "rejects.csv"
    filled = TODAY - dt.timedelta(days=1)  # good_fill's date of service
    rejects.write_text(f"Rx Number,Fill Date,Reason\nA2,{filled:%Y%m%d},Invalid prescriber\n")
    code, out, err = run(
        capsys, "collector", "record", name, "--status", "accepted", "--rejects", str(rejects), *db
    )
    assert code == 0 and "1 records rejected by the state" in out, err
    code, out, _ = run(capsys, "rejects", "--csv", *db)
    (rej,) = table(out)
    assert rej["Rx Number"] == "A2" and rej["Reject Reason"] == "state: Invalid prescriber"
    # not sent again unchanged, and the reject stays open across runs
    code, out, err = run(capsys, "run-daily", "--date", TODAY.isoformat(), *db)
    assert "0 files" in out, out + err
    assert len(table(run(capsys, "rejects", "--csv", *db)[1])) == 1
    # the corrected claim arrives (a revision): it goes as a new record and the reject closes
    with sessions.begin() as s:
        fill = s.scalar(select(Fill).where(Fill.rx_number == "A2"))
        fill.version, fill.state, fill.needs_report = fill.version + 1, "revised", True
        fill.updated_at = dt.datetime.now(dt.UTC)
        fill.prescriber_last_name = "CORRECTED"
    code, out, err = run(capsys, "run-daily", "--date", TODAY.isoformat(), *db)
    assert code == 0 and "records=1" in out, out + err
    with sessions() as s:
        assert s.scalar(select(RecordReject.resolved_at)) is not None
        assert s.scalar(select(Fill.reported_status).where(Fill.rx_number == "A2")) == "00"


def test_bad_verdicts_are_one_line_errors(
    sessions, sftp_server, tmp_path, migrated_db_url, capsys  # noqa: F811
):
    db, name = delivered(sessions, sftp_server, tmp_path, migrated_db_url, capsys)
    bad_rejects = tmp_path / "r.csv"
    bad_rejects.write_text(f"Rx Number,Fill Date\nNOPE,{TODAY:%Y%m%d}\n")
    unterminated = tmp_path / "u.csv"
    unterminated.write_text(
        "File Name,DEA,Total,Duplicate,In Process,Errors,Warnings,Imported,Voided,"
        'Voids Not Found\n"oops,FP1234563,1,0,0,0,0,1,0,0\n'
    )
    for argv, words in (
        (["record", "PMP_KY_X_Y_20250101000000.dat", "--status", "failed"], "no such file"),
        (["record", name, "--status", "accepted", "--rejects", str(bad_rejects)], "Rx NOPE"),
        (["record", name, "--status", "maybe"], "'maybe' is not one of"),
        (["import", str(unterminated)], "not valid CSV"),
        (["import", str(tmp_path / "missing.csv")], "No such file"),
    ):
        code, out, err = run(capsys, "collector", *argv, *db)
        assert code == 2 and len(err.splitlines()) == 1 and words in err, (argv, err)
    assert status_row(capsys, db, name)["State"] == "unknown"


def test_collector_serve_prints_the_section_that_run_daily_delivers_with(
    sessions, tmp_path, migrated_db_url, capsys  # noqa: F811
):
    import signal
    import subprocess
    import sys
    import tomllib

    folder = tmp_path / "collector"
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "collector", "serve", str(folder), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = [server.stdout.readline() for _ in range(8)]
        assert lines[0].startswith("# files arrive in"), lines
        section = "".join(lines[1:])
        assert tomllib.loads(section)["sftp"]["port"] > 0
        with sessions.begin() as s:
            good_fill(s, pharmacies(s)["solo"], "A1")
        cfg = tmp_path / "cc.toml"
        cfg.write_text('[extract]\ntimezone = "UTC"\nzero_reports = "off"\n\n' + section)
        code, out, err = run(
            capsys, "run-daily", "--date", TODAY.isoformat(), "--db", migrated_db_url,
            "--config", str(cfg),
        )  # fmt: skip
        assert code == 0 and "uploaded    PMP_KY_FP1234563_" in out, out + err
        (arrived,) = (folder / "inbox").iterdir()
        assert arrived.name.startswith("PMP_KY_FP1234563_") and arrived.stat().st_size > 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.stderr.read()
