# ruff: noqa: F811
"""An NDC the drug directory does not hold is unknown, never "not controlled" (issue 13.3).

The real counter (Router over a real store, SQLite and PostgreSQL) pays a cash claim
for an unknown NDC and captures its fill unclassified, off every queue; `drugs import`
of a newer FDA directory classifies it (controlled: queued, late at once when past its
deadline; not controlled: removed; still unknown: waits); `drugs unknown` lists what
waits; run-daily classifies by the shipped directory first, says what waits on stderr
and counts it in its gauges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from _adapter_helpers import (
    CASH_BIN,
    INSURED_BIN,
    FakePayer,
    b1,
    b2,
    build,
    fx,
    load,
    real_counter,
    rejects,
    statuses,
)
from _extract_helpers import sessions  # noqa: F401  (fixture)
from _extract_helpers import settings as extract_settings
from _sftp_server import sftp_server  # noqa: F401
from _store_helpers import fill_fields, insert_fill
from freezegun import freeze_time
from sqlalchemy import select

import cli
import ncpdp
from cashcapture.adapter import adjudicate, config
from cashcapture.adapter.router import Router
from cashcapture.core import drugs
from cashcapture.core.store import (
    Fill,
    FillIngredient,
    Pharmacy,
    make_engine,
    session_factory,
)
from cashcapture.core.store.classify import reclassify, unknown_ndcs
from extract import reports
from extract.daily import extract

FDA = Path(__file__).parent / "data" / "fda"
PRODUCT, PACKAGE = FDA / "product.txt", FDA / "package.txt"

METHADONE = "00054457125"  # CII in the newer (test) FDA files
AMLODIPINE = "65862010305"  # listed there, not controlled
NOWHERE = "12345678901"  # in no directory
# The counter's (older) directory: oxycodone/APAP scheduled, lisinopril listed, and
# none of the three above.
OLD = (
    "ndc11,schedule,state,product\n"
    f"{fx.OXYCODONE_APAP},CII,,Oxycodone and Acetaminophen\n"
    f"{fx.LISINOPRIL},,,\n"
)
DOS = dt.datetime.strptime(fx.DATE_OF_SERVICE, "%Y%m%d").date()


@pytest.fixture
def counter(migrated_db_url, tmp_path):
    """(router, sessions): the real counter with the old directory over a real store."""
    old = drugs.parse_directory(OLD, "KY").schedule_of
    with real_counter(migrated_db_url, tmp_path, old) as (router, sessions):
        yield router, sessions


def send(router, *claims) -> list[bytes]:
    async def go():
        return [(await router.handle(build(c))).data for c in claims]

    return asyncio.run(go())


def unclassified_count(router, route: str) -> float | None:
    sample = "cashcapture_unclassified_captures_total"
    return router.metrics.registry.get_sample_value(sample, {"route": route})


def message(response: bytes) -> str:
    txn = ncpdp.parse(response).transactions[0]
    return "".join(ncpdp.find(txn, "21").get_all("FQ"))


def fills(sessions) -> dict[str, Fill]:
    with sessions() as s:
        return {f.ndc: f for f in s.scalars(select(Fill))}


def test_a_cash_claim_for_an_unknown_ndc_is_paid_and_captured_unclassified(
    counter, tmp_path, capsys
):
    router, sessions = counter
    unknown, plain = send(router, b1(rx=7000001, ndc=METHADONE), b1(rx=7000002, ndc=fx.LISINOPRIL))
    assert statuses(unknown) == ["P"] and statuses(plain) == ["P"]
    assert adjudicate.MSG_UNCLASSIFIED in message(unknown)
    assert adjudicate.MSG_NOT_CONTROLLED in message(plain)  # listed, not controlled: as before
    held = fills(sessions)
    assert set(held) == {METHADONE}
    fill = held[METHADONE]
    assert fill.unclassified and fill.schedule is None and not fill.needs_report
    assert unclassified_count(router, "cash") == 1.0  # the live counter (Prometheus)
    assert cli.main(["fills", "--db", router.cfg.db, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["ndc"], listed["schedule"]) == (METHADONE, "unclassified")
    assert cli.main(["status", "--db", router.cfg.db]) == 0
    assert "1 fill captured for NDCs not in the drug directory wait to be classified" in (
        capsys.readouterr().out
    )
    # off every queue: the day's extract writes no record of it, and nothing is late
    result = extract(sessions, extract_settings(tmp_path, zero_reports="off"), dt.date.today())
    assert result.files == []
    with sessions() as s:
        assert reports.queued(s) == 0
        # waiting; its NDC is one the shipped directory knows (the next run classifies it)
        assert reports.unknown_drugs(s, drugs.load) == reports.UnknownDrugs(fills=1, ndcs=0)
    # a retransmission is a duplicate of the one fill; its reversal voids it
    again, reversal = send(router, b1(rx=7000001, ndc=METHADONE), b2(rx=7000001, ndc=METHADONE))
    assert statuses(again) == ["D"] and statuses(reversal) == ["A"]
    assert fills(sessions)[METHADONE].state == "voided"


def _without(req, segment: str, *codes: str):
    seg = ncpdp.find([*req.segments, *req.transactions[0]], segment)
    seg.fields = [(c, v) for c, v in seg.fields if c not in codes]
    return req


def test_an_unknown_ndc_is_paid_whatever_the_pmp_lacks_and_told_what(counter):
    """Paid and captured although the record would lack the birth date and the street:
    the pharmacy hears of both, in case the drug is controlled. What finds the fill (a
    date of service a year ahead) is still refused."""
    router, sessions = counter
    bare = _without(b1(rx=7000021, ndc=NOWHERE), "01", "C4", "CM")
    ahead = b1(rx=7000022, ndc=NOWHERE)
    ahead.header.date_of_service = (dt.date.today() + dt.timedelta(days=365)).strftime("%Y%m%d")
    compound = ncpdp.parse(ncpdp.build(fx.b1_compound()))  # bulk ingredients: unknown
    compound.transactions[0][0].fields = [
        (c, "7000023" if c == "D2" else v) for c, v in compound.transactions[0][0].fields
    ]
    paid, refused, mixed = send(router, bare, ahead, compound)
    assert statuses(paid) == ["P"]
    said = message(paid)
    assert adjudicate.MSG_UNCLASSIFIED in said
    assert "Date Of Birth" in said and "Street Address" in said
    assert statuses(refused) == ["R"] and rejects(refused) == ["15"]
    assert statuses(mixed) == ["P"] and adjudicate.MSG_UNCLASSIFIED in message(mixed)
    held = {f.rx_number: f for f in fills(sessions).values()}
    assert held["7000021"].unclassified and held["7000021"].patient_dob is None
    assert held["7000023"].unclassified and held["7000023"].compound
    assert "7000022" not in held


def test_an_insured_claim_for_an_unknown_ndc_is_captured_unclassified(counter, tmp_path):
    """A claim through the switch to a real payer: relayed unchanged, and its fill kept
    unclassified (the fixture's hydrocodone code is not in the counter's directory)."""
    cash_router, sessions = counter
    payer = FakePayer()
    request = load("b1_insured.dat")

    async def go() -> tuple[bytes, float | None]:
        await payer.start()
        payer_route = {"route": INSURED_BIN, "host": "127.0.0.1", "port": payer.port}
        cfg = config.from_dict(
            {
                "adapter": {"db": cash_router.cfg.db, "spool": str(tmp_path / "spool")},
                "routes": {"cash": [CASH_BIN]},
                "payers": [{**payer_route, "payment_type": "commercial"}],
            }
        )
        router = Router(cfg, cash_router.committer, drugs.parse_directory(OLD, "KY").schedule_of)
        try:
            return (await router.handle(request)).data, unclassified_count(router, "insured")
        finally:
            router.close()
            await payer.stop()

    answer, counted = asyncio.run(go())
    assert counted == 1.0
    assert answer == payer.answer(request)  # relayed unchanged
    fill = fills(sessions)[fx.HYDROCODONE_APAP]
    assert (fill.route, fill.payment_type) == ("insured", "04")
    assert fill.unclassified and fill.schedule is None and not fill.needs_report


def _config(tmp_path, directory: Path | None = None) -> str:
    """A config file; with `directory`, that file as the drug directory in use."""
    path = tmp_path / ("cc-directory.toml" if directory else "cc.toml")
    adapter = f"[adapter]\ndrug_list = {json.dumps(str(directory))}\n" if directory else ""
    path.write_text(adapter + '[extract]\nzero_reports = "off"\ntimezone = "America/New_York"\n')
    return str(path)


def test_drugs_import_classifies_what_waits(counter, migrated_db_url, tmp_path, capsys):
    router, sessions = counter
    replies = send(
        router,
        b1(rx=7000011, ndc=METHADONE),
        b1(rx=7000012, ndc=AMLODIPINE),
        b1(rx=7000013, ndc=NOWHERE),
    )
    assert [statuses(r) for r in replies] == [["P"]] * 3
    assert all(f.unclassified for f in fills(sessions).values())
    cfg = _config(tmp_path)
    # what waits, with no patient data in the listing
    assert cli.main(["drugs", "unknown", "--db", migrated_db_url, "--config", cfg]) == 1
    listing = capsys.readouterr().out
    # by the shipped directory, which knows methadone and amlodipine: only NOWHERE waits
    assert NOWHERE in listing and "1 NDC(s) unknown to the drug directory" in listing
    assert METHADONE not in listing and AMLODIPINE not in listing
    assert "HOLLOWAY" not in listing and "19680704" not in listing

    # a directory written anywhere but where the parts read it classifies nothing
    elsewhere = ["--out", str(tmp_path / "elsewhere.csv"), "--db", migrated_db_url]
    argv = ["drugs", "import", str(PRODUCT), str(PACKAGE)]
    assert cli.main([*argv, *elsewhere, "--config", cfg]) == 0
    assert "is not the directory in use" in capsys.readouterr().out
    assert all(f.unclassified for f in fills(sessions).values())
    # the directory in use ([adapter] drug_list), not there yet: drugs import makes it
    newer = tmp_path / "directory.csv"
    in_use = _config(tmp_path, directory=newer)
    assert cli.main([*argv, "--db", migrated_db_url, "--config", in_use]) == 0
    out = capsys.readouterr().out
    assert (
        "unclassified fills: 1 now controlled and queued for the PMP, 1 past their reporting "
        "deadline; 1 not controlled (removed, or voided where a state holds them); 1 still "
        "unknown" in out
    )
    held = fills(sessions)
    assert set(held) == {METHADONE, NOWHERE}  # amlodipine's fill is gone
    methadone = held[METHADONE]
    assert methadone.schedule == "CII" and not methadone.unclassified and methadone.needs_report
    assert held[NOWHERE].unclassified and not held[NOWHERE].needs_report
    # late at once: filled long ago, its deadline passed while it waited
    deadline = extract_settings(tmp_path).extract.deadline
    with sessions() as s:
        late = reports.late(s, deadline, dt.date.today())
    assert late.rows == [(DOS.isoformat(), deadline(DOS).isoformat(), 1)]
    # and it goes in the next file, passing the state's rules
    result = extract(sessions, extract_settings(tmp_path, zero_reports="off"), dt.date.today())
    [written] = result.files
    assert written.records == 1 and written.held_back == 0
    # a second import changes nothing: safe to re-run
    assert cli.main([*argv, "--force", "--db", migrated_db_url, "--config", in_use]) == 0
    assert "0 now controlled" in capsys.readouterr().out
    # a retransmission of the removed claim, at a counter on the newer directory, is
    # answered as a drug that is not controlled (its claim row kept): no fill again
    newer_counter = Router(router.cfg, router.committer, drugs.load_file(newer, "KY").schedule_of)
    try:
        [again] = send(newer_counter, b1(rx=7000012, ndc=AMLODIPINE))
    finally:
        newer_counter.close()
    assert statuses(again) == ["D"] and AMLODIPINE not in fills(sessions)


def _ingredients(*ndcs: str) -> list[dict]:
    return [{"sequence": n, "ndc": ndc, "quantity": 5} for n, ndc in enumerate(ndcs, 1)]


def _unfinished(tmp_path: Path) -> list[str]:
    """An unfinished drugs' product and package file, as FDA publishes them beside the
    finished ones (no proprietary name column): a bulk testosterone for compounding
    (CIII) and a cream base, the fixture compound's two ingredients."""
    product = tmp_path / "unfinished_product.txt"
    product.write_text(
        "PRODUCTID\tPRODUCTNDC\tPRODUCTTYPENAME\tNONPROPRIETARYNAME\tDOSAGEFORMNAME\t"
        "STARTMARKETINGDATE\tENDMARKETINGDATE\tMARKETINGCATEGORYNAME\tAPPLICATIONNUMBER\t"
        "LABELERNAME\tSUBSTANCENAME\tACTIVE_NUMERATOR_STRENGTH\tACTIVE_INGRED_UNIT\t"
        "DEASCHEDULE\tLISTING_RECORD_CERTIFIED_THROUGH\r\n"
        "51927-1035_x\t51927-1035\tBULK INGREDIENT\tTestosterone\tPOWDER\t20100101\t\t"
        "BULK INGREDIENT FOR HUMAN PRESCRIPTION COMPOUNDING\t\tPCCA\tTESTOSTERONE\t1\tg/g\t"
        "CIII\t20191231\r\n"
        "51927-2015_y\t51927-2015\tBULK INGREDIENT\tCream base\tCREAM\t20100101\t\t"
        "BULK INGREDIENT FOR HUMAN PRESCRIPTION COMPOUNDING\t\tPCCA\tPETROLATUM\t1\tg/g\t"
        "\t20191231\r\n",
        encoding="latin-1",
    )
    package = tmp_path / "unfinished_package.txt"
    package.write_text(
        "PRODUCTID\tPRODUCTNDC\tNDCPACKAGECODE\tPACKAGEDESCRIPTION\tSTARTMARKETINGDATE\t"
        "ENDMARKETINGDATE\r\n"
        "51927-1035_x\t51927-1035\t51927-1035-00\t25 g in 1 JAR\t20100101\t\r\n"
        "51927-2015_y\t51927-2015\t51927-2015-00\t500 g in 1 JAR\t20100101\t\r\n",
        encoding="latin-1",
    )
    return [str(product), str(package)]


