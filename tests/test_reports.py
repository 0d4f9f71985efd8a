"""The operator's commands end to end: run-daily, status, recap, rejects, the run lock."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from _extract_helpers import TODAY, good_fill, pharmacies, sessions  # noqa: F401
from _sftp_server import remote_files, sftp_server  # noqa: F401

import cli
from cashcapture.core.store import ENV_VAR, Submission, make_engine, upgrade
from extract.runlock import run_lock


def config_file(tmp_path, server) -> str:
    path = tmp_path / "cc.toml"
    path.write_text('[extract]\ntimezone = "UTC"\nzero_reports = "off"\n\n' + server.info.toml())
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_daily_status_recap_rejects(sessions, sftp_server, tmp_path, migrated_db_url, capsys):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1")
        good_fill(s, ph["solo"], "A2", ndc="00000000000")
        good_fill(s, ph["chain2"], "C1")
    cfg = config_file(tmp_path, sftp_server)
    db = ["--db", migrated_db_url, "--config", cfg]
    code, out, err = run(capsys, "run-daily", "--date", TODAY.isoformat(), *db)
    assert code == 1  # a record was held back: the operator must look
    assert "1 held back" in out and out.count("uploaded    PMP_KY_") == 2
    assert len(remote_files(sftp_server)) == 2
    assert "DOE" not in out + err and "K12345678" not in out + err  # no patient data

    code, out, _ = run(capsys, "status", "--from", TODAY.isoformat(), "--csv", *db)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("Submitted Date,Checked Here On,File Name")
    solo = next(line for line in lines if "FP1234563" in line).split(",")
    # Records / Valid Records as `validate` counts the file: the held-back A2 is in
    # neither (it is listed by `rejects`)
    assert solo[5:9] == ["1", "1", "Accept", "uploaded"]

    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    code, out, _ = run(capsys, "recap", "--month", month, "--csv", *db)
    rows = [line.split(",") for line in out.splitlines()]
    assert rows[0][0] == "DEANumber" and sorted(r[0] for r in rows[1:]) == [
        "BC7710432",
        "FP1234563",
    ]
    assert all(r[3] == "1" for r in rows[1:])
    code, out, _ = run(capsys, "recap", "--month", month, *db)
    assert "ProcessFileName" in out and "FP1234563" in out

    code, out, _ = run(capsys, "rejects", "--csv", *db)
    assert out.splitlines()[1].startswith("FP1234563,0,A2,")
    assert "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List" in out
    # the day's list for one pharmacy, to send it: the guide's columns
    today = dt.datetime.now(dt.UTC).date()
    for dea, day, expect in (
        ("FP1234563", today, 1),
        ("fp1234563", today, 1),
        ("BC7710432", today, 0),
        ("FP1234563", today - dt.timedelta(days=3), 0),
    ):
        args = ("--pharmacy", dea, "--date", day.isoformat(), "--csv")
        code, out, _ = run(capsys, "rejects", *args, *db)
        lines = out.splitlines()
        assert code == 0 and lines[0].startswith("Facility ID,Refill Code,Rx Number,Date Filled")
        assert len(lines) - 1 == expect, (dea, day, out)


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    for argv in (
        ["recap", "--month", "2024-13"],
        ["status", "--from", "yesterday"],
        ["extract", "--config", str(tmp_path / "missing.toml")],
    ):
        code, out, err = run(capsys, *argv, "--db", f"sqlite:///{tmp_path}/x.db")
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
    bad = tmp_path / "bad.toml"
    bad.write_text('[extract]\nzero_reports = "hourly"\n')
    code, _, err = run(capsys, "extract", "--config", str(bad))
    assert code == 2 and "zero_reports" in err


def test_a_section_no_part_knows_is_refused_by_every_extract_command(tmp_path, capsys):
    """A misspelt [sftpp] must not leave the submitter on its defaults unnoticed."""
    bad = tmp_path / "cc.toml"
    bad.write_text('[extract]\nzero_reports = "off"\n\n[sftpp]\nhost = "collector.example"\n')
    for command in ("extract", "submit", "run-daily", "status", "rejects"):
        db = f"sqlite:///{tmp_path}/x.db"
        code, out, err = run(capsys, command, "--config", str(bad), "--db", db)
        assert code == 2 and out == "", command
        assert err.strip().splitlines() == [
            "cashcapture: error: unknown section(s) in config: sftpp "
            "(known: adapter, listeners, routes, payers, extract, sftp, states)"
        ], command
    assert not (tmp_path / "x.db").exists()  # refused before any database was touched


def test_database_from_the_option_then_the_environment_then_the_config_file(
    sessions, tmp_path, migrated_db_url, capsys, monkeypatch  # noqa: F811
):
    """`status --config FILE` reads the store named by [adapter] db, in `serve`'s order."""
    name = "PMP_KY_FROMCONFIG_1_20250101000000.dat"
    with sessions.begin() as s:
        s.add(Submission(file_name=name, submitter_id="FROMCONFIG", path=str(tmp_path / name)))
    cfg = tmp_path / "cc.toml"
    cfg.write_text(f'[adapter]\ndb = "{migrated_db_url}"\n\n[extract]\ntimezone = "UTC"\n')
    other = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(other)
    monkeypatch.chdir(tmp_path)  # the default sqlite:///cashcapture.db would land here
    monkeypatch.delenv(ENV_VAR, raising=False)
    status = ("status", "--csv", "--config", str(cfg))

    code, out, err = run(capsys, *status)
    assert code == 0 and name in out, err
    monkeypatch.setenv(ENV_VAR, other)  # the environment comes before the file
    code, out, _ = run(capsys, *status)
    assert code == 0 and out.startswith("Submitted Date,") and name not in out
    code, out, _ = run(capsys, *status, "--db", migrated_db_url)  # --db before both
    assert code == 0 and name in out
    assert not (tmp_path / "cashcapture.db").exists()

    cfg.write_text("[adapter]\ndb = 5\n")
    code, _, err = run(capsys, *status)
    assert code == 2 and err.strip() == "cashcapture: error: [adapter] db: expected str, got 5"


def test_two_runs_never_overlap(tmp_path, migrated_db_url):
    """While one process holds the run lock, run-daily in another refuses at once."""
    config = tmp_path / "cc.toml"
    config.write_text('[extract]\ntimezone = "UTC"\nzero_reports = "off"\n')

    def cashcapture(command: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "cli", command, "--db", migrated_db_url]
        return subprocess.run(argv + ["--config", str(config)], capture_output=True, timeout=60)

    engine = make_engine(migrated_db_url)
    try:
        with run_lock(engine):
            busy = cashcapture("run-daily")
            assert busy.returncode == 75 and b"another extract/submit run" in busy.stderr
            assert len(busy.stderr.splitlines()) == 1
        free = cashcapture("extract")
        assert free.returncode == 0, free.stderr
    finally:
        engine.dispose()
