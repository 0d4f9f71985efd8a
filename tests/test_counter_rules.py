"""The counter runs the state's record rules on the record a claim would become (issue 13.1).

Pure tests over fixture claims (adjudicate with the KY rules), the table of what
the counter cannot judge, and a property test that goes through the real
counter (Router over a real store) and the real extract: no claim the counter
pays as captured is held back by the state's validator at extract.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from _adapter_helpers import b1, fx, schedule_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncpdp
from cashcapture.adapter import adjudicate, capture, recordcheck
from cashcapture.core.pmp import fillrecord
from cashcapture.core.pmp.rules import for_state
from cashcapture.core.pmp.rules.ky import KY
from cashcapture.core.pmp.validate import validate_record
from ncpdp import Segment

TOMORROW = dt.date.today() + dt.timedelta(days=1)


def judge(req, rules=KY):
    return adjudicate.adjudicate(
        req,
        priors=[None] * len(req.transactions),
        schedule_of=schedule_of,
        pharmacy_known=True,
        auth_numbers=["AUTH0"] * len(req.transactions),
        problems=ncpdp.validate(req),
        latest_service_date=TOMORROW,
        rules=rules,
    )


def with_patient(req, **values: str):
    """The claim with some patient (01) fields replaced by raw wire values."""
    seg = ncpdp.find(req.segments, "01")
    seg.fields = [(c, values.get(c, v)) for c, v in seg.fields]
    return req


def answer(d, i: int = 0) -> tuple[list[str], list[str]]:
    st_ = ncpdp.find(d.response.transactions[i], "21")
    return st_.get_all("FB"), "".join(st_.get_all("FQ"))


# --- the rule set at the counter is the state's -------------------------------------


@pytest.mark.parametrize(
    ("patient", "code", "named"),
    [
        # a Social Security Number the SSA never issues (area 000): capture takes any 9 digits
        ({"CX": "01", "CY": "000123456"}, "CY", "Patient ID"),
        ({"CX": "01", "CY": "666123456"}, "CY", "Patient ID"),
        # a driver's licence number with a dash (KY Appendix B: letters and digits only)
        ({"CY": "K1234-678"}, "CY", "Patient ID"),
        # a U.S. Military ID (ASAP 01) must be nine numbers
        ({"CX": "03", "CY": "MIL12345"}, "CY", "Patient ID"),
    ],
)
def test_a_claim_the_state_would_hold_back_is_rejected_naming_the_field(patient, code, named):
    req = with_patient(b1(), **patient)
    before = judge(req, rules=None)  # the capture's own checks, as on main before
    assert before.status == "P" and before.actions
    [action] = before.actions
    record = fillrecord.record(dict(action.values))
    held = [p for p in validate_record(record, KY, today=TOMORROW) if p.segment != "PHA"]
    assert held, "the state's validator holds this record back"
    d = judge(req)
    assert d.status == "R" and d.actions == []
    codes, text = answer(d)
    assert codes == [code]
    assert f"PMP: {named}" in text and "(PAT03)" in text
    assert patient["CY"] not in text  # the message names the field, never the value


def test_a_good_claim_is_still_paid_and_its_record_passes_the_state_s_rules():
    d = judge(b1())
    assert d.status == "P"
    [action] = d.actions
    assert recordcheck.compiled(KY, schedule_of, TOMORROW).problems(action.values) == []


def test_compound_is_judged_as_the_state_reports_it():
    req = ncpdp.parse(ncpdp.build(fx.b1_compound()))
    d = judge(req)
    assert d.status == "P" and d.actions[0].ingredients


def test_warnings_let_the_claim_pass_as_the_collector_lets_the_record_go():
    """A PO Box street is the collector's warning in KY: the record goes, the claim is paid
    (the capture refuses a PO Box on its own: this checks the record rules alone)."""
    values = dict(judge(b1()).actions[0].values, patient_address1="PO BOX 12")
    check = recordcheck.compiled(KY, schedule_of, TOMORROW)
    found = validate_record(fillrecord.record(values), KY, today=TOMORROW)
    assert [p.element_id for p in found if p.segment != "PHA"] == ["PAT12"]
    assert check.problems(values) == []


def test_every_element_the_counter_fills_maps_to_a_claim_field_and_its_mi_code():
    from ncpdp.dictionary import FIELD_REJECT, REJECT_CODES

    for (seg, attr), code in recordcheck.SOURCES.items():
        reject = FIELD_REJECT[code]
        assert REJECT_CODES[reject].description.startswith("M/I"), (seg, attr, code)
    # every Fill column the capture feeds reaches an ASAP element through the shared table
    fed = {row.column for row in capture.FIELD_MAP if row.column} - capture.ROUTING_COLUMNS
    columns = {
        c
        for t in (
            fillrecord.PATIENT,
            fillrecord.DISPENSATION,
            fillrecord.DISPENSATION_DERIVED,
            fillrecord.PRESCRIBER,
        )
        for _, c in t
    }
    assert fed <= columns
    assert recordcheck.SOURCES[("PAT", "birth_date")] == "C4"
    assert recordcheck.SOURCES[("DSP", "fill_number")] == "D3"
    assert recordcheck.SOURCES[("CDI", "product_id")] == "TE"


def test_every_pmp_field_s_reject_is_its_mi_code_and_an_optional_one_is_never_empty():
    """An optional field (prescriber name, phone, origin) that holds a character the file
    cannot carry rejects the claim: with its M/I code, never an empty 511-FB."""
    from ncpdp.dictionary import FIELD_REJECT

    assert {r.code: r.reject for r in capture.FIELD_MAP} == {
        r.code: FIELD_REJECT[r.code] for r in capture.FIELD_MAP
    }
    req = b1()
    presc = ncpdp.find(req.transactions[0], "03")
    presc.fields = [(c, "BA*KER" if c == "DR" else v) for c, v in presc.fields]
    d = judge(req)
    codes, text = answer(d)
    assert d.status == "R" and codes == ["DR"] and "Prescriber Last Name" in text


def test_findings_in_unjudged_segments_are_skipped_and_an_unfed_element_gets_nn():
    import dataclasses

    from cashcapture.core.pmp.rules import ElementRule

    # a state that requires the prescriber's NPI (PRE01), which no claim field feeds today
    pre = tuple(
        dataclasses.replace(r, required=True) if r.id == "PRE01" else r for r in KY.segments["PRE"]
    )
    segments = dict(KY.segments, PRE=pre)
    by_id: dict[str, ElementRule] = {r.id: r for rs in segments.values() for r in rs}
    strict = dataclasses.replace(KY, segments=segments, by_id=by_id)
    d = judge(b1(), rules=strict)
    codes, text = answer(d)
    assert d.status == "R" and codes == [recordcheck.NO_SOURCE_REJECT]
    assert "PMP: ASAP PRE01 Required Field Value is Empty" in text
    # the pharmacy (PHA) is empty at the counter: never a reject there
    assert "PHA" in recordcheck.SKIPPED_SEGMENTS
    assert all(u.why for u in recordcheck.UNJUDGED)


def test_all_messages_are_kept_and_codes_cut_to_five():
    req = with_patient(b1(), CX="01", CY="000123456")
    claim = req.transactions[0][0]
    # also invalid for the capture: days supply 0, refills 100 (the capture's own checks)
    claim.fields = [(c, {"D5": "0", "DF": "100"}.get(c, v)) for c, v in claim.fields]
    d = judge(req)
    codes, text = answer(d)
    assert codes == ["29", "19", "CY"]  # capture's first, then the state's
    assert "Patient ID" in text and "Days Supply" in text and "Refills" in text


def test_codec_rejected_controlled_claim_also_hears_of_the_state_s_rules():
    req = with_patient(b1(), CX="01", CY="000123456")
    pricing = ncpdp.find(req.transactions[0], "11")
    pricing.fields = [(c, "1X" if c == "D9" else v) for c, v in pricing.fields]
    d = judge(req)
    codes, _ = answer(d)
    assert "CY" in codes and len(codes) >= 2


def test_the_counter_takes_the_rules_of_the_file_s_profile_and_refuses_an_unknown_one():
    from cashcapture.adapter import config
    from cashcapture.core import profiles

    assert config.state_rules(config.from_dict({})) == for_state("KY")
    with pytest.raises(config.ConfigError, match="adapter.state"):
        config.from_dict({"adapter": {"state": "ZZ"}})
    # the profile the extract uses, so both judge alike
    old = config.state_rules(config.from_dict({"adapter": {"profile": "KY-2011"}}))
    assert (old.version, old.ssn) == ("4.1", "2011")
    ohio = config.state_rules(
        config.from_dict({"adapter": {"state": "OH", "profile": "ASAP-4.2A"}})
    )
    assert (ohio.state, ohio.version) == ("OH", "4.2A")
    with pytest.raises(config.ConfigError, match="adapter.profile KY reports to KY, not OH"):
        config.from_dict({"adapter": {"state": "OH", "profile": "KY"}})
    # with no [adapter] profile the counter follows the file's: [extract] profile
    older = config.state_rules(config.from_dict({"extract": {"profile": "KY-2011"}}))
    assert (older.version, older.ssn) == ("4.1", "2011")
    assert config.state_rules(config.from_dict({"extract": {"profile": "KY"}})) == (
        profiles.load("KY").rules()
    )
    with pytest.raises(config.ConfigError, match="differs from \\[extract\\] profile KY-2011"):
        config.from_dict({"adapter": {"profile": "KY"}, "extract": {"profile": "KY-2011"}})
    with pytest.raises(config.ConfigError, match="^\\[extract\\] profile: unknown"):
        config.from_dict({"extract": {"profile": "ZZ"}})


def test_compiled_rules_are_reused_per_day():
    one = recordcheck.compiled(KY, schedule_of, TOMORROW)
    assert recordcheck.compiled(KY, schedule_of, TOMORROW) is one
    assert recordcheck.compiled(KY, schedule_of, dt.date.today()) is not one


# --- property: what the counter pays as captured, the extract never holds back ----------

LATIN = st.characters(min_codepoint=0x20, max_codepoint=0xFF)
TODAY = dt.date.today()
QUALIFIERS = sorted(capture.PATIENT_ID_QUALIFIER)
STATES = sorted(capture.US_STATES)


def _dates(lo: dt.date, hi: dt.date) -> st.SearchStrategy[str]:
    return st.dates(lo, hi).map(lambda d: d.strftime("%Y%m%d"))


def _n(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(str)


# Field -> (plausible values, wild values): names, addresses, dates, IDs, quantities as
# pharmacy systems send them, and what a careless or hostile one might send instead.
FIELDS: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    "CX": (
        st.sampled_from(["01", "02", "03", "06", "07", "99"]),
        st.sampled_from(QUALIFIERS + ["ZZ"]),
    ),
    "CY": (
        st.from_regex(r"[A-Z][0-9]{8}|[0-9]{9}", fullmatch=True),
        st.text(LATIN, max_size=20),
    ),
    "C4": (
        _dates(dt.date(1901, 1, 1), TODAY - dt.timedelta(days=1)),
        _dates(dt.date(1880, 1, 1), TODAY + dt.timedelta(days=3)),
    ),
    "C5": (st.sampled_from(["0", "1", "2", "3"]), st.sampled_from(["4", "9", "M"])),
    "CA": (st.from_regex(r"[A-Z][A-Z' .-]{0,20}", fullmatch=True), st.text(LATIN, max_size=35)),
    "CB": (st.from_regex(r"[A-Z][A-Z' .-]{0,30}", fullmatch=True), st.text(LATIN, max_size=35)),
    "CM": (
        st.from_regex(r"[1-9][0-9]{0,4} [A-Z][A-Z .#]{0,20}", fullmatch=True),
        st.one_of(
            st.from_regex(r"P\.? ?O\.? BOX [0-9]{1,4}", fullmatch=True),
            st.text(LATIN, max_size=30),
        ),
    ),
    "CN": (st.from_regex(r"[A-Z][A-Z .]{0,19}", fullmatch=True), st.text(LATIN, max_size=20)),
    "CO": (st.sampled_from(STATES), st.sampled_from(["XX", "ky", "K", "", "K~"])),
    "CP": (
        st.from_regex(r"[0-9]{5}|[0-9]{9}|[0-9]{5}-[0-9]{4}", fullmatch=True),
        st.text(LATIN, max_size=15),
    ),
    "CQ": (st.from_regex(r"[2-9][0-9]{9}|", fullmatch=True), st.text(LATIN, max_size=10)),
    "E7": (
        st.decimals(Decimal("0.001"), 9999, places=3).map(lambda q: ncpdp.wire("E7", q)),
        st.sampled_from(["0", "0000000000", "12A", "9999999999"]),
    ),
    "D3": (_n(0, 11), _n(12, 200)),
    "D5": (_n(1, 120), _n(0, 1200)),
    "DF": (_n(0, 11), _n(0, 150)),
    "DJ": (st.sampled_from(["1", "2", "3", "4", "5"]), st.sampled_from(["0", "9", ""])),
    "28": (st.sampled_from(["EA", "ML", "GM"]), st.sampled_from(["XX", ""])),
    "EZ": (st.just("12"), st.sampled_from(["01", "", "99"])),
    "DB": (
        st.sampled_from(["AB1234563", "BM7654329"]),
        st.sampled_from(["AB1234567", "A1234563", "AB12345*3", ""]),
    ),
    "DR": (st.from_regex(r"[A-Z]{1,15}", fullmatch=True), st.text(LATIN, max_size=15)),
    "2J": (st.from_regex(r"[A-Z]{1,12}", fullmatch=True), st.text(LATIN, max_size=15)),
}
PATIENT_FIELDS = ("CX", "CY", "C4", "C5", "CA", "CB", "CM", "CN", "CO", "CP", "CQ")
CLAIM_FIELDS = ("E7", "D3", "D5", "DF", "DJ", "28")
PRESCRIBER_FIELDS = ("EZ", "DB", "DR", "2J")


@st.composite
def cash_claims(draw, rx: int, rebill: bytes | None = None) -> bytes:
    """A cash B1 of a controlled drug in the fixtures' shape, its values varied: every
    field plausible (names, addresses, dates, IDs, quantities), up to three of them wild.
    ``rebill``: a B3 of that B1's fill (its Rx, fill number and date), all else drawn anew."""
    wild = draw(st.sets(st.sampled_from([*sorted(FIELDS), "D1"]), max_size=3))
    value = {code: draw(FIELDS[code][code in wild]) for code in FIELDS}
    soon = TODAY + dt.timedelta(days=3)
    dos = draw(st.dates(TODAY - dt.timedelta(days=400), soon if "D1" in wild else TODAY))
    if rebill is not None:
        of = ncpdp.parse(rebill)
        value["D3"] = ncpdp.find(of.transactions[0], "07").get("D3")
        rx = int(ncpdp.find(of.transactions[0], "07").get("D2"))
        dos = dt.datetime.strptime(of.header.date_of_service, "%Y%m%d").date()
    written = draw(st.dates(dos - dt.timedelta(days=400), dos + dt.timedelta(days=2)))
    compound = draw(st.integers(0, 4)) == 4  # the compound fixture's shape, now and then
    ndc = draw(st.sampled_from([fx.OXYCODONE_APAP, fx.ALPRAZOLAM, fx.ZOLPIDEM]))
    product = [("E1", "00"), ("D7", "0")] if compound else [("E1", "03"), ("D7", ndc)]
    claim = [("EM", "1"), ("D2", str(rx)), *product]
    claim += [(c, value[c]) for c in CLAIM_FIELDS]
    claim += [("D6", "2" if compound else "1"), ("D8", "0"), ("DE", written.strftime("%Y%m%d"))]
    req = fx.b1_compound() if compound else fx.b1_cash()
    if rebill is not None:
        req.header = fx.header("B3", 1)
    req.header.date_of_service = dos.strftime("%Y%m%d")
    req.segments[1] = Segment("01", [(c, value[c]) for c in PATIENT_FIELDS if value[c]])
    req.transactions[0][:2] = [
        Segment("07", [(c, v) for c, v in claim if v]),
        Segment("03", [(c, value[c]) for c in PRESCRIBER_FIELDS if value[c]]),
    ]
    return ncpdp.build(req)


