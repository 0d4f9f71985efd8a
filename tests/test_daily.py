"""The daily extract over a real store (SQLite and PostgreSQL), real files, real SFTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from _extract_helpers import (
    COMPOUND,
    TODAY,
    check_file,
    good_fill,
    pharmacies,
    sessions,  # noqa: F401
    settings,
)
from _sftp_server import remote_files, sftp_server, sftp_settings  # noqa: F401
from _store_helpers import revise_fill, void_fill
from sqlalchemy import func, select

from cashcapture.core.pharmacies import file_name_part_ok
from cashcapture.core.pmp.filenames import file_name
from cashcapture.core.store import (
    Fill,
    Pharmacy,
    RecordReject,
    Submission,
    SubmissionRecord,
)
from extract import reports
from extract.daily import Checker, extract
from extract.reader import read
from extract.submit import submit

NOW = dt.datetime.now(dt.UTC)


def statuses(data: bytes) -> dict[str, str]:
    """Rx number -> DSP01 of every record in a file."""
    return {r.fill.rx_number: r.fill.status for r in read(data).records()}


def files_by_submitter(result) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in result.files:
        out.setdefault(f.submitter_id, []).append(f)
    return out


def test_a_day_then_rebills_and_reversals_of_earlier_days(sessions, sftp_server, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        a1 = good_fill(s, ph["solo"], "A1").id
        a2 = good_fill(s, ph["solo"], "A2", ingredients=COMPOUND).id
        good_fill(s, ph["solo"], "A3", fill_number=2)
        gone = good_fill(s, ph["solo"], "A4")
        void_fill(s, gone)  # reversed before it was ever reported: just dropped
        bad = good_fill(s, ph["solo"], "A5", ndc="00000000000").id  # not a controlled drug
        c1 = good_fill(s, ph["chain1"], "C1").id
        good_fill(s, ph["chain1"], "C2", patient_last_name="ROE", patient_id="K7")
        good_fill(s, ph["chain2"], "C3")
    cfg = settings(tmp_path, sftp_settings(sftp_server))
    first = extract(sessions, cfg, TODAY, now=NOW)
    by = files_by_submitter(first)
    assert sorted(by) == ["BB4827133", "CWDRUGS", "FP1234563"]
    assert first.rejected == 1 and first.problems == []
    solo, chain, zero = by["FP1234563"][0], by["CWDRUGS"][0], by["BB4827133"][0]
    assert (solo.records, solo.held_back, solo.status) == (3, 1, "Accept")
    assert (chain.records, chain.pharmacies) == (3, 2)
    assert zero.zero_report and zero.records == 0
    outbox = cfg.outbox_dir()
    for f in first.files:
        data = (outbox / f.name).read_bytes()
        report = check_file(data)
        assert report.status == "Accept" and report.rejects == [], report.to_text()
    solo_data = (outbox / solo.name).read_bytes()
    assert statuses(solo_data) == {"A1": "00", "A2": "00", "A3": "00"}
    # Kentucky: the first controlled ingredient is the product, the next one CDI 1
    [compound] = [r.fill for r in read(solo_data).records() if r.fill.rx_number == "A2"]
    assert (compound.product_qualifier, compound.product_id) == ("01", "00406052362")
    assert [(i.sequence, i.product_id, i.quantity) for i in compound.ingredients] == [
        ("1", "00406052362", Decimal("5.5"))
    ]
    assert b"CDI*1*01*00406052362*5.5" in solo_data and b"CDI*2" not in solo_data
    chain_file = read((outbox / chain.name).read_bytes())
    assert [g.pharmacy.dea for g in chain_file.pharmacies] == ["BC7710420", "BC7710432"]
    assert b"REPORT*ZERO" in (outbox / zero.name).read_bytes()
    with sessions() as s:
        reject = s.scalars(select(RecordReject)).one()
        assert reject.fill_id == bad and reject.resolved_at is None
        assert reject.message == "DIS_PRODUCT_ID : NDC Number is not in State specified Drug List"

    # The same day again: nothing twice, no second zero report, the reject not listed twice.
    again = extract(sessions, cfg, TODAY, now=NOW)
    assert again.files == [] and again.rejected == 1
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(RecordReject)) == 1

    assert submit(sessions, cfg).ok
    assert remote_files(sftp_server) == sorted(f.name for f in first.files)

    # Later: a rebill of A1 and a reversal of C1 (both reported), and the bad fill corrected.
    with sessions.begin() as s:
        revise_fill(s, s.get_one(Fill, a1), {"quantity": 60})
        void_fill(s, s.get_one(Fill, c1))
        revise_fill(s, s.get_one(Fill, bad), {"ndc": "00406052362"})
    later = extract(sessions, cfg, TODAY, now=NOW + dt.timedelta(seconds=5))
    by = files_by_submitter(later)
    assert sorted(by) == ["CWDRUGS", "FP1234563"]  # the quiet store's zero report went already
    assert statuses((outbox / by["FP1234563"][0].name).read_bytes()) == {"A1": "01", "A5": "00"}
    assert statuses((outbox / by["CWDRUGS"][0].name).read_bytes()) == {"C1": "02"}
    for f in later.files:
        assert check_file((outbox / f.name).read_bytes()).status == "Accept"
    with sessions() as s:
        assert s.scalars(select(RecordReject)).one().resolved_at is not None
    assert submit(sessions, cfg).ok
    on_server = remote_files(sftp_server)
    assert len(on_server) == 5 and len(set(on_server)) == 5
    with sessions() as s:
        assert s.scalar(select(func.count()).where(Fill.needs_report.is_(True))) == 0
        assert s.get_one(Fill, a2).reported_status == "00"
        assert s.get_one(Fill, c1).reported_status == "02"
        # every fill went in exactly as many records as it had reports
        per_fill = dict(
            s.execute(
                select(SubmissionRecord.fill_id, func.count()).group_by(SubmissionRecord.fill_id)
            ).all()
        )
        assert per_fill[a1] == 2 and per_fill[a2] == 1 and per_fill[c1] == 2 and per_fill[bad] == 1
        assert gone.id not in per_fill

        zone = cfg.extract.zone()
        status = reports.status(s, TODAY, NOW.date() + dt.timedelta(days=1), zone)
        assert len(status.rows) == 5
        row = {r[2]: r for r in status.rows}[solo.name]
        # 3 records in the file as `validate` counts it; the held-back one is in `rejects`
        assert row[5:8] == (3, 3, "Accept") and row[3] == row[4] == str(TODAY - dt.timedelta(1))
        assert row[0] == str(NOW.date())  # submitted
        recap = reports.recap(s, NOW.strftime("%Y-%m"), zone)
        assert recap.columns[0] == "DEANumber"
        per_dea: dict[str, int] = {}
        for dea, _p, _s, n, lo, hi, name, counted_by in recap.rows:
            assert counted_by == "checked here"  # nothing recorded from the state
            per_dea[dea] = per_dea.get(dea, 0) + n
            assert lo <= hi and name in on_server
        assert per_dea == {"FP1234563": 5, "BC7710420": 3, "BC7710432": 1, "BB4827133": 0}
        csv_text = reports.to_csv(recap)
        assert csv_text.splitlines()[0] == (
            "DEANumber,ProcessDate,SubmissionDate,RecordCount,MinFillDate,MaxFillDate,"
            "ProcessFileName,Counted By"
        )


def test_fills_changed_after_the_day_wait_for_their_day(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1")
    cfg = settings(tmp_path)
    yesterday = extract(sessions, cfg, TODAY - dt.timedelta(days=1), now=NOW)
    # captured today: not part of yesterday; the solo store dispensed, so no zero report
    assert [f.submitter_id for f in yesterday.files if not f.zero_report] == []
    assert "FP1234563" not in {f.submitter_id for f in yesterday.files}
    today = extract(sessions, cfg, TODAY, now=NOW)
    assert [f.records for f in today.files if f.submitter_id == "FP1234563"] == [1]


def test_weekly_zero_reports_only_at_week_end(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        pharmacies(s)
    week_ends = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    other = week_ends[(TODAY.weekday() + 1) % 7]
    none = extract(sessions, settings(tmp_path, zero_reports="weekly", week_ends=other), TODAY)
    assert none.files == []
    cfg = settings(tmp_path, zero_reports="weekly", week_ends=week_ends[TODAY.weekday()])
    result = extract(sessions, cfg, TODAY, now=NOW)
    assert len(result.files) == 4 and all(f.zero_report for f in result.files)
    data = (cfg.outbox_dir() / result.files[0].name).read_bytes()
    start = (TODAY - dt.timedelta(days=6)).strftime("%Y%m%d")
    assert f"#{start}#-#{TODAY:%Y%m%d}#".encode() in data
    assert check_file(data).status == "Accept"
    # chain stores each get their own zero report, named apart by the second
    chain = sorted(f.name for f in result.files if f.submitter_id == "CWDRUGS")
    assert len(chain) == 2 and chain[0] != chain[1]
    assert extract(sessions, cfg, TODAY, now=NOW).files == []  # not twice


class _BrokenFiles(Checker):
    """The real validator, handed a file cut short: a file-level error."""

    def file(self, data: bytes):
        return super().file(data[:-12])


def test_a_file_with_a_file_level_error_is_never_submitted(sessions, sftp_server, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        fid = good_fill(s, ph["solo"], "A1").id
    cfg = settings(tmp_path, sftp_settings(sftp_server), zero_reports="off")
    broken = _BrokenFiles(cfg.extract.rules(), TODAY)
    result = extract(sessions, cfg, TODAY, now=NOW, checker=broken)
    assert [f.status for f in result.files] == ["File Failed"]
    assert result.files[0].errors[0].startswith("File Failed")
    submit(sessions, cfg)
    assert remote_files(sftp_server) == []
    with sessions() as s:
        sub = s.scalars(select(Submission)).one()
        assert (sub.state, sub.collector_status) == ("failed", "File Failed")
        assert s.get_one(Fill, fid).needs_report
        row = reports.status(s, TODAY, NOW.date(), cfg.extract.zone()).rows[0]
        assert row[0] == "" and row[7] == "File Failed"
    # the fill is still queued and goes out in the next good file
    fixed = extract(sessions, cfg, TODAY, now=NOW + dt.timedelta(seconds=1))
    assert [(f.status, f.records) for f in fixed.files] == [("Accept", 1)]
    assert submit(sessions, cfg).ok and len(remote_files(sftp_server)) == 1


def test_missing_reg_key_is_reported_and_fills_stay_queued(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        s.get_one(Pharmacy, ph["solo"]).reg_key = None
        fid = good_fill(s, ph["solo"], "A1").id
    result = extract(sessions, settings(tmp_path, zero_reports="off"), TODAY, now=NOW)
    assert result.files == []
    assert any("FP1234563" in p and "RegKey" in p for p in result.problems)
    with sessions() as s:
        assert s.get_one(Fill, fid).needs_report


def test_worker_processes_make_the_same_files(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        for i in range(5):
            good_fill(s, ph["solo"], f"A{i}")
            good_fill(s, ph["chain2"], f"C{i}")
    cfg = settings(tmp_path)
    result = extract(sessions, cfg, TODAY, now=NOW, workers=2)
    counts = sorted((f.submitter_id, f.records, f.zero_report) for f in result.files)
    assert counts == [
        ("BB4827133", 0, True),
        ("CWDRUGS", 0, True),  # chain store 101 dispensed nothing
        ("CWDRUGS", 5, False),
        ("FP1234563", 5, False),
    ]
    for f in result.files:
        assert check_file((cfg.outbox_dir() / f.name).read_bytes()).status == "Accept"
    assert extract(sessions, cfg, TODAY, now=NOW, workers=2).files == []


def test_big_queues_stream_through_a_server_side_cursor(sessions, tmp_path, monkeypatch):  # noqa: F811
    from extract import selection

    monkeypatch.setattr(selection, "YIELD_PER", 3)  # a "big" queue: more than 3 fills
    with sessions.begin() as s:
        ph = pharmacies(s)
        for i in range(7):
            good_fill(s, ph["solo"], f"A{i}", patient_id=f"K{i % 3}")
    cfg = settings(tmp_path, zero_reports="off")
    result = extract(sessions, cfg, TODAY, now=NOW)
    assert [(f.records, f.status) for f in result.files] == [(7, "Accept")]
    parsed = read((cfg.outbox_dir() / result.files[0].name).read_bytes())
    assert len(parsed.pharmacies[0].patients) == 3  # a patient's fills under one PAT


@pytest.mark.parametrize("value", ["É9004", "9004²", "٣", "Ａ1", "", "AB_1", "A B"])
def test_file_name_parts_are_ascii_letters_and_digits_only(value):
    """A state collector's file name is ASCII: "É" or "²" pass str.isalnum but not here."""
    when = dt.datetime(2025, 1, 15, 8, 30)
    for parts in ((value, "9004", "KY"), ("FP1234563", value, "KY"), ("FP1234563", "9004", value)):
        with pytest.raises(ValueError, match="must be non-empty ASCII letters and digits"):
            file_name(*parts[:2], when, parts[2])
    assert not file_name_part_ok(value)  # the pharmacy registry asks file_name, so it follows
    assert file_name("fp1234563", "Z9", when) == "PMP_KY_fp1234563_Z9_20250115083000.dat"