def test_a_compound_of_bulk_ingredients_waits_for_the_unfinished_drugs_files(
    counter, migrated_db_url, tmp_path, capsys
):
    """Bulk ingredients are not in the directory of finished products: a compound of them
    is captured unclassified; importing the unfinished drugs' files beside the finished
    ones classifies it by its controlled ingredient."""
    router, sessions = counter
    compound = ncpdp.parse(ncpdp.build(fx.b1_compound()))
    [paid] = send(router, compound)
    assert statuses(paid) == ["P"] and adjudicate.MSG_UNCLASSIFIED in message(paid)
    [fill] = fills(sessions).values()
    assert fill.compound and fill.unclassified
    newer = tmp_path / "directory.csv"
    argv = ["drugs", "import", str(PRODUCT), str(PACKAGE), "--config", _config(tmp_path, newer)]
    assert cli.main([*argv, *_unfinished(tmp_path)[:1]]) == 2  # a product file alone
    assert "has no package file" in capsys.readouterr().err
    assert cli.main([*argv, *_unfinished(tmp_path), "--db", migrated_db_url]) == 0
    assert "1 now controlled and queued" in capsys.readouterr().out
    [fill] = fills(sessions).values()
    assert fill.schedule == "CIII" and fill.needs_report and not fill.unclassified
    directory = drugs.load_file(newer, "KY")
    assert directory.lookup(fx.TESTOSTERONE_POWDER).product == "Testosterone"
    assert directory.schedule_of(fx.CREAM_BASE) is None