# Each shipped profile, as the one config file names it for the extract (and so the counter).
PROFILES = {"KY": {}, "KY-2011": {"profile": "KY-2011"}, "ASAP-4.2A": {"profile": "ASAP-4.2A"}}


@pytest.fixture(params=sorted(PROFILES))
def counter_store(request, tmp_path):
    """A real store with the fixture pharmacy, the real counter (Router) over it, reading
    the [extract] section of the profile under test."""
    from _adapter_helpers import real_counter

    url = f"sqlite:///{tmp_path / 'store.db'}"
    extract = PROFILES[request.param]
    with real_counter(url, tmp_path, schedule_of, extract=extract) as (router, sessions):
        yield router, sessions, extract


_rx = iter(range(1, 10**9))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_claim_paid_as_captured_is_held_back_at_extract(counter_store, tmp_path, data):
    from _extract_helpers import settings as extract_settings
    from sqlalchemy import select

    from cashcapture.core.store import RecordReject
    from cashcapture.core.store.types import utcnow
    from extract.daily import Checker, extract

    router, sessions, profile = counter_store
    claims = [data.draw(cash_claims(next(_rx))) for _ in range(data.draw(st.integers(1, 4)))]

    async def send(batch: list[bytes]) -> list:
        return [await router.handle(c) for c in batch]

    # some fills rebilled (B3) with other values, revised before the extract (drawn now:
    # every draw comes before the store is touched, as hypothesis may stop at any draw)
    rebills = {c: data.draw(cash_claims(0, rebill=c)) for c in claims if data.draw(st.booleans())}
    replies = asyncio.run(send(claims))
    captured = [c for c, r in zip(claims, replies, strict=True) if _captured(r)]
    replies += asyncio.run(send([rebills[c] for c in captured if c in rebills]))
    for r in replies:  # every reject names a code (511-FB never empty)
        for txn in ncpdp.parse(r.data).transactions:
            assert all(ncpdp.find(txn, "21").get_all("FB"))
    # the extract as it runs the next day, with the counter's drug list
    tomorrow = TOMORROW
    cfg = extract_settings(tmp_path, zero_reports="off", state="KY", **profile)
    checker = Checker(cfg.extract.rules(), tomorrow, drug_list=set(fx_schedules()))
    result = extract(
        sessions,
        cfg,
        TODAY,
        now=utcnow() + dt.timedelta(days=1),
        checker=checker,
    )
    with sessions() as s:
        held = [r.message for r in s.scalars(select(RecordReject))]
    assert held == [] and result.rejected == 0, held
    assert not result.failed, [f.errors for f in result.failed]
    assert result.records == len(captured)


