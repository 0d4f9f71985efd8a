"""Deterministic sample values (no real people) for fixtures, tests and benchmarks.

Every sample passes the KY rules, 2011's and today's: DEAs carry their check digit,
SSNs are in issued ranges, NDCs are controlled substances from the shipped directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cashcapture.core.pmp.records import (
    ID_DRIVERS_LICENSE,
    ID_SSN,
    NEW,
    PAY_COMMERCIAL,
    PAY_PRIVATE,
    PRODUCT_COMPOUND,
    PRODUCT_NDC,
    AsapFile,
    Dispensation,
    Header,
    Ingredient,
    Patient,
    PatientGroup,
    Pharmacy,
    PharmacyGroup,
    Prescriber,
    Record,
)

# Controlled substances in the shipped KY directory (cashcapture/core/data/ndc_directory.csv).
NDCS = ("00004005801", "00006000513", "00054028425", "12634051694", "50090281706")
NOT_CONTROLLED_NDC = "00071015523"
DAY = date(2024, 3, 4)


def dea(letters: str, six_digits: str) -> str:
    """A DEA number with its check digit."""
    from cashcapture.core.ids import dea_check_digit

    return f"{letters}{six_digits}{dea_check_digit(six_digits)}"


def header(control: str = "CC20240304000001", created: datetime | None = None) -> Header:
    return Header(control_number=control, created=created or datetime(2024, 3, 5, 2, 0, 0))


def pharmacy(i: int) -> Pharmacy:
    return Pharmacy(
        dea=dea("F" + "ABCDEFGHIJ"[i % 10], f"{100000 + i * 7919 % 900000:06d}"),
        npi=f"{1000000000 + i:010d}",
        ncpdp_id=f"{1800000 + i:07d}",
        name=f"Sample Pharmacy {i}",
        address1=f"{100 + i} Main Street",
        city="Lexington",
        state="KY",
        zip="40507",
        phone="8595550100",
    )


def patient(i: int) -> Patient:
    if i % 3 == 0:
        ident = {
            "id_jurisdiction": "KY",
            "id_qualifier": ID_DRIVERS_LICENSE,
            "patient_id": f"K{i:08d}",
        }
    else:
        area = 100 + i % 600
        area += area == 666  # never issued: refused by the SSA's rules that KY 4.2 applies
        ident = {
            "id_qualifier": ID_SSN,
            "patient_id": f"{area:03d}{10 + i % 89:02d}{1000 + i % 9000:04d}",
        }
    return Patient(
        last_name=f"LAST{i}",
        first_name=f"FIRST{i}",
        address1=f"{10 + i % 900} Elm Street",
        city="Frankfort",
        state="KY",
        zip="40601",
        birth_date=date(1940 + i % 60, 1 + i % 12, 1 + i % 28),
        gender="MFU"[i % 3],
        **ident,
    )


def prescriber(i: int) -> Prescriber:
    return Prescriber(
        dea=dea("B" + "ABCDEFGHJK"[i % 10], f"{200000 + i * 104729 % 800000:06d}"),
        npi=f"{1500000000 + i:010d}",
        last_name=f"DOCTOR{i}",
        first_name="SAM",
    )


def fill(i: int, day: date = DAY) -> Dispensation:
    return Dispensation(
        status=NEW,
        rx_number=f"{4000000 + i}",
        date_written=day - timedelta(days=1 + i % 20),
        refills_authorized=str(i % 6),
        date_filled=day,
        fill_number="0" if i % 4 == 0 else f"{i % 4:02d}",
        product_id=NDCS[i % len(NDCS)],
        quantity=Decimal(30 + i % 60) if i % 5 else Decimal("7.5"),
        days_supply=str(5 + i % 25),
        dosage_units="01",
        payment_type=PAY_PRIVATE if i % 2 == 0 else PAY_COMMERCIAL,
        prescriber=prescriber(i % 50),
    )


def compound_fill(i: int, day: date = DAY) -> Dispensation:
    from dataclasses import replace

    return replace(
        fill(i, day),
        product_qualifier=PRODUCT_COMPOUND,
        product_id="99999000001",
        quantity=Decimal("120"),
        dosage_units="03",
        ingredients=(
            Ingredient("1", NDCS[0], Decimal("2.5"), dosage_units="03"),
            Ingredient("2", NOT_CONTROLLED_NDC, Decimal("117.5"), dosage_units="03"),
        ),
    )


def reported_compound_fill(i: int, day: date = DAY) -> Dispensation:
    """A compound of two controlled ingredients as Kentucky reports it: the first
    is the product (DSP07 01, DSP08 its NDC), the second CDI 1."""
    from dataclasses import replace

    return replace(
        fill(i, day),
        product_qualifier=PRODUCT_NDC,
        product_id=NDCS[0],
        quantity=Decimal("120"),
        dosage_units="03",
        ingredients=(Ingredient("1", NDCS[1], Decimal("2.5"), dosage_units="03"),),
    )


def records(
    n: int, pharmacies: int = 3, fills_per_patient: int = 2, day: date = DAY
) -> Iterator[Record]:
    """n records grouped by pharmacy then patient, as the streaming writer wants them."""
    per_pharmacy = -(-n // pharmacies)
    i = 0
    for p in range(pharmacies):
        ph = pharmacy(p)
        for k in range(per_pharmacy):
            if i >= n:
                return
            pat = patient(p * 1_000_000 + k // fills_per_patient)
            yield Record(ph, pat, fill(i, day))
            i += 1


def sample_file(n: int = 12, pharmacies: int = 3, control: str = "CC20240304000001") -> AsapFile:
    """A small valid file: several pharmacies, several fills per patient."""
    groups: dict[str, tuple[Any, ...]] = {}
    order: list[str] = []
    for r in records(n, pharmacies):
        if r.pharmacy.dea not in groups:
            groups[r.pharmacy.dea] = (r.pharmacy, [])
            order.append(r.pharmacy.dea)
        pats = groups[r.pharmacy.dea][1]
        if pats and pats[-1][0] == r.patient:
            pats[-1][1].append(r.fill)
        else:
            pats.append((r.patient, [r.fill]))
    return AsapFile(
        header(control),
        tuple(
            PharmacyGroup(groups[d][0], tuple(PatientGroup(p, tuple(f)) for p, f in groups[d][1]))
            for d in order
        ),
    )