def test_reclassify_follows_the_most_controlled_drug_and_a_void_owes_nothing(migrated_db_url):
    engine = make_engine(migrated_db_url)
    sessions = session_factory(engine)
    waiting = {  # rx: (state, product NDC, compound ingredients)
        "1": ("new", METHADONE, []),
        "2": ("voided", METHADONE, []),  # reversed while it waited: never owed
        "3": ("new", "99999999999", _ingredients(NOWHERE, METHADONE)),  # CII wins
        "4": ("new", "99999999999", _ingredients(NOWHERE, AMLODIPINE)),  # unknown waits
        "5": ("new", "99999999999", _ingredients(AMLODIPINE, fx.LISINOPRIL)),
    }
    try:
        with sessions.begin() as s:
            pid = Pharmacy(dea="FP1234563", name="Bluegrass", reg_key="9004")
            s.add(pid)
            s.flush()
            for rx, (state, ndc, parts) in waiting.items():
                fields = fill_fields(pid.id, rx, ndc=ndc, unclassified=True, schedule=None)
                insert_fill(s, fields, ingredients=parts).state = state
        with sessions.begin() as s:
            done = reclassify(s, drugs.load)
        assert sorted(fill_id for fill_id, _ in done.reportable) == [1, 3]
        assert (done.not_controlled, done.still_unknown) == (1, 1)
        with sessions() as s:
            got = {f.rx_number: (f.schedule, f.unclassified, f.needs_report) for f in
                   s.scalars(select(Fill))}  # fmt: skip
            assert [(u.ndc, u.fills) for u in unknown_ndcs(s, drugs.load)] == [(NOWHERE, 1)]
            kept = {i.fill_id for i in s.scalars(select(FillIngredient))}
            assert kept == {f.id for f in s.scalars(select(Fill)) if f.compound}  # none orphaned
        assert got == {
            "1": ("CII", False, True),
            "2": ("CII", False, False),
            "3": ("CII", False, True),
            "4": (None, True, False),
        }
        with sessions.begin() as s:  # again: nothing left to change
            assert not reclassify(s, drugs.load).changed
    finally:
        engine.dispose()