def _captured(reply) -> bool:
    return reply.status == "P" and b"captured for PMP" in reply.data


def fx_schedules() -> dict[str, str]:
    from _adapter_helpers import SCHEDULES

    return SCHEDULES


def test_over_tcp_the_state_s_refusal_is_a_reject_and_nothing_is_captured(migrated_db_url):
    """The served counter (real TCP, SQLite and PostgreSQL): an SSN the state refuses is
    reject CY naming the field, no fill is stored; the good claim beside it is captured."""
    from _adapter_helpers import Client, build, register_pharmacy, rejects, statuses
    from test_server import Running, fills, make_config

    register_pharmacy(migrated_db_url)
    running = Running(make_config(migrated_db_url))
    try:
        with Client(running.ports["stx"]) as c:
            refused = c.exchange(build(with_patient(b1(rx=501), CX="01", CY="000123456")))
            assert statuses(refused) == ["R"] and rejects(refused) == ["CY"]
            assert b"PMP: Patient ID (PAT03)" in refused
            assert fills(migrated_db_url) == []
            assert statuses(c.exchange(build(b1(rx=502)))) == ["P"]
        [fill] = fills(migrated_db_url)
        assert fill.rx_number == "502"
    finally:
        running.stop()


def test_a_fill_for_several_states_meets_each_state_s_rules():
    """An SSN in area 773: issued by the SSA since 2011 (KY today takes it), refused by the
    2011 guide's rules. Judged for both, the claim is rejected once, naming the field."""
    from cashcapture.core.pmp.rules.ky import KY_2011

    req = with_patient(b1(), CX="01", CY="773123456")
    assert judge(req, rules=KY).status == "P"
    assert judge(req, rules=KY_2011).status == "R"
    d = judge(req, rules=(KY, KY_2011))
    codes, text = answer(d)
    assert d.status == "R" and codes == ["CY"] and text.count("PMP: Patient ID") == 1
    assert judge(req, rules=()).status == "P"  # no state's rules: the capture's only


