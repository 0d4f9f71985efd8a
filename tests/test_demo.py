"""`cashcapture demo` end to end: a real process, real TCP, real SFTP, real files.

The demo run is shared by the tests of this module (it takes a couple of
seconds); each test asserts a different part of what it left behind.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _gpg import GPG, gpg_home
from sqlalchemy import func, select

import ncpdp
from cashcapture.app import demo, demo_claims
from cashcapture.core.store import Claim, Fill, Submission, make_engine, session_factory
from extract import reader

CLI = str(Path(sys.executable).with_name("cashcapture"))


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("demo")
    folder = base / "tmp"
    return folder, _cli("demo", "--dir", str(folder), cwd=base)


def _sessions(folder: Path):
    engine = make_engine(f"sqlite:///{folder / demo.DB_FILE}")
    return engine, session_factory(engine)


def test_demo_reports_every_claim_as_expected(run):
    folder, proc = run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "demo OK" in out
    for scenario in demo_claims.SCENARIOS:
        line = next(x for x in out.splitlines() if x.startswith(f"│ {scenario.name} "))
        assert "yes" in line and "NO" not in line, line
    assert "Claims by outcome: 1 approved, 1 duplicate, 11 paid, 3 rejected" in out
    assert "Waiting for a newer drug directory: 1 fill(s)" in out
    assert "certification claims captured: 0" in out
    assert "3 claims forwarded, bytes unchanged" in out
    assert "Rejected at the counter: 3" in out
    assert "Held back by the state's rules for correction: 1" in out
    # The payer paid the PO Box claim; the store keeps the street as sent, so the
    # state's rule names the real reason, not an empty field.
    assert "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. Resubmit with Physical Address." in out
    assert str(folder.resolve() / demo.COLLECTOR_DIR) in out
    assert proc.stderr == ""


def test_delivered_files_pass_cashcapture_validate(run):
    folder, _ = run
    delivered = sorted((folder / demo.COLLECTOR_DIR).glob("*.dat"))
    assert len(delivered) == 4
    assert not list((folder / demo.COLLECTOR_DIR).glob("*.part"))
    check = _cli("validate", *map(str, delivered))
    assert check.returncode == 0, check.stdout
    assert check.stdout.count("Accept") == 4
    # the default profile is Kentucky today: ASAP 4.2
    assert all(path.read_bytes().startswith(b"TH*4.2*") for path in delivered)
    # what the collector got is byte for byte what was written
    for path in delivered:
        assert path.read_bytes() == (folder / "outbox" / path.name).read_bytes()


def test_the_state_gets_each_reportable_fill_once_and_nothing_else(run):
    folder, _ = run
    records = []
    for path in (folder / demo.COLLECTOR_DIR).glob("*.dat"):
        records += [r for r in reader.read(path.read_bytes()).records() if r.patient.last_name]
    real = [r for r in records if r.patient.last_name != "REPORT"]  # zero reports aside
    by_rx = {r.fill.rx_number: r for r in real}
    assert len(by_rx) == len(real)  # no fill twice
    # captured: cash oxycodone, compound, gabapentin, the rebilled zolpidem, insured hydrocodone
    assert set(by_rx) == {"5000001", "5000003", "6000001", "6000005", "6000002"}
    assert by_rx["6000005"].fill.quantity == 28  # the rebill's quantity, not the first one's
    assert by_rx["6000002"].fill.payment_type == "04"  # insured
    assert by_rx["5000001"].fill.payment_type == "01"  # cash
    # the compound as Kentucky reports it: its one controlled ingredient alone
    assert by_rx["5000003"].fill.product_id == demo_claims.TESTOSTERONE_CYP
    assert by_rx["5000003"].fill.ingredients == ()
    zero = [r for r in records if r.patient.last_name == "REPORT"]
    assert len(zero) == 2  # Kentucky River Drug and Commonwealth #102 dispensed nothing


def test_store_holds_the_captures_and_no_certification_fill(run):
    folder, _ = run
    engine, sessions = _sessions(folder)
    try:
        with sessions() as s:
            fills = {f.rx_number: f for f in s.scalars(select(Fill))}
            routes = dict(s.execute(select(Claim.route, func.count()).group_by(Claim.route)).all())
            submissions = s.scalars(select(Submission)).all()
    finally:
        engine.dispose()
    assert fills["5000004"].state == "voided" and fills["5000004"].reported_status is None
    assert fills["6000005"].state == "revised"
    assert fills["5000009"].needs_report  # held back, waiting for a corrected claim
    assert "7000001" not in fills and "5000002" not in fills and "5000008" not in fills
    # an NDC newer than the directory: kept, unclassified, in no file
    newer = fills["5000010"]
    assert newer.unclassified and not newer.needs_report and newer.reported_status is None
    assert routes["certification"] == 1
    assert routes["cash"] == 12
    assert {s.state for s in submissions} == {"uploaded"}
    # the claims are dated the day the demo extracts
    assert {f.date_of_service for f in fills.values()} == {s.extract_date for s in submissions}


def test_folder_is_left_for_a_person(run):
    folder, _ = run
    for name in (demo.DB_FILE, demo.CONFIG_TOML, demo.MARKER):
        assert (folder / name).is_file(), name
    assert sorted(p.name for p in folder.glob("*.toml")) == [demo.CONFIG_TOML]  # one config
    assert list((folder / "keys").glob("*.pub"))
    # the config is real: the commands the report suggests work with it
    db = f"sqlite:///{folder / demo.DB_FILE}"
    status = _cli("status", "--db", db, "--config", str(folder / demo.CONFIG_TOML), "--csv")
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("uploaded") == 4
    from cashcapture.adapter import config
    from extract.settings import load as load_settings

    cfg = config.load(folder / demo.CONFIG_TOML)  # the adapter reads the same file
    assert [str(r) for r in cfg.certification] == [demo_claims.CERTIFICATION_ROUTE]
    assert cfg.db == db and len(cfg.payers) == 1
    settings = load_settings(folder / demo.CONFIG_TOML)
    assert settings.sftp.host == "127.0.0.1"
    assert settings.outbox_dir() == folder.resolve() / "outbox"


def test_profile_ky_2011_runs_the_41_pipeline(tmp_path):
    folder = tmp_path / "old"
    proc = _cli("demo", "--dir", str(folder), "--profile", "KY-2011")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "profile KY-2011, ASAP 4.1" in proc.stdout
    delivered = sorted((folder / demo.COLLECTOR_DIR).glob("*.dat"))
    assert len(delivered) == 4
    assert all(path.read_bytes().startswith(b"TH*4.1*") for path in delivered)
    check = _cli("validate", *map(str, delivered))
    assert check.returncode == 0 and check.stdout.count("Accept") == 4, check.stdout


@pytest.mark.skipif(GPG is None, reason="the gpg binary is not installed on this machine")
def test_package_pgp_files_decrypt_with_gpg_and_the_written_secret_key(tmp_path):
    folder = tmp_path / "pgp"
    proc = _cli("demo", "--dir", str(folder), "--package", "pgp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    secret = folder / "keys" / "collector-pgp-secret.asc"
    assert secret.stat().st_mode & 0o777 == 0o600
    delivered = sorted((folder / demo.COLLECTOR_DIR).iterdir())
    assert len(delivered) == 4 and all(p.name.endswith(".dat.pgp") for p in delivered)
    with gpg_home(tmp_path) as gpg:
        gpg("--import", str(secret))
        plains = {path.name: gpg("--decrypt", str(path)) for path in delivered}
    for path in delivered:
        plain = plains[path.name]
        assert plain.startswith(b"TH*4.2*")
        out = tmp_path / path.name.removesuffix(".pgp")
        out.write_bytes(plain)
        check = _cli("validate", str(out))
        assert check.returncode == 0 and "Accept" in check.stdout, check.stdout


def test_package_zip_files_unzip_to_valid_files(tmp_path):
    folder = tmp_path / "zip"
    proc = _cli("demo", "--dir", str(folder), "--package", "zip")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    delivered = sorted((folder / demo.COLLECTOR_DIR).iterdir())
    assert len(delivered) == 4 and all(p.suffix == ".zip" for p in delivered)
    for path in delivered:
        with zipfile.ZipFile(path) as z:
            [member] = z.namelist()
            assert member == path.stem + ".dat"
            (tmp_path / member).write_bytes(z.read(member))
        check = _cli("validate", str(tmp_path / member))
        assert check.returncode == 0 and "Accept" in check.stdout, check.stdout


def test_an_unknown_profile_is_one_line_before_anything_starts(tmp_path):
    proc = _cli("demo", "--dir", str(tmp_path / "x"), "--profile", "KY-1999")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown profile 'KY-1999'" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_rerun_starts_clean(tmp_path):
    folder = tmp_path / "again"
    first = demo.run(folder)
    assert first.ok
    stray = folder / "outbox" / "stray.txt"
    stray.write_text("left over")
    second = demo.run(folder)
    assert second.ok
    assert not stray.exists()
    assert sum(second.fills.values()) == sum(first.fills.values()) == 8
    assert second.unclassified == first.unclassified == 1
    assert len(list((folder / demo.COLLECTOR_DIR).glob("*.dat"))) == 4


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    proc = _cli("demo", "--dir", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "not made by the demo" in proc.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_message_lines_rejoin_continued_lines():
    req = ncpdp.parse(demo_claims.messages(dt.date(2025, 1, 15))["cash-controlled"])
    long = "PMP Patient Street Address PO Box not accepted, street address needed"
    resp = ncpdp.responses.rejected(req, [["CM"]], messages=[long, "second"])
    status = ncpdp.find(ncpdp.parse(ncpdp.build(resp)).transactions[0], "21")
    assert demo.message_lines(status) == (long, "second")


def test_simulated_payer_answers_paid_with_the_request_key():
    payer = demo.SimulatedPayer()
    data = demo_claims.messages(dt.date(2025, 1, 15))["insured-controlled"]
    answer = ncpdp.parse(payer.answer(data))
    status = ncpdp.find(answer.transactions[0], "21")
    assert status.get("AN") == "P"
    assert answer.header.service_provider_id == ncpdp.parse(data).header.service_provider_id


def _segments(data: bytes) -> list[list[str]]:
    """Independent of the project: split on the TH's separators, nothing else."""
    text = data.decode("latin-1")
    sep, term = text[2], text.rstrip("\r\n")[-1]  # TH*... and the last segment's end
    return [s.split(sep) for s in text.split(term) if s.strip()]