@pytest.mark.parametrize("version", ["4.1", "4.2A"])
def test_rows_encode_as_the_values_they_would_build(version):
    """The extract encodes rows straight to elements: the same strings as the values give."""
    from decimal import Decimal

    from cashcapture.core.pmp import fillrecord
    from cashcapture.core.pmp.asap import table
    from cashcapture.core.pmp.asap.codec import encode, row_encoder
    from cashcapture.core.pmp.records import Dispensation, Patient
    from extract.selection import DSP_NAMES, PAT_NAMES

    t = table(version)
    dsp = row_encoder(t, "DSP", (*DSP_NAMES, "status", "fill_number"), Dispensation())
    pat = row_encoder(t, "PAT", PAT_NAMES, Patient())
    day = dt.date(2025, 1, 14)
    blocks = [
        ("RX1", day, "2", day, "01", "00406052362", Decimal("30.50"), "15", "", "", "", "", "01"),
        ("RX2", None, "", day, "06", None, Decimal("7"), "", "01", "5", "P", "1234567893", ""),
        ("", None, "", None, "", "", None, "", "", "", "", "", ""),
    ]
    for block in blocks:
        for status, number in (("00", 0), ("02", 12)):
            pre = fillrecord.prescriber_value(("",) * 4)
            want = fillrecord.dispensation_value(block, status, number, pre)
            code = fillrecord.fill_number_code(number)
            assert dsp((*block, status, code)) == encode(t, "DSP", want)
    people = [
        ("KY", "06", "K1", "DOE", "JANE", "", "1 ELM", "", "LEX", "KY", "40507", "", day, "F")
        + ("01", ""),
        ("",) * 12 + (None,) + ("",) * 3,
    ]
    for values in people:
        assert pat(values) == encode(t, "PAT", fillrecord.patient_value(values))