def test_the_counter_judges_by_the_rules_of_each_state_the_fill_goes_to(migrated_db_url, tmp_path):
    """As the extract sends it: an Ohio pharmacy's fill goes to Ohio's PMP (the generic
    ASAP 4.2A profile, which takes an SSN Kentucky refuses), and, shipped by mail to a
    Kentucky resident from a pharmacy registered with Kentucky, to Kentucky's as well."""
    from _adapter_helpers import build, real_counter, statuses

    from cashcapture.core.store import Pharmacy
    from cashcapture.core.store.models import PharmacyRegistration

    refused_ssn = {"CX": "01", "CY": "000123456"}  # area 000: KY's rules refuse it
    ohio_too = {"states": {"OH": "ASAP-4.2A"}}
    with real_counter(
        migrated_db_url, tmp_path, schedule_of, fixture_pharmacy=False, **ohio_too
    ) as (router, sessions):
        with sessions.begin() as s:
            ohio = Pharmacy(dea="FP1234563", npi=fx.PHARMACY_NPI, name="Buckeye", state="OH")
            ohio.mail_order = True
            s.add(ohio)
            s.flush()
            s.add(PharmacyRegistration(pharmacy_id=ohio.id, state="KY", submitter_id="BUCKEYE"))

        async def send(*claims):
            return [(await router.handle(build(c))).data for c in claims]

        in_ohio, to_kentucky = asyncio.run(
            send(
                with_patient(b1(rx=601), **refused_ssn, CO="OH", CP="43215"),
                with_patient(b1(rx=602), **refused_ssn, CO="KY"),
            )
        )
    assert statuses(in_ohio) == ["P"]  # Ohio's rules only: judged by KY's, it was refused
    assert statuses(to_kentucky) == ["R"]  # Ohio's and Kentucky's: KY refuses the SSN
    assert b"PMP: Patient ID (PAT03)" in to_kentucky
    assert router.rules_for(None, ncpdp.parse(build(b1()))) == (router.rules,)