def test_compound_insured_and_zero_records_read_as_the_guide_says(run):
    """The project's reader and a plain split agree on what the state got."""
    folder, _ = run
    dsp_by_rx: dict[str, tuple[list[str], list[list[str]]]] = {}
    zero_files = 0
    for path in (folder / demo.COLLECTOR_DIR).glob("*.dat"):
        data = path.read_bytes()
        segs = _segments(data)
        ids = [s[0] for s in segs]
        assert segs[-1] == ["TT", segs[0][2], str(len(segs))]  # TT02 counts every segment
        for i, sid in enumerate(ids):
            if sid == "DSP":
                after = []
                for s in segs[i + 1 :]:
                    if s[0] in ("DSP", "PAT", "PHA", "TP"):
                        break
                    after.append(s)
                dsp_by_rx[segs[i][2]] = (segs[i], after)
            if sid == "TP":
                pha = max(j for j in range(i) if ids[j] == "PHA")
                assert segs[i] == ["TP", str(i - pha + 1)]
        if any(s[0] == "PAT" and s[7:9] == ["REPORT", "ZERO"] for s in segs):
            zero_files += 1
            assert all(len(s) >= 2 for s in segs)  # every segment has a separator
            assert ids[ids.index("DSP") + 1 : ids.index("DSP") + 4] == ["PRE", "CDI", "AIR"]
            assert b"PRE*~CDI*~AIR*~" in data
    assert zero_files == 2
    # compound: testosterone (CIII) in a cream base -> that product alone, DSP07 01
    dsp, after = dsp_by_rx["5000003"]
    assert (dsp[7], dsp[8]) == ("01", demo_claims.TESTOSTERONE_CYP)
    assert [s[0] for s in after] == ["PRE"]  # no CDI: one controlled ingredient
    # insured: the payer route's class (commercial, DSP16 04); cash: 01
    assert dsp_by_rx["6000002"][0][16] == "04" and dsp_by_rx["5000001"][0][16] == "01"
    # the project's reader says the same
    records = []
    for path in (folder / demo.COLLECTOR_DIR).glob("*.dat"):
        records += reader.read(path.read_bytes()).records()
    by_rx = {r.fill.rx_number: r.fill for r in records if r.fill.rx_number}
    compound = by_rx["5000003"]
    assert (compound.product_qualifier, compound.product_id, compound.ingredients) == (
        "01",
        demo_claims.TESTOSTERONE_CYP,
        (),
    )
    assert by_rx["6000002"].payment_type == "04"
