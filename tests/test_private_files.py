"""Files holding patient data are 0600 and their folders 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

import cli
from cashcapture.core.store import make_engine, upgrade

FIXTURES = Path(__file__).parents[1] / "fixtures"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_demo_under_umask_022_leaves_nothing_readable_by_others(tmp_path):
    folder = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--dir", str(folder)],
        capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    seen = {"outbox": 0, "collector": 0, "keys": 0}
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            assert mode(path) == 0o700, path
        else:
            assert mode(path) == 0o600, path
            seen[path.parent.name] = seen.get(path.parent.name, 0) + 1
    assert seen["outbox"] and seen["collector"] and seen["keys"]  # the walk saw real files
    assert (folder / "cashcapture.db").is_file()


def test_a_new_sqlite_store_and_its_wal_are_private_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:  # open: -wal and -shm exist
            conn.execute(text("create table t (x)"))
            conn.commit()
            for suffix in ("", "-wal", "-shm"):
                assert mode(tmp_path / "new" / f"store.db{suffix}") == 0o600, suffix
        engine.dispose()
        assert mode(tmp_path / "new") == 0o700
    finally:
        os.umask(old)


def test_certify_html_masks_patients_unless_asked_and_is_private(tmp_path, capsys):
    claim = FIXTURES / "demo" / "cash-compound.dat"
    page = tmp_path / "report.html"
    old = os.umask(0o022)
    try:
        assert cli.main(["certify", "--html", str(page), str(claim)]) in (0, 1)
    finally:
        os.umask(old)
    capsys.readouterr()
    masked = page.read_text()
    assert mode(page) == 0o600
    for identifier in ("PRUITT", "DALE", "19550122", "402118734", "88 RIVER RD", "40601"):
        assert identifier not in masked, identifier
    assert "PAT**07*•••" in masked and "Patient identifiers are shown as •••" in masked
    assert cli.main(["certify", "--show-patient", "--html", str(page), str(claim)]) in (0, 1)
    shown = page.read_text()
    assert "PRUITT" in shown and "19550122" in shown and "402118734" in shown