def test_a_registration_made_while_serving_is_seen_after_a_reload(migrated_db_url, tmp_path):
    """`pharmacy register` while `serve` runs: the counter keeps what it looked up until
    SIGHUP (Router.reload), then judges mail order into the new state by its rules too."""
    from _adapter_helpers import real_counter

    from cashcapture.core.store.models import Pharmacy, PharmacyRegistration

    req = with_patient(b1(), CO="OH", CP="43215")
    with real_counter(migrated_db_url, tmp_path, schedule_of, states={"OH": "ASAP-4.2A"}) as (
        router,
        sessions,
    ):
        with sessions.begin() as s:
            ph = s.query(Pharmacy).one()
            ph.mail_order = True
        with sessions() as s:
            pid = router._pharmacy_id(s, fx.PHARMACY_NPI)
        assert router.rules_for(pid, req) == (router.rules,)  # KY only: not registered in OH
        with sessions.begin() as s:
            s.add(PharmacyRegistration(pharmacy_id=pid, state="OH", submitter_id="BLUEGRASS"))
        with sessions() as s:
            router._pharmacy_id(s, fx.PHARMACY_NPI)
        assert router.rules_for(pid, req) == (router.rules,)  # the lookup is kept ...
        router.reload(schedule_of)
        with sessions() as s:
            router._pharmacy_id(s, fx.PHARMACY_NPI)
        ohio = router.rules_by_state["OH"]
        assert router.rules_for(pid, req) == (router.rules, ohio)  # ... until a reload
