# ruff: noqa: F811
"""Several states: a mail-order fill to a resident of another state where the pharmacy
is registered goes to both states' PMPs, each in its profile's format and folder,
once; a fill to a state where the pharmacy is not registered goes only home."""

from __future__ import annotations

import datetime as dt

from _extract_helpers import TODAY, good_fill, pharmacies, sessions  # noqa: F401
from _sftp_server import sftp_server  # noqa: F401
from freezegun import freeze_time
from sqlalchemy import select, update

import cli
from cashcapture.core.store import Fill, Pharmacy, Submission
from cashcapture.core.store.models import FillReport


def _setup(sessions, tmp_path, sftp_server, migrated_db_url, capsys):
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "M1", patient_state="OH", patient_zip="43215", service_type="05")
        good_fill(s, ph["solo"], "H1")  # a Kentucky resident: home only
        good_fill(s, ph["chain1"], "C1", patient_state="OH", patient_zip="43215", service_type="05")
    db = ["--db", migrated_db_url]
    assert (
        cli.main(
            ["pharmacy", "register", "FP1234563", "--state", "OH", "--submitter-id", "OHSUB1",
             "--reg-key", "OHKEY9", *db]
        )
        == 0
    )  # fmt: skip
    assert "registered with the OH PMP" in capsys.readouterr().out
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        '[extract]\ntimezone = "UTC"\nzero_reports = "off"\n\n'
        + sftp_server.info.toml()
        + '\n[states]\nOH = "ASAP-4.2A"\n'
    )
    (sftp_server.root / "OH").mkdir()  # the clearinghouse's folder for Ohio
    return [*db, "--config", str(cfg)]


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _dsp(data: bytes) -> list[list[bytes]]:
    return [seg.split(b"*") for seg in data.split(b"~") if seg.startswith(b"DSP")]


def test_a_mail_order_fill_goes_to_both_states_once(
    sessions, tmp_path, sftp_server, migrated_db_url, capsys
):
    args = _setup(sessions, tmp_path, sftp_server, migrated_db_url, capsys)
    code = cli.main(["run-daily", "--date", TODAY.isoformat(), *args])
    out, err = capsys.readouterr()
    if code:
        cli.main(["rejects", *args])
        out += capsys.readouterr().out
    assert code == 0, out + err
    files = _files(sftp_server.root)
    ohio = [f for f in files if f.startswith("OH/")]
    home = [f for f in files if "/" not in f]
    assert len(ohio) == 1 and len(home) == 2  # solo's and the chain's Kentucky files
    # Ohio: only the mail-order fill of the pharmacy registered there, as Ohio knows it
    name = ohio[0]
    assert name.startswith("OH/PMP_OH_OHSUB1_OHKEY9_")
    data = (sftp_server.root / name).read_bytes()
    assert data.startswith(b"TH*4.2A*")
    assert [d[2] for d in _dsp(data)] == [b"M1"] and _dsp(data)[0][1] == b"00"
    check = tmp_path / "oh.dat"
    check.write_bytes(data)
    assert cli.main(["validate", "--state", "OH", "--no-drug-list", str(check)]) == 0
    assert "Accept" in capsys.readouterr().out
    # Kentucky gets every fill of its pharmacies, Ohio residents' too
    rx_home = sorted(d[2] for f in home for d in _dsp((sftp_server.root / f).read_bytes()))
    assert rx_home == [b"C1", b"H1", b"M1"]
    with sessions() as s:
        [held] = s.scalars(select(FillReport)).all()
        assert (held.state, held.reported_status) == ("OH", "00")
        m1 = s.scalars(select(Fill).where(Fill.rx_number == "M1")).one()
        assert held.fill_id == m1.id and not m1.needs_report and m1.reported_status == "00"
        states = sorted(sub.pmp_state for sub in s.scalars(select(Submission)))
        assert states == ["KY", "KY", "OH"]

    # the operator sees which state each file went to
    assert cli.main(["status", "--csv", *args]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].endswith(",PMP") and sorted(r.rsplit(",", 1)[1] for r in status[1:]) == [
        "KY",
        "KY",
        "OH",
    ]

    # a second run sends nothing to either state
    assert cli.main(["run-daily", "--date", TODAY.isoformat(), *args]) == 0
    capsys.readouterr()
    assert _files(sftp_server.root) == files

    # the fill is revised: each state gets the revision once
    with sessions.begin() as s:
        s.execute(
            update(Fill)
            .where(Fill.rx_number == "M1")
            .values(quantity=45, version=Fill.version + 1, needs_report=True)
        )
    assert cli.main(["run-daily", "--date", TODAY.isoformat(), *args]) == 0
    capsys.readouterr()
    new = sorted(set(_files(sftp_server.root)) - set(files))
    assert len(new) == 2 and sum(f.startswith("OH/") for f in new) == 1
    for f in new:
        [dsp] = _dsp((sftp_server.root / f).read_bytes())
        assert (dsp[1], dsp[2]) == (b"01", b"M1")
    assert cli.main(["run-daily", "--date", TODAY.isoformat(), *args]) == 0
    capsys.readouterr()
    assert len(_files(sftp_server.root)) == len(files) + 2


