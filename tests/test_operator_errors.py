"""Every user error is one line on stderr and exit 2, saying its cause; reads create nothing.

Each command meets a missing file, an empty database, a database without
tables, a bad URL, a bad config value and an oversize CSV field. The test
fails on any traceback (an exception out of `cli.main`), on more than one
line, or on a message that names no cause (a bare exception class name).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import cli

FIXTURES = Path(__file__).parents[1] / "fixtures"
DEMO_CLAIM = str(FIXTURES / "demo" / "cash-controlled.dat")

#: Commands that read or write the store: name -> argv before --db/--config.
STORE_COMMANDS = {
    "fills": ["fills"],
    "status": ["status"],
    "rejects": ["rejects"],
    "recap": ["recap", "--month", "2026-01"],
    "extract": ["extract"],
    "submit": ["submit"],
    "run-daily": ["run-daily"],
    "collector record": ["collector", "record", "PMP_KY_A_B_20260101000000.dat",
                         "--status", "accepted"],  # fmt: skip
    "collector import": ["collector", "import", "{status_csv}"],
    "pharmacy list": ["pharmacy", "list"],
    "pharmacy import": ["pharmacy", "import", str(FIXTURES / "pharmacies.csv")],
    "pharmacy add": ["pharmacy", "add", "--dea", "FP1234563", "--name", "X"],
    "pharmacy update": ["pharmacy", "update", "FP1234563", "--city", "X"],
    "pharmacy deactivate": ["pharmacy", "deactivate", "FP1234563"],
}
CONFIG_COMMANDS = (
    "status", "rejects", "recap", "extract", "submit", "run-daily",
    "collector record", "collector import",
)  # fmt: skip
#: Commands that take a file: argv with {missing} for the file that is not there.
FILE_COMMANDS = (
    ["decode", "{missing}"],
    ["encode", "{missing}"],
    ["validate", "{missing}"],
    ["asap", "show", "{missing}"],
    ["certify", "{missing}"],
    ["send", "{missing}", "--port", "9"],
    ["drugs", "import", "{missing}", "{missing}"],
    ["pharmacy", "import", "{missing}"],
    ["collector", "import", "{missing}"],
    ["collector", "record", "F.dat", "--status", "accepted", "--rejects", "{missing}"],
    ["serve", "--config", "{missing}"],
    ["status", "--config", "{missing}"],
)
BARE = ("OperationalError", "ProgrammingError", "ArgumentError", "ValueError", "KeyError")


def one_line(capsys, argv: list[str], *causes: str) -> str:
    try:
        code = cli.main(argv)
    except BaseException as exc:  # a traceback for the user
        pytest.fail(f"{argv}: {type(exc).__name__}: {exc}")
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (argv, code, err)
    message = lines[0].removeprefix("cashcapture: error: ")
    assert message.strip() not in BARE and not message.rstrip().endswith(BARE), (argv, err)
    assert any(c in message for c in causes), (argv, message)
    return message


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default ./cashcapture.db or ./outbox would land here
    monkeypatch.delenv("CASHCAPTURE_DB", raising=False)
    status_csv = tmp_path / "status.csv"
    status_csv.write_text(
        "File Name,DEA,Total,Duplicate,In Process,Errors,Warnings,Imported,Voided,"
        "Voids Not Found\nPMP_KY_A_B_20260101000000.dat,FP1234563,1,0,0,0,0,1,0,0\n"
    )
    return {"status_csv": str(status_csv), "missing": str(tmp_path / "missing.dat")}


def argv_of(name: str, files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in STORE_COMMANDS[name]]


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_store_commands_on_missing_empty_tableless_and_bogus_databases(
    name, files, tmp_path, capsys
):
    argv = argv_of(name, files)
    missing = tmp_path / "nothing" / "here.db"
    one_line(capsys, [*argv, "--db", f"sqlite:///{missing}"], "no database at")
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    one_line(capsys, [*argv, "--db", f"sqlite:///{empty}"], "no such table", "has no tables")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table something_else (x)")
    one_line(capsys, [*argv, "--db", f"sqlite:///{other}"], "no such table", "has no tables")
    one_line(capsys, [*argv, "--db", "bogus://x"], "bad database URL")
    made = {p.name for p in tmp_path.iterdir()} - {"empty.db", "other.db", "status.csv"}
    assert {n for n in made if not n.endswith(("-wal", "-shm", ".run.lock"))} == set(), made
    # no ./cashcapture.db, no ./outbox; only SQLite's own files beside the databases given


def test_db_upgrade_and_serve_name_what_is_wrong_with_the_url(capsys):
    for argv in (["db", "upgrade"], ["serve", "--port", "0"]):
        one_line(capsys, [*argv, "--db", "bogus://x"], "bad database URL: Can't load plugin")


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["fills", "status", "run-daily", "pharmacy list"])
def test_store_commands_on_a_postgresql_schema_without_tables(name, files, db_url, capsys):
    if not db_url.startswith("postgresql"):
        return  # the SQLite half is the test above
    one_line(capsys, [*argv_of(name, files), "--db", db_url], "does not exist", "has no tables")


@pytest.mark.parametrize("name", CONFIG_COMMANDS)
def test_a_bad_config_value_is_refused_by_every_command_reading_the_file(
    name, files, tmp_path, capsys
):
    config = tmp_path / "cc.toml"
    config.write_text('[adapter]\nlog_level = "LOUD"\n')
    one_line(capsys, [*argv_of(name, files), "--config", str(config)], "log_level")
    config.unlink()
    assert list(tmp_path.glob("*.db")) == []


def test_serve_refuses_a_bad_log_level(tmp_path, capsys):
    config = tmp_path / "cc.toml"
    config.write_text('[adapter]\nlog_level = "LOUD"\n')
    one_line(capsys, ["serve", "--config", str(config)], "adapter.log_level")


@pytest.mark.parametrize("argv", FILE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_file(argv, files, capsys):
    one_line(capsys, [a.format(**files) for a in argv], "No such file", "does not exist")


BIG = "x" * 131_073
OVERSIZE = {
    "pharmacy import": ("dea,name\nFP1234563,{big}\n", ["pharmacy", "import"]),
    "collector import": (
        "File Name,DEA,Total,Duplicate,In Process,Errors,Warnings,Imported,Voided,"
        "Voids Not Found\n{big},FP1234563,1,0,0,0,0,1,0,0\n",
        ["collector", "import"],
    ),
    "collector record": (
        "Rx Number,Fill Date,Reason\nA1,20260101,{big}\n",
        ["collector", "record", "F.dat", "--status", "accepted", "--rejects"],
    ),
}


@pytest.mark.parametrize("name", OVERSIZE)
def test_an_oversize_csv_field(name, migrated_db_url, tmp_path, capsys):
    text, argv = OVERSIZE[name]
    big = tmp_path / "big.csv"
    big.write_text(text.format(big=BIG))
    message = one_line(capsys, [*argv, str(big), "--db", migrated_db_url], "field larger")
    assert BIG not in message


def test_run_daily_without_config_creates_no_outbox_in_the_current_folder(
    migrated_db_url, tmp_path, monkeypatch, capsys
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code = cli.main(["run-daily", "--zero-reports", "off", "--db", migrated_db_url])
    capsys.readouterr()
    assert code == 0  # nothing queued: nothing to write, and no empty outbox/ in the cwd
    assert list(cwd.iterdir()) == []


def test_errors_are_one_line_in_a_real_process_too(tmp_path):
    """What a user sees from the installed command: no traceback, exit 2."""
    env = {**os.environ, "CASHCAPTURE_DB": "bogus://x"}
    for argv in (["status"], ["fills"], ["collector", "import", str(tmp_path / "x.csv")]):
        done = subprocess.run(
            [sys.executable, "-m", "cli", *argv], capture_output=True, text=True, env=env,
            cwd=tmp_path, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