def test_a_deactivated_pharmacy_sends_its_queue_but_no_zero_reports(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1")
        for name in ("solo", "quiet"):
            s.get_one(Pharmacy, ph[name]).active = False
    cfg = settings(tmp_path, zero_reports="daily")
    result = extract(sessions, cfg, TODAY, now=NOW)
    by_group = {f.name.split("_")[2]: f for f in result.files}
    assert by_group["FP1234563"].records == 1  # queued before it was deactivated: still goes
    assert "BB4827133" not in by_group  # inactive and quiet: no zero report
    assert by_group["CWDRUGS"].zero_report  # the active ones still owe theirs
    again = extract(sessions, cfg, TODAY + dt.timedelta(days=1), now=NOW + dt.timedelta(days=1))
    assert not any("FP1234563" in f.name or "BB4827133" in f.name for f in again.files)


def test_status_counts_records_as_validate_does(sessions, tmp_path):  # noqa: F811
    """Zero reports count one record, held-back records none: as `validate` says."""
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "V1")
        good_fill(s, ph["solo"], "V2", ndc="00000000000")  # held back: not on the drug list
    cfg = settings(tmp_path)
    result = extract(sessions, cfg, TODAY, now=NOW)
    assert result.rejected == 1
    with sessions() as s:
        subs = s.scalars(select(Submission)).all()
        assert any(sub.zero_report for sub in subs) and len(subs) >= 2
        for sub in subs:
            report = check_file(sub.content)
            counted = (sub.record_count, sub.valid_record_count)
            assert counted == (report.records, report.valid_records), sub.file_name
        solo = next(sub for sub in subs if not sub.zero_report)
        assert (solo.record_count, solo.valid_record_count) == (1, 1)