DAY = dt.date(2026, 12, 28)


def _waiting(db_url: str, *ndcs: str) -> None:
    """Fills filled on DAY whose NDCs the counter's directory did not hold."""
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        with sessions.begin() as s:
            ph = Pharmacy(dea="FP1234563", name="Bluegrass", reg_key="9004")
            s.add(ph)
            s.flush()
            for rx, ndc in enumerate(ndcs, 1):
                fields = fill_fields(
                    ph.id,
                    str(rx),
                    ndc=ndc,
                    unclassified=True,
                    schedule=None,
                    date_of_service=DAY,
                    patient_id_jurisdiction="KY",
                )
                insert_fill(s, fields).updated_at = dt.datetime(2026, 12, 28, 12, tzinfo=dt.UTC)
    finally:
        engine.dispose()


def _run_daily(db_url: str, cfg: Path) -> int:
    with freeze_time("2026-12-29 15:00:00"):
        return cli.main(["run-daily", "--date", str(DAY), "--db", db_url, "--config", str(cfg)])


def test_run_daily_classifies_first_and_counts_what_waits(
    migrated_db_url, tmp_path, sftp_server, capsys
):
    """A fill captured while the counter's directory lacked its NDC: the shipped directory
    now schedules it, so run-daily queues and delivers it; the one still unknown is said
    on stderr and counted in the gauges."""
    _waiting(migrated_db_url, METHADONE, NOWHERE)
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        '[extract]\nzero_reports = "off"\nmetrics_file = "cc.prom"\n' + sftp_server.info.toml()
    )
    code = _run_daily(migrated_db_url, cfg)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "unclassified fills: 1 now controlled and queued for the PMP;" in out
    assert "uploaded    PMP_KY_" in out and "records=1" in out
    assert [line for line in err.splitlines() if line.strip()] == [
        "cashcapture: 1 fill captured for NDCs not in the drug directory wait to be "
        "classified, 1 NDC still unknown (cashcapture drugs unknown; drugs import of newer "
        "FDA files)"
    ]
    prom = (tmp_path / "cc.prom").read_text()
    assert "cashcapture_ndcs_unknown 1.0" in prom and "cashcapture_fills_unclassified 1.0" in prom
    assert "cashcapture_fills_queued 0.0" in prom


