"""The demo's claims, as data: what a day at four Kentucky pharmacies sends the switch.

Pure: a date of service in, D.0 request bytes out. Everything is invented (the
pharmacies are fixtures/pharmacies.csv; patients, prescribers, Rx numbers are
made up; the SSNs only have the shape the SSA issues, so that KASPER's
SSN rule accepts them, and are not known to belong to anybody). `SCENARIOS` is the table the demo
sends in order and checks the answers against; `fixtures/demo/make.py` writes
the same claims to files for `cashcapture send` and `cashcapture certify`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ncpdp
from ncpdp import Request, RequestHeader, Segment, wire

CASH_ROUTE = "999001/CASHONLY"
INSURED_ROUTE = "777001/BLUEPLAN"
CERTIFICATION_ROUTE = "999002/CERTTEST"
VENDOR_CERT_ID = "CCDEMO0001"

# Registered pharmacies (fixtures/pharmacies.csv), by the NPI they send in 201-B1.
BLUEGRASS = "1748392614"  # Bluegrass Family Pharmacy, Frankfort
COMMONWEALTH_101 = "1388504726"  # Commonwealth Drugs #101 (chain CWDRUGS), Louisville

# Drugs (NDC 11) from the shipped drug list, and two that are not on it.
OXYCODONE_APAP = "00406051201"  # CII
HYDROCODONE_APAP = "00121077204"  # CII
ALPRAZOLAM = "00228202910"  # CIV
ZOLPIDEM = "00093007301"  # CIV
TRAMADOL = "00093005801"  # CIV
GABAPENTIN = "00093444301"  # CV in Kentucky only (a state addition)
TESTOSTERONE_CYP = "00143965901"  # CIII, compound ingredient
LISINOPRIL = "00143126701"  # not controlled (in the directory, no schedule)
NEWER_NDC = "00172375960"  # lisinopril under a code the April 2019 directory lacks: unknown
CREAM_BASE = "51927201500"  # compound base (a bulk code: not in the directory)

PRESCRIBER_DEA = "AB1234563"


@dataclass(frozen=True)
class Patient:
    last: str
    first: str
    ssn: str
    dob: dt.date
    gender: int  # 305-C5: 1 male, 2 female
    street: str
    city: str
    zip: str

    def segment(self) -> Segment:
        return _seg(
            "01",
            ("CX", "01"),  # Social Security Number -> PAT02 07
            ("CY", self.ssn),
            ("C4", self.dob),
            ("C5", self.gender),
            ("CA", self.first),
            ("CB", self.last),
            ("CM", self.street),
            ("CN", self.city),
            ("CO", "KY"),
            ("CP", self.zip),
        )


HOLLOWAY = Patient(
    "HOLLOWAY", "MARGARET", "401559021", dt.date(1968, 7, 4), 2, "412 WOODLAND AVE",
    "LEXINGTON", "40502",
)  # fmt: skip
PRUITT = Patient(
    "PRUITT", "DALE", "402118734", dt.date(1955, 1, 22), 1, "88 RIVER RD", "FRANKFORT", "40601",
)  # fmt: skip
OKAFOR = Patient(
    "OKAFOR", "GRACE", "403226518", dt.date(1990, 11, 30), 2, "2710 BARDSTOWN RD",
    "LOUISVILLE", "40205",
)  # fmt: skip
DUNCAN_PO_BOX = Patient(
    "DUNCAN", "ROY", "404330917", dt.date(1949, 5, 9), 1, "PO BOX 118", "HAZARD", "41701",
)  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """One claim line of the scenario: what it is, and the drug, patient and amounts."""

    rx: int
    ndc: str
    qty: str
    days: int
    patient: Patient = HOLLOWAY
    gross: str = "27.00"
    fill: int = 0
    refills: int = 0
    prescriber_dea: bool = True
    compound: tuple[tuple[str, str, str], ...] = ()  # (NDC, quantity, cost) per ingredient


def _seg(seg_id: str, *fields: tuple[str, Any]) -> Segment:
    return Segment(seg_id, [(c, wire(c, v)) for c, v in fields])


def _header(tc: str, route: str, provider: str, day: dt.date) -> RequestHeader:
    bin_, _, pcn = route.partition("/")
    return RequestHeader.make(
        bin=bin_,
        transaction_code=tc,
        pcn=pcn,
        transaction_count=1,
        service_provider_id_qualifier="01",  # NPI
        service_provider_id=provider,
        date_of_service=day.strftime("%Y%m%d"),
        software_vendor_cert_id=VENDOR_CERT_ID,
    )


def _insurance(route: str) -> Segment:
    if route == INSURED_ROUTE:
        return _seg("04", ("C2", "ZXW998877001"), ("C1", "KYGROUP7"), ("C3", "001"), ("C6", 1))
    return _seg("04", ("C2", "CASH"))


def _claim_segment(c: Claim, day: dt.date, *, reversal: bool = False) -> Segment:
    if reversal:
        return _seg("07", ("EM", "1"), ("D2", c.rx), ("E1", "03"), ("D7", c.ndc), ("D3", c.fill))
    product = ("00", "0") if c.compound else ("03", c.ndc)
    return _seg(
        "07",
        ("EM", "1"),  # Rx billing
        ("D2", c.rx),
        ("E1", product[0]),
        ("D7", product[1]),
        ("E7", Decimal(c.qty)),
        ("D3", c.fill),
        ("D5", c.days),
        ("D6", 2 if c.compound else 1),
        ("D8", "0"),
        ("DE", day - dt.timedelta(days=2)),
        ("DF", c.refills),
        ("DJ", 1),  # written
        ("28", "GM" if c.compound else "EA"),
    )


def _prescriber(c: Claim) -> Segment:
    if not c.prescriber_dea:
        return _seg("03", ("DR", "BAKER"), ("2J", "MARY"))  # name only, no DEA
    return _seg("03", ("EZ", "12"), ("DB", PRESCRIBER_DEA), ("DR", "BAKER"), ("2J", "MARY"))


def _compound(c: Claim) -> Segment:
    fields: list[tuple[str, str]] = [
        ("EF", "11"),  # cream
        ("EG", wire("EG", 2)),  # grams
        ("EC", wire("EC", len(c.compound))),
    ]
    for ndc, qty, cost in c.compound:
        fields += [
            ("RE", "03"),
            ("TE", ndc),
            ("ED", wire("ED", Decimal(qty))),
            ("EE", wire("EE", Decimal(cost))),
            ("UE", "01"),
        ]
    return Segment("10", fields)


def _pricing(c: Claim) -> Segment:
    gross = Decimal(c.gross)
    return _seg(
        "11",
        ("D9", gross - Decimal("2.50")),
        ("DC", Decimal("2.50")),
        ("DQ", gross),
        ("DU", gross),
        ("DN", "01"),
    )


def request(tc: str, route: str, provider: str, c: Claim, day: dt.date) -> Request:
    """A one-transaction B1, B2 or B3 for claim line ``c`` on ``day``."""
    if tc == "B2":
        return Request(
            _header(tc, route, provider, day),
            [_insurance(route)],
            [[_claim_segment(c, day, reversal=True)]],
        )
    txn = [_claim_segment(c, day), _prescriber(c)]
    if c.compound:
        txn.append(_compound(c))
    txn.append(_pricing(c))
    return Request(
        _header(tc, route, provider, day), [_insurance(route), c.patient.segment()], [txn]
    )


@dataclass(frozen=True)
class Scenario:
    """One message the demo sends, and the answer a correct adapter gives."""

    name: str
    what: str
    build: Callable[[dt.date], bytes]
    expect_status: str  # 112-AN of the (only) transaction: P D A R
    expect_rejects: tuple[str, ...] = ()
    captured: bool = False  # a fill is created, revised or voided
    tags: tuple[str, ...] = field(default=())


def _msg(tc: str, route: str, provider: str, c: Claim) -> Callable[[dt.date], bytes]:
    return lambda day: ncpdp.build(request(tc, route, provider, c, day))


_OXY = Claim(5000001, OXYCODONE_APAP, "30", 5)
_ALPRAZOLAM = Claim(5000004, ALPRAZOLAM, "60", 30, PRUITT, gross="10.70", refills=2)
_ZOLPIDEM = Claim(6000005, ZOLPIDEM, "30", 30, OKAFOR, gross="14.50", refills=1)
_ZOLPIDEM_REBILL = Claim(6000005, ZOLPIDEM, "28", 28, OKAFOR, gross="13.60", refills=1)
_COMPOUND = Claim(
    5000003, "0", "60", 30, PRUITT, gross="69.00", refills=1,
    compound=((TESTOSTERONE_CYP, "3", "42.00"), (CREAM_BASE, "57", "11.40")),
)  # fmt: skip

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "cash-controlled",
        "cash oxycodone/APAP (CII): paid, patient pays 100%, captured",
        _msg("B1", CASH_ROUTE, BLUEGRASS, _OXY), "P", captured=True,
    ),
    Scenario(
        "cash-retransmitted",
        "the same claim sent again byte for byte: duplicate, the stored answer",
        _msg("B1", CASH_ROUTE, BLUEGRASS, _OXY), "D",
    ),
    Scenario(
        "cash-not-controlled",
        "cash lisinopril: paid, not a controlled substance, not captured",
        _msg("B1", CASH_ROUTE, BLUEGRASS, Claim(5000002, LISINOPRIL, "90", 90, gross="6.50")),
        "P",
    ),
    Scenario(
        "cash-compound",
        "cash compound cream with testosterone (CIII): captured with its ingredients",
        _msg("B1", CASH_ROUTE, BLUEGRASS, _COMPOUND), "P", captured=True,
    ),
    Scenario(
        "cash-new-ndc",
        "cash claim for an NDC newer than the drug directory: paid, captured unclassified "
        "(`cashcapture drugs unknown`), reported once a newer directory schedules it",
        _msg("B1", CASH_ROUTE, BLUEGRASS, Claim(5000010, NEWER_NDC, "30", 30, gross="8.40")),
        "P", captured=True, tags=("unclassified",),
    ),
    Scenario(
        "cash-gabapentin",
        "cash gabapentin: schedule V in Kentucky only (a state addition), captured",
        _msg("B1", CASH_ROUTE, COMMONWEALTH_101,
             Claim(6000001, GABAPENTIN, "90", 30, OKAFOR, gross="12.30", refills=5)),
        "P", captured=True,
    ),
    Scenario(
        "cash-to-reverse",
        "cash alprazolam (CIV): paid and captured ...",
        _msg("B1", CASH_ROUTE, BLUEGRASS, _ALPRAZOLAM), "P", captured=True,
    ),
    Scenario(
        "cash-reversal",
        "... then reversed (B2): approved, the fill voided, never reported",
        _msg("B2", CASH_ROUTE, BLUEGRASS, _ALPRAZOLAM), "A", captured=True,
    ),
    Scenario(
        "cash-to-rebill",
        "cash zolpidem (CIV), 30 tablets: paid and captured ...",
        _msg("B1", CASH_ROUTE, COMMONWEALTH_101, _ZOLPIDEM), "P", captured=True,
    ),
    Scenario(
        "cash-rebill",
        "... then rebilled (B3) for 28 tablets: the fill revised",
        _msg("B3", CASH_ROUTE, COMMONWEALTH_101, _ZOLPIDEM_REBILL), "P", captured=True,
    ),
    Scenario(
        "cash-po-box",
        "cash tramadol for a patient with a PO Box address: rejected at the counter",
        _msg("B1", CASH_ROUTE, BLUEGRASS, Claim(5000006, TRAMADOL, "20", 5, DUNCAN_PO_BOX)),
        "R", ("CM",),
    ),
    Scenario(
        "cash-no-prescriber-dea",
        "cash oxycodone without the prescriber's DEA: rejected at the counter",
        _msg("B1", CASH_ROUTE, BLUEGRASS,
             Claim(5000007, OXYCODONE_APAP, "12", 3, PRUITT, prescriber_dea=False)),
        "R", ("EZ", "25"),
    ),
    Scenario(
        "insured-controlled",
        "insured hydrocodone/APAP (CII): forwarded, the payer pays, captured",
        _msg("B1", INSURED_ROUTE, COMMONWEALTH_101,
             Claim(6000002, HYDROCODONE_APAP, "12", 3, OKAFOR, gross="10.85")),
        "P", captured=True,
    ),
    Scenario(
        "insured-not-controlled",
        "insured lisinopril: forwarded, paid, not captured",
        _msg("B1", INSURED_ROUTE, BLUEGRASS, Claim(5000008, LISINOPRIL, "90", 90, PRUITT)),
        "P",
    ),
    Scenario(
        "insured-po-box",
        "insured tramadol, PO Box address: the payer pays; the state's rules hold the record",
        _msg("B1", INSURED_ROUTE, BLUEGRASS,
             Claim(5000009, TRAMADOL, "20", 5, DUNCAN_PO_BOX, gross="9.20")),
        "P", captured=True, tags=("held-back",),
    ),
    Scenario(
        "certification",
        "a vendor's test claim to the certification BIN, no prescriber DEA: findings, "
        "never reported",
        _msg("B1", CERTIFICATION_ROUTE, BLUEGRASS,
             Claim(7000001, OXYCODONE_APAP, "10", 2, prescriber_dea=False)),
        "R", ("EZ", "25"),
    ),
)  # fmt: skip


def messages(day: dt.date) -> dict[str, bytes]:
    """Scenario name -> request bytes for ``day``."""
    return {s.name: s.build(day) for s in SCENARIOS}


# The registry the demo starts with: fixtures/pharmacies.csv, kept here so the demo
# needs no file (a test keeps the two equal).
PHARMACIES_CSV = """\
dea,name,ncpdp_id,npi,address1,address2,city,state,zip,phone,chain,submitter_id,reg_key,active
BB4827133,Bluegrass Family Pharmacy,1800011,1748392614,101 W Main St,,Frankfort,KY,40601,5025550101,,,KYREG4827133,yes
BK3055185,Kentucky River Drug,1800022,1629473855,455 E Short St,Suite 2,Lexington,KY,40507,8595550122,,,KYREG3055185,yes
BC7710420,Commonwealth Drugs #101,1800033,1388504726,2100 Bardstown Rd,,Louisville,KY,40205,5025550133,Commonwealth Drugs,CWDRUGS,KYREGCWDRUGS,yes
BC7710432,Commonwealth Drugs #102,1800044,1388504734,800 Campbell Ln,,Bowling Green,KY,42104,2705550144,Commonwealth Drugs,CWDRUGS,KYREGCWDRUGS,yes
"""  # noqa: E501
