"""Certification: findings per PMP field, the counter's answer, the ASAP record, HTML, CLI,
and the certification BIN over real TCP (answered, never captured, never reported)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

import ncpdp
from cashcapture.adapter import config
from cashcapture.adapter.server import AdapterServer
from cashcapture.app import certify, demo, demo_claims
from cashcapture.core import drugs
from cashcapture.core.store import Claim, Fill, make_engine, session_factory, upgrade
from cli import main

DAY = dt.date(2025, 1, 15)
TODAY = dt.date(2025, 1, 20)
DRUGS = drugs.load("KY")
ROOT = Path(__file__).resolve().parents[1]


def schedule_of(ndc: str) -> str | None:
    drug = DRUGS.lookup(ndc)
    return drug.schedule if drug is not None else None


def claim(name: str = "cash-controlled", drop: dict[str, set[str]] | None = None, **set_):
    """A demo claim with fields dropped ({segment: {codes}}) or replaced ({code: raw})."""
    request = ncpdp.parse(demo_claims.messages(DAY)[name])
    for seg in [*request.segments, *request.transactions[0]]:
        gone = (drop or {}).get(seg.id, set())
        seg.fields = [(c, set_.get(c, v)) for c, v in seg.fields if c not in gone]
    return ncpdp.build(request)


def run(data: bytes, source: str = "claim.dat") -> certify.ClaimFindings:
    return certify.certify(data, source, schedule_of=schedule_of, today=TODAY, drug_list=DRUGS)


def by_code(findings: certify.ClaimFindings) -> dict[str, certify.FieldFinding]:
    return {f.code: f for f in findings.transactions[0].fields}


# What the NCPDP D.0 standard and ASAP 4.1 say, written out independently of the tables.
INCOMPLETE = {
    # code: (NCPDP field ID, field name, ASAP element, KY element name, reject code)
    "C4": ("304-C4", "Date Of Birth", "PAT18", "PAT_DOB", "09"),
    "C5": ("305-C5", "Patient Gender Code", "PAT19", "PAT_GENDER", "10"),
    "CM": ("322-CM", "Patient Street Address", "PAT12", "PAT_PATIENT_ADDRESS_1", "CM"),
    "D5": ("405-D5", "Days Supply", "DSP10", "DIS_DAYS_SUPPLY", "19"),
    "DB": ("411-DB", "Prescriber ID", "PRE02", "PRE_PRESCRIBER_DEA_NUMBER", "25"),
    "EZ": ("466-EZ", "Prescriber ID Qualifier", "", "", "EZ"),
}
DROPPED = {"01": {"C4", "C5", "CM"}, "07": {"D5"}, "03": {"EZ", "DB"}}


def test_incomplete_claim_names_each_missing_field():
    found = run(claim(drop=DROPPED))
    fields = by_code(found)
    for code, (field_id, name, asap, state_name, reject) in INCOMPLETE.items():
        f = fields[code]
        assert (f.status, f.field_id, f.name, f.asap, f.asap_name, f.reject) == (
            "missing", field_id, name, asap, state_name, reject,
        ), code  # fmt: skip
    others = {c: f.status for c, f in fields.items() if c not in INCOMPLETE and f.required}
    assert set(others.values()) == {"present"}, others
    assert not found.ready
    t = found.transactions[0]
    # the counter names every gap at once: codec (days supply, prescriber) and PMP ones
    assert t.counter_status == "R" and len(t.counter_rejects) == 5
    assert set(t.counter_rejects) < {r for *_, r in INCOMPLETE.values()}
    assert [m.split(" ", 1)[1].rsplit(" ", 1)[0] for m in t.counter_messages] == [
        INCOMPLETE[c][1] for c in ("D5", "DB", "EZ", "CM", "C4", "C5")
    ]
    # the state's validator names the same gaps on the record that would be produced
    assert {s.element for s in t.state if s.severity == "reject"} >= {
        "PAT12", "PAT18", "PAT19", "DSP10", "PRE02",
    }  # fmt: skip


def test_incomplete_fixture_file_matches():
    data = (ROOT / "fixtures" / "demo" / "incomplete.dat").read_bytes()
    missing = {f.code for f in by_code(run(data)).values() if f.status == "missing"}
    assert missing == set(INCOMPLETE)


def test_complete_claim_is_ready_with_its_asap_record():
    found = run(claim())
    assert found.ready
    t = found.transactions[0]
    assert (t.counter_status, t.counter_rejects, t.schedule) == ("P", [], "CII")
    assert [line.split("*")[0] for line in t.asap_record] == ["PHA", "PAT", "DSP", "PRE"]
    dsp = t.asap_record[2].rstrip("~").split("*")
    assert dsp[1:3] == ["00", "5000001"]  # new record, Rx number without leading zeros
    assert dsp[5] == "20250115" and dsp[8] == demo_claims.OXYCODONE_APAP
    assert "*AB1234563*" in t.asap_record[3]
    assert t.state == []


def test_invalid_values_say_why():
    found = run(claim(CM="PO BOX 44", C4="20300101", DB="AB1234560"))
    f = by_code(found)
    assert (f["CM"].status, f["CM"].reject) == ("invalid", "CM")
    assert "PO Box" in f["CM"].reason
    assert (f["C4"].status, f["C4"].reject) == ("invalid", "09")
    assert "after the date of service" in f["C4"].reason
    assert (f["DB"].status, f["DB"].reject, f["DB"].asap) == ("invalid", "25", "PRE02")
    assert set(found.transactions[0].counter_rejects) == {"CM", "09", "25"}


@pytest.mark.parametrize(("cx", "cy", "pat02"), [("02", "K12345678", "06"), ("07", "S1234", "02")])
def test_drivers_license_or_state_id_gets_its_jurisdiction_from_the_patient_s_state(cx, cy, pat02):
    found = run(claim(CX=cx, CY=cy, CO="OH"))
    t = found.transactions[0]
    assert t.counter_status == "P"  # the counter pays it ...
    assert t.state == []  # ... and the state takes its record
    pat = t.asap_record[1].rstrip("~").split("*")
    assert pat[1:4] == ["OH", pat02, cy] and pat[15] == "OH"  # PAT01, PAT02, PAT03, PAT15
    pat01 = next(f for f in t.fields if f.asap == "PAT01")
    assert (pat01.field_id, pat01.status, pat01.asap_name) == (
        "324-CO", "present", "PAT_ID_QUALIFIER_OF_PATIENT_IDENTIFIER",
    )  # fmt: skip
    assert found.ready


def test_other_ids_carry_no_jurisdiction():
    t = run(claim(CX="01", CY="401559021")).transactions[0]  # SSN
    assert t.asap_record[1].startswith("PAT**07*401559021*")
    pat01 = next(f for f in t.fields if f.asap == "PAT01")
    assert pat01.status == "absent" and pat01.reason == "not used for this record"


def test_compound_record_carries_its_ingredients():
    t = run(claim("cash-compound")).transactions[0]
    assert t.schedule == "CIII"
    # as Kentucky reports it: the one controlled ingredient is the product, no CDI
    assert not [line for line in t.asap_record if line.startswith("CDI")]
    assert f"*01*{demo_claims.TESTOSTERONE_CYP}*" in t.asap_record[2]
    assert t.state == []


def test_not_controlled_and_reversal_and_garbage():
    lisinopril = run(claim("cash-not-controlled")).transactions[0]
    assert lisinopril.schedule is None and lisinopril.counter_status == "P"
    assert lisinopril.ready and lisinopril.asap_record == [] and "no PMP record" in lisinopril.note
    # no patient DOB, gender or address: nothing for the PMP, the counter pays it
    assert run(claim("cash-not-controlled", drop={"01": {"C4", "C5", "CM"}})).ready
    reversal = run(claim("cash-reversal"))
    assert reversal.transactions[0].counter_status == "A" and "B2" in reversal.note
    assert reversal.transactions[0].fields == []
    bad = run(b"this is not a claim")
    assert bad.error.startswith("not a D.0 message") and not bad.ready


def test_counter_messages_name_the_fields():
    request = ncpdp.parse(claim(drop=DROPPED))
    segments = [*request.transactions[0], *request.segments]
    fields, other, _ = certify.field_findings(request.header.date_of_service, segments)
    lines = certify.counter_messages([*fields, *other])
    assert lines[0].startswith("322-CM missing -> PAT12")
    assert len(lines) == 6
    complete = run(claim()).transactions[0]
    assert certify.counter_messages(complete.fields) == ["PMP fields complete"]


def test_html_is_self_contained_and_holds_the_findings():
    findings = [run(claim(drop=DROPPED), "incomplete.dat"), run(claim(CB="<SCRIPT>"), "ok.dat")]
    page = certify.to_html(findings, generated=dt.datetime(2025, 1, 20, 9, 30))
    assert "&lt;SCRIPT&gt;" not in page  # a patient's last name: masked by default
    page = certify.to_html(findings, generated=dt.datetime(2025, 1, 20, 9, 30), show_patient=True)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(?i)https?://|<script|<link|src=|@import|url\(", page)
    assert "&lt;SCRIPT&gt;" in page
    for field_id, _, asap, _, reject in INCOMPLETE.values():
        row = next(r for r in page.split("<tr>") if r.startswith(f"<td>{field_id}</td>"))
        assert "missing" in row and f"<td>{reject}</td>" in row
        assert asap == "" or f"<td>{asap}</td>" in row
    assert "NOT READY" in page and "PAT*" in page


def test_cli_certify_terminal_html_and_json(tmp_path, capsys):
    bad = tmp_path / "incomplete.dat"
    bad.write_bytes(claim(drop=DROPPED))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ncpdp.to_json(ncpdp.parse(claim()))))
    html_file = tmp_path / "report.html"
    assert main(["certify", str(bad), str(good), "--html", str(html_file)]) == 1
    out = capsys.readouterr().out
    assert "NOT READY" in out and "READY" in out
    for field_id, *_ in INCOMPLETE.values():
        assert re.search(rf"{field_id} .* missing", out), field_id
    assert "466-EZ" in html_file.read_text()

    assert main(["certify", str(good), "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["ready"] and doc["transactions"][0]["counter_status"] == "P"


def test_cli_certify_bad_input_is_one_line(tmp_path, capsys):
    assert main(["certify", str(tmp_path / "nope.dat")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope.dat" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "request"')
    assert main(["certify", str(broken)]) == 2
    assert "not a message in the JSON contract" in capsys.readouterr().err


def test_send_and_certify_read_claim_files_through_one_helper(tmp_path, capsys, monkeypatch):
    import cli

    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "request"')
    errors = []
    for command in (["send", str(broken), "--port", "9"], ["certify", str(broken)]):
        assert main(command) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] and "not a message in the JSON contract" in errors[0]
    read: list[str] = []

    def reader(name: str) -> bytes:
        read.append(name)
        raise cli.UserError(f"{name}: read")

    monkeypatch.setattr(cli, "_read_claim", reader)
    assert main(["send", "a.dat", "--port", "9"]) == 2
    assert main(["certify", "b.dat"]) == 2
    assert read == ["a.dat", "b.dat"]


# --- the certification BIN on a live adapter ------------------------------------------------


def test_certification_bin_answers_and_never_captures(db_url, tmp_path):
    from extract.daily import extract
    from extract.settings import ExtractSettings, Settings

    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    from cashcapture.core.pharmacies import import_csv

    with sessions() as s:
        import_csv(s, demo_claims.PHARMACIES_CSV)
        s.commit()
    cfg = config.from_dict(
        {
            "adapter": {"db": db_url},
            "listeners": [{"host": "127.0.0.1", "port": 0}],
            "routes": {"certification": [demo_claims.CERTIFICATION_ROUTE]},
        }
    )
    today = dt.date.today()
    incomplete = ncpdp.parse(demo_claims.messages(today)["certification"])
    complete = ncpdp.parse(demo_claims.messages(today)["cash-controlled"])
    complete.header.bin, _, pcn = demo_claims.CERTIFICATION_ROUTE.partition("/")
    complete.header.pcn = pcn.ljust(10)

    async def go() -> list[bytes]:
        server = AdapterServer(cfg, schedule_of)
        await server.start()
        try:
            return await demo.send_all(
                server.ports[0], [ncpdp.build(incomplete), ncpdp.build(complete)]
            )
        finally:
            await server.shutdown()

    answers = asyncio.run(go())
    first, second = (ncpdp.find(ncpdp.parse(a).transactions[0], "21") for a in answers)
    assert first.get("AN") == "R" and set(first.get_all("FB")) == {"25", "EZ"}
    assert second.get("AN") == "P"
    try:
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(Fill)) == 0
            routes = s.scalars(select(Claim.route)).all()
        assert routes == ["certification", "certification"]
        settings = Settings(
            extract=ExtractSettings(outbox="outbox", zero_reports="off"), base_dir=tmp_path
        )
        result = extract(sessions, settings, dt.datetime.now(settings.extract.zone()).date())
        assert result.files == [] and result.records == 0
    finally:
        engine.dispose()


def test_the_counter_s_answer_includes_the_state_s_record_rules():
    """An SSN the SSA never issues: the state holds the record back, so the counter's
    answer the vendor sees is the reject the served counter gives (CY), not a paid one."""
    t = run(claim(CX="01", CY="000123456")).transactions[0]
    assert t.counter_status == "R" and t.counter_rejects == ["CY"]
    assert any("PAT03" in m for m in t.counter_messages)
    assert any(s.element == "PAT03" for s in t.state)


def test_an_ndc_not_in_the_directory_is_judged_as_the_counter_captures_it():
    """Certification with the directory's own answer: an unknown NDC is paid and would be
    captured unclassified, so its record is judged as if it were controlled."""
    data = claim(D7="12345678901")
    found = certify.certify(
        data, "new-ndc.dat", schedule_of=DRUGS.schedule_of, today=TODAY, drug_list=DRUGS
    )
    t = found.transactions[0]
    assert t.schedule == drugs.UNKNOWN and t.counter_status == "P"
    assert any("not in drug directory" in m for m in t.counter_messages)
    assert "not in the drug directory" in t.note and t.asap_record
    assert not [s for s in t.state if s.element == "DSP08"]  # not held back for the list
    assert t.ready
    # the same claim missing the patient's street: the record it would become is not ready
    bare = claim(D7="12345678901", drop={"01": {"CM"}})
    missing = certify.certify(
        bare, "new-ndc.dat", schedule_of=DRUGS.schedule_of, today=TODAY, drug_list=DRUGS
    )
    assert missing.transactions[0].counter_status == "P" and not missing.transactions[0].ready
    assert "(not in the drug directory)" in certify._transaction(t)