def test_one_directory_for_every_part(migrated_db_url, tmp_path, sftp_server, capsys, monkeypatch):
    """`[adapter] drug_list` is the directory the counter classifies by, and so the one the
    extract judges DSP08 by, run-daily classifies by, and the drugs commands read and write:
    a product it schedules and the shipped one does not is delivered, not held back."""
    monkeypatch.chdir(tmp_path)  # the path as `serve` takes it
    (tmp_path / "directory.csv").write_text(OLD + f"{NOWHERE},CIV,,A product newer than 2019\n")
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        '[adapter]\ndrug_list = "directory.csv"\n[extract]\nzero_reports = "off"\n'
        + sftp_server.info.toml()
    )
    _waiting(migrated_db_url, NOWHERE)
    code = _run_daily(migrated_db_url, cfg)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "unclassified fills: 1 now controlled" in out
    assert "records=1 held_back=0" in out
    assert cli.main(["drugs", "show", NOWHERE, "--config", str(cfg)]) == 0
    assert "schedule CIV" in capsys.readouterr().out
    assert cli.main(["drugs", "show", NOWHERE]) == 3  # the shipped directory: unknown
    assert "not in the drug directory" in capsys.readouterr().out
    argv = ["drugs", "import", str(PRODUCT), str(PACKAGE), "--config", str(cfg)]
    assert cli.main([*argv, "--db", migrated_db_url, "--max-shrink", "100"]) == 0
    assert "NDCs written to directory.csv" in capsys.readouterr().out
    assert drugs.load_file("directory.csv", "KY").schedule_of(METHADONE) == "CII"
    # a configured directory that is not there: one line, exit 2
    cfg.write_text('[adapter]\ndrug_list = "gone.csv"\n')
    assert cli.main(["drugs", "show", NOWHERE, "--config", str(cfg)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "cashcapture: error: [adapter] drug_list: no file gone.csv"
    )


def test_a_schedule_iii_fill_is_captured_on_every_database(counter):
    """ "CIII" is four characters: the schedule column held three, so PostgreSQL refused
    every schedule III capture (reject 99), while SQLite, which ignores lengths, took it."""
    from _adapter_helpers import schedule_of as fixture_schedules  # the compound's CIII

    router, sessions = counter
    schedule3 = Router(router.cfg, router.committer, fixture_schedules)
    try:
        [paid] = send(schedule3, fx.b1_compound())
    finally:
        schedule3.close()
    assert statuses(paid) == ["P"] and adjudicate.MSG_CAPTURED in message(paid)
    [fill] = fills(sessions).values()
    assert fill.schedule == "CIII" and fill.needs_report


def _reported_then_unclassified(sessions, *, voided: bool = False) -> int:
    """A fill reported (00, in a delivered file), then rebilled with an NDC the counter
    did not know (unclassified), and maybe reversed: what a state already holds."""
    from _store_helpers import revise_fill, void_fill

    from cashcapture.core.store import Submission, SubmissionRecord

    with sessions.begin() as s:
        ph = Pharmacy(dea="FP1234563", name="Bluegrass", reg_key="9004")
        s.add(ph)
        s.flush()
        fill = insert_fill(s, fill_fields(ph.id, "9001", ndc=METHADONE, schedule="CII"))
        sub = Submission(file_name="PMP_KY_X.dat", submitter_id="X", state="uploaded")
        s.add(sub)
        s.flush()
        s.add(SubmissionRecord(submission_id=sub.id, fill_id=fill.id, reporting_status="00",
                               fill_version=1))  # fmt: skip
        fill.reported_status, fill.needs_report = "00", False
        s.flush()
        revise_fill(s, fill, {"ndc": NOWHERE, "schedule": None, "unclassified": True})
        if voided:
            void_fill(s, fill)
        return fill.id


def _classify_reported(sessions, row: str, *, voided: bool = False):
    """(what re-classifying did, the fill after) for a reported fill that waits, when the
    directory has `row` for its NDC."""
    fill_id = _reported_then_unclassified(sessions, voided=voided)
    directory = drugs.parse_directory(OLD + f"{NOWHERE},{row}\n", "KY")
    with sessions.begin() as s:
        done = reclassify(s, lambda state: directory)
    with sessions() as s:
        fill = s.get(Fill, fill_id)
        s.expunge(fill)
    return done, fill


def test_a_reported_fill_now_not_controlled_is_voided_not_deleted(sessions):
    """Deleting it failed on its submission records (every run-daily stopped there) and
    would have left the state's record standing: it is voided, and the 02 is queued."""
    done, fill = _classify_reported(sessions, ",,")
    assert (done.not_controlled, done.reportable) == (1, [])
    assert (fill.state, fill.unclassified, fill.needs_report) == ("voided", False, True)
    assert fill.reporting_status == "02"


def test_a_reversed_fill_classified_keeps_the_void_it_owes(sessions):
    """Reversed while it waited, after the state got its 00: the 02 is owed, and stays."""
    done, fill = _classify_reported(sessions, "CII,,New", voided=True)
    assert done.reportable == []  # a void, not a fill newly reportable
    assert (fill.schedule, fill.unclassified, fill.needs_report) == ("CII", False, True)
    assert fill.reporting_status == "02"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_reclassify_leaves_a_fill_the_counter_changed_meanwhile(migrated_db_url):
    """The counter rebills the fill between this pass's read and its write: the pass's
    change would carry the old NDC's class, so it is not applied. PostgreSQL lets the
    write in between; on SQLite the pass holds the write lock from its start (`writing`,
    BEGIN IMMEDIATE), so there is no between."""
    from sqlalchemy import update

    engine = make_engine(migrated_db_url)
    sessions = session_factory(engine)
    try:
        _waiting(migrated_db_url, METHADONE)

        def rebilled_meanwhile(state: str) -> drugs.Directory:
            with sessions.begin() as other:  # another connection commits first
                other.execute(update(Fill).values(version=Fill.version + 1, ndc=NOWHERE))
            return drugs.load(state)

        with sessions.begin() as s:
            done = reclassify(s, rebilled_meanwhile)
        assert (done.reportable, done.not_controlled) == ([], 0)
        with sessions() as s:
            [fill] = s.scalars(select(Fill))
            assert (fill.ndc, fill.unclassified, fill.needs_report) == (NOWHERE, True, False)
    finally:
        engine.dispose()


def test_a_pharmacy_whose_only_fill_waits_still_sends_its_zero_report(migrated_db_url, tmp_path):
    """A fill of an unknown NDC is no controlled dispensing yet: the day still gets its
    zero report (classified later, the fill goes as a late record after it)."""
    from _extract_helpers import good_fill

    engine = make_engine(migrated_db_url)
    sessions = session_factory(engine)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    try:
        with sessions.begin() as s:
            ph = Pharmacy(dea="FP1234563", name="Bluegrass", reg_key="9004")
            ph.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
            s.add(ph)
            s.flush()
            waiting = good_fill(s, ph.id, "7101", ndc=NOWHERE, date_of_service=yesterday)
            waiting.unclassified, waiting.needs_report, waiting.schedule = True, False, None
        result = extract(sessions, extract_settings(tmp_path, zero_reports="daily"), yesterday)
    finally:
        engine.dispose()
    assert [(f.zero_report, f.records) for f in result.files] == [(True, 0)]
