"""Plain value classes of an ASAP file: what the writer takes and the reader returns.

One class per segment (Header covers TH and IS). Attribute names are the
`field` column of cashcapture/core/pmp/asap/data/fields.csv, so the element table maps each
element to its attribute for every ASAP version. Codes and counters stay
strings exactly as written in the file (refills "5", fill number "0" or "01");
dates are `date`, quantities `Decimal`, so that read(write(x)) == x.
Attributes a version does not have (e.g. 4.2A's `sig` in a 4.1 file) must be
left at their default.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

# DSP01 reporting status
NEW = "00"
REVISED = "01"
VOID = "02"

# DSP13 partial fill: the store keeps the 4.1 codes the counter captures (01 a partial
# fill, 02 not); from 4.2 on, 00 is "not a partial fill" and 01..99 the partial's
# number. Stored code -> the code each version writes (absent: written as stored).
PARTIAL_FILL_CODES: dict[str, dict[str, str]] = {
    "4.1": {},
    "4.2": {"02": "00"},
    "4.2A": {"02": "00"},
}
# Whether a version's DSP13 numbers a partial fill (01 the first, 02 the second ...)
# rather than only saying it is one (4.1's 01).
PARTIAL_FILL_NUMBERED: dict[str, bool] = {"4.1": False, "4.2": True, "4.2A": True}

# DSP16 classification code for payment type (4.1 / 4.2 list)
PAY_PRIVATE = "01"  # cash, charge, credit card: every cash-capture fill
PAY_MEDICAID = "02"
PAY_MEDICARE = "03"
PAY_COMMERCIAL = "04"
PAY_MILITARY_VA = "05"
PAY_WORKERS_COMP = "06"
PAY_INDIAN_NATIONS = "07"
PAY_OTHER = "99"
# DSP16 by the name a payer route gives its class in the config ([[payers]] payment_type).
PAYMENT_TYPES = {
    "private_pay": PAY_PRIVATE,
    "medicaid": PAY_MEDICAID,
    "medicare": PAY_MEDICARE,
    "commercial": PAY_COMMERCIAL,
    "military_va": PAY_MILITARY_VA,
    "workers_comp": PAY_WORKERS_COMP,
    "indian_nations": PAY_INDIAN_NATIONS,
    "other": PAY_OTHER,
}

# DSP07 / CDI02 product ID qualifier
PRODUCT_NDC = "01"
PRODUCT_COMPOUND = "06"

# PAT02 patient ID qualifier
ID_MILITARY = "01"
ID_STATE = "02"
ID_UNIQUE_SYSTEM = "03"
ID_GREEN_CARD = "04"
ID_PASSPORT = "05"
ID_DRIVERS_LICENSE = "06"
ID_SSN = "07"
ID_TRIBAL = "08"
ID_OTHER = "99"  # cardholder ID

# Zero report patient (PAT07 / PAT08)
ZERO_LAST_NAME = "REPORT"
ZERO_FIRST_NAME = "ZERO"


@dataclass(frozen=True, slots=True)
class Header:
    """TH and IS: file-level settings. TT01 repeats control_number."""

    control_number: str  # TH02, unique per file
    created: datetime  # TH05 CCYYMMDD + TH06 HHMMSS (seconds precision)
    version: str = "4.1"  # TH01
    transaction_type: str = "01"  # TH03 send
    response_id: str = ""  # TH04
    file_type: str = "P"  # TH07 P production / T test
    routing_number: str = ""  # TH08
    terminator: str = "~"  # TH09 segment terminator
    source_id: str = "KY"  # IS01 (KY: always "KY")
    source_name: str = "PMP Program"  # IS02 (KY: always "PMP Program")
    message: str = ""  # IS03 (zero report: #CCYYMMDD#-#CCYYMMDD#)


@dataclass(frozen=True, slots=True)
class Pharmacy:
    """PHA. KY identifies the pharmacy by its DEA (PHA03)."""

    dea: str = ""
    npi: str = ""
    ncpdp_id: str = ""
    name: str = ""
    address1: str = ""
    address2: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    phone: str = ""
    contact_name: str = ""
    chain_site_id: str = ""
    permit_number: str = ""  # 4.2A PHA13


@dataclass(frozen=True, slots=True)
class Patient:
    """PAT."""

    last_name: str = ""
    first_name: str = ""
    id_jurisdiction: str = ""  # PAT01 state of a state ID / driver's license
    id_qualifier: str = ""  # PAT02, see ID_* constants
    patient_id: str = ""  # PAT03
    add_id_jurisdiction: str = ""
    add_id_qualifier: str = ""
    add_id: str = ""
    middle_name: str = ""
    prefix: str = ""
    suffix: str = ""
    address1: str = ""
    address2: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    phone: str = ""
    birth_date: date | None = None
    gender: str = ""  # M / F / U
    species: str = ""
    location: str = ""
    country: str = ""  # PAT22, non-US residents only
    animal_name: str = ""


@dataclass(frozen=True, slots=True)
class Prescriber:
    """PRE."""

    dea: str = ""
    npi: str = ""
    dea_suffix: str = ""
    state_license: str = ""
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    phone: str = ""  # 4.2A PRE08
    xdea: str = ""  # 4.2A PRE09


@dataclass(frozen=True, slots=True)
class Ingredient:
    """CDI: one ingredient of a compound; sequence "1", "2", ..."""

    sequence: str = ""
    product_id: str = ""
    quantity: Decimal | None = None
    product_qualifier: str = PRODUCT_NDC
    dosage_units: str = ""


@dataclass(frozen=True, slots=True)
class AdditionalInfo:
    """AIR (optional)."""

    state: str = ""
    serial_number: str = ""
    id_jurisdiction: str = ""
    id_qualifier: str = ""
    person_id: str = ""
    relationship: str = ""
    last_name: str = ""
    first_name: str = ""
    pharmacist_last_name: str = ""
    pharmacist_first_name: str = ""
    pickup_qualifier: str = ""  # 4.2A AIR11


@dataclass(frozen=True, slots=True)
class Dispensation:
    """DSP with its PRE, CDI... and AIR: one record (one fill) of the file."""

    rx_number: str = ""
    date_filled: date | None = None
    product_id: str = ""  # NDC, 11 digits, no dashes (compound: 99999...)
    quantity: Decimal | None = None
    status: str = NEW  # DSP01 00 new / 01 revised / 02 void
    date_written: date | None = None
    refills_authorized: str = ""
    fill_number: str = ""  # DSP06 "0" first fill, "01".."99" refills
    product_qualifier: str = PRODUCT_NDC
    days_supply: str = ""
    dosage_units: str = ""  # DSP11 01 each / 02 ml / 03 g
    origin: str = ""  # DSP12
    partial_fill: str = ""  # DSP13
    pharmacist_npi: str = ""
    pharmacist_license: str = ""
    payment_type: str = ""  # DSP16, see PAY_* constants
    date_sold: date | None = None
    rxnorm_code: str = ""
    erx_reference: str = ""
    rxnorm_qualifier: str = ""  # 4.2A
    erx_order_number: str = ""  # 4.2A
    quantity_prescribed: str = ""  # 4.2A
    sig: str = ""  # 4.2A
    treatment_type: str = ""  # 4.2A
    diagnosis_code: str = ""  # 4.2A
    prescriber: Prescriber | None = field(default_factory=Prescriber)
    ingredients: tuple[Ingredient, ...] = ()  # CDI segments of a compound
    additional: AdditionalInfo | None = None  # AIR


@dataclass(frozen=True, slots=True)
class Record:
    """One fill with its pharmacy and patient: the flat unit the extract streams."""

    pharmacy: Pharmacy
    patient: Patient
    fill: Dispensation


@dataclass(frozen=True, slots=True)
class PatientGroup:
    patient: Patient
    fills: tuple[Dispensation, ...]


@dataclass(frozen=True, slots=True)
class PharmacyGroup:
    """PHA ... TP: one per pharmacy DEA in a file."""

    pharmacy: Pharmacy
    patients: tuple[PatientGroup, ...]


@dataclass(frozen=True, slots=True)
class AsapFile:
    header: Header
    pharmacies: tuple[PharmacyGroup, ...] = ()

    def records(self) -> Iterator[Record]:
        """Every fill in file order, flat."""
        for group in self.pharmacies:
            for pg in group.patients:
                for fill in pg.fills:
                    yield Record(group.pharmacy, pg.patient, fill)


def is_zero_report_patient(patient: Patient) -> bool:
    return (
        patient.last_name.upper() == ZERO_LAST_NAME
        and patient.first_name.upper() == ZERO_FIRST_NAME
    )