def test_one_state_refused_does_not_stop_the_other(
    sessions, tmp_path, sftp_server, migrated_db_url, capsys
):
    args = _setup(sessions, tmp_path, sftp_server, migrated_db_url, capsys)
    cfg = args[-1]
    # Ohio's collector is pinned to another key (a changed host key): refused, Kentucky goes
    wrong = " ".join(open(f"{sftp_server.info.client_key}.pub").read().split()[:2])
    ohio = f'OH = {{ profile = "ASAP-4.2A", host_key = "{wrong}" }}'
    text = open(cfg).read().replace('OH = "ASAP-4.2A"', ohio)
    open(cfg, "w").write(text)
    code = cli.main(["run-daily", "--date", TODAY.isoformat(), *args])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "OH: host key of 127.0.0.1" in err
    files = _files(sftp_server.root)
    assert len(files) == 2 and not any(f.startswith("OH/") for f in files)  # Kentucky went
    with sessions() as s:
        oh = s.scalars(select(Submission).where(Submission.pmp_state == "OH")).one()
        assert oh.state in ("written", "uploading")  # still queued, never marked delivered
    # ten days on, Ohio's undelivered fill is late under Ohio's deadline; Kentucky's are not
    with freeze_time(dt.datetime.now(dt.UTC) + dt.timedelta(days=10)):
        assert cli.main(["status", "--csv", *args]) == 0
    err = capsys.readouterr().err
    assert "late: 1 fill past the reporting deadline" in err
    # the key fixed, the next run delivers Ohio's file, once
    open(cfg, "w").write(text.replace(ohio, 'OH = "ASAP-4.2A"'))
    assert cli.main(["submit", *args]) == 0
    capsys.readouterr()
    after = _files(sftp_server.root)
    assert [f for f in after if f.startswith("OH/")] == [f"OH/{oh.file_name}"]


def test_a_pharmacy_of_a_state_nobody_reports_to_is_said_every_run(
    sessions, tmp_path, sftp_server, migrated_db_url, capsys
):
    with sessions.begin() as s:
        ph = pharmacies(s)
        s.execute(update(Pharmacy).where(Pharmacy.id == ph["quiet"]).values(state="TN"))
        good_fill(s, ph["quiet"], "T1")
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        '[extract]\ntimezone = "UTC"\nzero_reports = "off"\n\n' + sftp_server.info.toml()
    )
    args = ["--db", migrated_db_url, "--config", str(cfg)]
    for _ in range(2):
        assert cli.main(["run-daily", "--date", TODAY.isoformat(), *args]) == 1
        err = capsys.readouterr().err
        assert "pharmacy BB4827133 (TN): 1 fills queued, no profile reports to TN" in err
    with sessions() as s:
        assert s.scalars(select(Fill).where(Fill.rx_number == "T1")).one().needs_report
