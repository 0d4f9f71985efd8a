"""State profiles: shipped as data, chosen in the config, driving version, rules,
zero reports, file names and deadlines; `profiles list/show`; `validate` by TH01."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import replace

import pytest
from _extract_helpers import TODAY, check_file, good_fill, pharmacies, sessions, settings  # noqa: F401

import cli
from cashcapture.core import profiles
from cashcapture.core.pmp.asap.samples import header, records
from cashcapture.core.pmp.rules.ky import KY, KY_2011
from extract.daily import extract
from extract.reader import read
from extract.settings import SettingsError, check
from extract.writer import write_records

NOW = dt.datetime.now(dt.UTC)


def test_shipped_profiles_load_and_name_their_tables():
    assert profiles.names() == ["ASAP-4.2A", "KY", "KY-2011"]
    ky, old, generic = (profiles.load(n) for n in ("KY", "KY-2011", "ASAP-4.2A"))
    assert (ky.state, ky.asap_version, ky.rules().version, ky.rules().ssn) == (
        "KY",
        "4.2",
        "4.2",
        "ssa",
    )
    assert (old.asap_version, old.rules().version, old.rules().ssn) == ("4.1", "4.1", "2011")
    assert old.zero_reports == "weekly" and ky.zero_reports == "daily"
    assert generic.state == "" and generic.rules("OH").state == "OH"
    assert generic.folder("/upload", "OH") == "/upload/OH" and ky.folder("/in", "KY") == "/in"
    assert "not found" in profiles.text("KY")  # what the sources do not give is said so


def test_a_wrong_profile_is_one_line(monkeypatch):
    with pytest.raises(profiles.ProfileError, match="unknown profile 'XX'; known: ASAP-4.2A, KY"):
        profiles.load("XX")
    bad = replace(profiles.load("KY"), revisions="03")
    with pytest.raises(profiles.ProfileError, match="revisions must be one of 01, void"):
        profiles.check(bad)
    with pytest.raises(profiles.ProfileError, match="file_name: bad pattern"):
        profiles.check(replace(bad, revisions="01", file_name="PMP_{dea}.dat"))


def test_deadlines_skip_weekends_and_the_states_holidays():
    ky, old = profiles.load("KY"), profiles.load("KY-2011")
    # Thursday 24 Dec 2026: Christmas (Friday) and the weekend pass -> Monday 28th
    assert ky.deadline(dt.date(2026, 12, 24)) == dt.date(2026, 12, 28)
    assert ky.deadline(dt.date(2026, 12, 22)) == dt.date(2026, 12, 23)
    assert ky.deadline(dt.date(2026, 12, 26)) == dt.date(2026, 12, 28)  # dispensed on a Saturday
    assert old.deadline(dt.date(2026, 12, 24)) == dt.date(2026, 12, 31)  # seven calendar days


def test_cli_profiles_list_and_show(capsys):
    assert cli.main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert "KY-2011" in out and "4.2A" in out and "1 business day" in out
    assert cli.main(["profiles", "show", "KY-2011"]) == 0
    assert 'asap_version = "4.1"' in capsys.readouterr().out
    assert cli.main(["profiles", "show", "NOPE"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown profile 'NOPE'" in err[0]


@pytest.mark.parametrize(
    "extract, message",
    [
        ({"profile": "KY-2020"}, "[extract] profile: unknown profile 'KY-2020'"),
        ({"profile": "ASAP-4.2A"}, "[extract] state: profile ASAP-4.2A serves any state"),
        ({"state": "OH"}, "[extract] state OH: profile KY reports to KY"),
        ({"asap_version": "4.1"}, "[extract] asap_version 4.1: profile KY reports ASAP 4.2"),
        ({"file_name": "{nope}.dat"}, "[extract] file_name: bad pattern"),
    ],
)
def test_settings_that_do_not_fit_the_profile_are_refused(tmp_path, extract, message):
    with pytest.raises(SettingsError) as err:
        check(settings(tmp_path, **extract))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_profile_asking_void_plus_new_is_refused_not_half_served(tmp_path, monkeypatch):
    real = profiles.load

    def load(name):
        return replace(real("KY"), revisions="void+new") if name == "KY" else real(name)

    monkeypatch.setattr(profiles, "load", load)
    with pytest.raises(SettingsError, match="revisions 'void\\+new' .* is not built yet"):
        check(settings(tmp_path))


def test_the_generic_profile_takes_the_state_and_zone_from_the_config(tmp_path):
    with pytest.raises(SettingsError, match="timezone: profile ASAP-4.2A has none"):
        check(settings(tmp_path, profile="ASAP-4.2A", state="OH", timezone=""))
    ex = check(
        settings(tmp_path, profile="ASAP-4.2A", state="OH", timezone="America/New_York")
    ).extract
    assert (ex.report_state, ex.version, ex.rules().state, ex.cadence) == (
        "OH",
        "4.2A",
        "OH",
        "daily",
    )


def test_default_profile_writes_asap_42_files_that_validate(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1", partial_fill="02")  # not a partial fill, as captured
    result = extract(sessions, settings(tmp_path, zero_reports="off"), TODAY, now=NOW)
    [f] = result.files
    data = (tmp_path / "outbox" / f.name).read_bytes()
    assert data.startswith(b"TH*4.2*") and check_file(data).status == "Accept"
    [dsp] = [s for s in data.split(b"~") if s.startswith(b"DSP")]
    assert dsp.split(b"*")[13] == b"00"  # 4.2: 00 = not a partial fill (4.1 wrote 02)


@pytest.mark.parametrize(
    ("profile", "codes"),
    [("KY", [b"01", b"02", b"03", b"00"]), ("KY-2011", [b"01", b"01", b"01", b"02"])],
)
def test_dsp13_numbers_each_partial_fill_from_42_on(sessions, tmp_path, profile, codes):  # noqa: F811
    """A prescription dispensed in three partial fills (343-HD P, P, then C): ASAP 4.2
    numbers them 01, 02, 03 by date filled; 4.1 only says each is partial (01)."""
    day = TODAY - dt.timedelta(days=1)
    with sessions.begin() as s:
        ph = pharmacies(s)
        for back in (2, 1, 0):  # one Rx and refill, keyed apart by date filled
            when = day - dt.timedelta(days=back)
            good_fill(s, ph["solo"], "7001", partial_fill="01", date_of_service=when)
        good_fill(s, ph["solo"], "7002", partial_fill="02", date_of_service=day)
        # an earlier partial that was reversed, and one waiting to be classified: neither
        # is counted (reported as a void or nothing, they are no partial the state holds)
        early = day - dt.timedelta(days=3)
        good_fill(s, ph["solo"], "7001", partial_fill="01", date_of_service=early).state = "voided"
        waiting = good_fill(
            s, ph["solo"], "7001", partial_fill="01", date_of_service=early - dt.timedelta(days=1)
        )
        waiting.unclassified, waiting.needs_report = True, False
    result = extract(sessions, settings(tmp_path, profile=profile, zero_reports="off"), TODAY)
    [f] = result.files
    data = (tmp_path / "outbox" / f.name).read_bytes()
    if profile == "KY":  # the shared validator's KY rules are 4.2's
        assert check_file(data).status == "Accept"
    dsps = sorted(
        (d.split(b"*")[5], d.split(b"*")[2], d.split(b"*")[13])  # date filled, Rx, DSP13
        for d in data.split(b"~")
        if d.startswith(b"DSP")
    )
    by_rx = [code for _, rx, code in sorted(dsps, key=lambda t: (t[1], t[0]))]
    assert by_rx == codes


def test_profile_ky_2011_writes_41_with_weekly_zero_reports(sessions, tmp_path):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1", partial_fill="02")
    cfg = settings(tmp_path, profile="KY-2011")
    result = extract(sessions, cfg, TODAY, now=NOW)
    solo = [f for f in result.files if not f.zero_report]
    data = (tmp_path / "outbox" / solo[0].name).read_bytes()
    assert data.startswith(b"TH*4.1*")
    [dsp] = [s for s in data.split(b"~") if s.startswith(b"DSP")]
    assert dsp.split(b"*")[13] == b"02"
    zero = [f for f in result.files if f.zero_report]
    week_end = TODAY.weekday() == 5  # weekly zero reports: the week ending Saturday
    assert bool(zero) is week_end


def _file(version: str, street: str) -> bytes:
    recs = [replace(r, patient=replace(r.patient, address1=street)) for r in records(1, 1)]
    buf = io.BytesIO()
    write_records(buf, replace(header(), version=version), recs)
    return buf.getvalue()


def test_validate_judges_a_file_by_its_th01_version(tmp_path, capsys):
    street = "1234 LONG MEADOWBROOK PARKWAY APT9"[:33]  # 33: fits 4.2's 35, not 4.1's 30
    for version, ok in (("4.2", True), ("4.1", False)):
        path = tmp_path / f"v{version}.dat"
        path.write_bytes(_file(version, street))
        assert read(path.read_bytes()).header.version == version
        rc = cli.main(["validate", "--no-drug-list", "--today", "2024-03-05", str(path)])
        out = capsys.readouterr().out
        assert (rc == 0) is ok, out
        assert ("Maximum Length (30)" in out) is (not ok)
    assert KY.version == "4.2" and KY_2011.version == "4.1"


def test_validate_names_no_profile_for_a_version_the_state_does_not_take(tmp_path, capsys):
    path = tmp_path / "oh.dat"
    path.write_bytes(_file("4.1", "1 MAIN ST"))
    assert cli.main(["validate", "--state", "OH", str(path)]) == 2
    assert "no profile judges ASAP 4.1 files for OH" in capsys.readouterr().err
