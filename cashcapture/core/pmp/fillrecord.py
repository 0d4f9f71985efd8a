"""Fill columns -> ASAP values: the one mapping the extract and the counter share.

The extract selects these columns from the store (text columns as text, ""
for none, computed in SQL) and writes them as a record; the counter builds
the same record from the values it is about to capture, so that it can run
the state's record rules on exactly what the file would carry. Pure: no
database; the column names are `Fill`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cashcapture.core.pmp.asap import table
from cashcapture.core.pmp.asap.codec import encode, row_encoder
from cashcapture.core.pmp.records import (
    NEW,
    PARTIAL_FILL_CODES,
    PARTIAL_FILL_NUMBERED,
    Dispensation,
    Ingredient,
    Patient,
    Pharmacy,
    Prescriber,
    Record,
)

PARTIAL = "01"  # fills.partial_fill of a partial fill (4.1's DSP13 code, as stored)

# ASAP value attribute <- Fill column, per segment, in the extract's row order.
# fmt: off
PATIENT: tuple[tuple[str, str], ...] = (
    ("id_jurisdiction", "patient_id_jurisdiction"),
    ("id_qualifier", "patient_id_qualifier"),
    ("patient_id", "patient_id"),
    ("last_name", "patient_last_name"),
    ("first_name", "patient_first_name"),
    ("middle_name", "patient_middle_name"),
    ("address1", "patient_address1"),
    ("address2", "patient_address2"),
    ("city", "patient_city"),
    ("state", "patient_state"),
    ("zip", "patient_zip"),
    ("phone", "patient_phone"),
    ("birth_date", "patient_dob"),
    ("gender", "patient_gender"),
    ("species", "species"),
    ("country", "patient_country"),
)
DISPENSATION: tuple[tuple[str, str], ...] = (
    ("rx_number", "rx_number"),
    ("date_written", "date_written"),
    ("refills_authorized", "refills_authorized"),
    ("date_filled", "date_of_service"),
    ("product_qualifier", "product_id_qualifier"),
    ("product_id", "ndc"),
    ("quantity", "quantity"),
    ("days_supply", "days_supply"),
    ("dosage_units", "dosage_units"),
    ("origin", "rx_origin"),
    ("partial_fill", "partial_fill"),
    ("pharmacist_npi", "pharmacist_npi"),
    ("payment_type", "payment_type"),
)
PRESCRIBER: tuple[tuple[str, str], ...] = (
    ("dea", "prescriber_dea"),
    ("npi", "prescriber_npi"),
    ("last_name", "prescriber_last_name"),
    ("first_name", "prescriber_first_name"),
)
INGREDIENT: tuple[tuple[str, str], ...] = (
    ("sequence", "sequence"),
    ("product_id", "ndc"),
    ("quantity", "quantity"),
    ("product_qualifier", "product_id_qualifier"),
    ("dosage_units", "dosage_units"),
)
# The DSP elements the extract sets from other columns (DSP01 from the fill's
# state, DSP06 from its fill number), and the column each comes from.
DISPENSATION_DERIVED: tuple[tuple[str, str], ...] = (
    ("status", "state"),
    ("fill_number", "fill_number"),
)
# fmt: on
# Columns whose value goes into the record as it is (dates, quantities, keys that
# are never NULL); every other column becomes text, "" when NULL.
TYPED = frozenset(
    {"patient_dob", "rx_number", "date_written", "date_of_service", "ndc", "quantity"}
)
PAT_NAMES = tuple(n for n, _ in PATIENT)
DSP_NAMES = tuple(n for n, _ in DISPENSATION)
PRE_NAMES = tuple(n for n, _ in PRESCRIBER)


def text(value: object) -> str:
    """A column's value as an element's text ("" for NULL), as SQL's cast gives it."""
    return "" if value is None else str(value)


@functools.cache
def _plan(mapping: tuple[tuple[str, str], ...]) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    columns = tuple(col for _, col in mapping)
    return columns, tuple(col in TYPED for col in columns)


def block(mapping: tuple[tuple[str, str], ...], values: Mapping[str, object]) -> tuple[Any, ...]:
    """One segment's block of the extract's row, from Fill column values."""
    columns, typed = _plan(mapping)
    return tuple(
        [
            v if t else ("" if v is None else str(v))
            for v, t in zip(map(values.get, columns), typed, strict=True)
        ]
    )


def patient_value(values: Sequence[Any]) -> Patient:
    """From the patient block of a row (PATIENT order)."""
    return Patient(**dict(zip(PAT_NAMES, values, strict=True)))


def prescriber_value(values: Sequence[Any]) -> Prescriber:
    return Prescriber(**dict(zip(PRE_NAMES, values, strict=True)))


def fill_number_code(n: int) -> str:
    """DSP06: 0 for the first fill, 01-99 for refills."""
    return "0" if n == 0 else f"{n:02d}"


def dispensation_value(
    values: Sequence[Any],
    status: str,
    fill_number: int,
    prescriber: Prescriber,
    ingredients: tuple[Ingredient, ...] = (),
) -> Dispensation:
    """From the dispensation block of a row (DISPENSATION order)."""
    return Dispensation(
        status=status,
        fill_number=fill_number_code(fill_number),
        prescriber=prescriber,
        ingredients=ingredients,
        **dict(zip(DSP_NAMES, values, strict=True)),
    )


def ingredient_value(values: Mapping[str, object]) -> Ingredient:
    """A compound ingredient from FillIngredient column values."""
    out: dict[str, Any] = {}
    for name, col in INGREDIENT:
        value = values.get(col)
        out[name] = value if col in ("ndc", "quantity") else text(value)
    return Ingredient(**out)


def record(
    values: Mapping[str, object],
    ingredients: Iterable[Mapping[str, object]] = (),
    *,
    pharmacy: Pharmacy | None = None,
    status: str = NEW,
) -> Record:
    """The record the extract would write for a fill holding these column values."""
    fill = dispensation_value(
        block(DISPENSATION, values),
        status,
        int(str(values.get("fill_number") or 0)),
        prescriber_value(block(PRESCRIBER, values)),
        tuple(ingredient_value(i) for i in ingredients),
    )
    return Record(pharmacy or Pharmacy(), patient_value(block(PATIENT, values)), fill)


DSP13 = 13  # partial fill indicator: coded differently from 4.2 on


class Elements:
    """Fill column values -> the element lists the extract writes, for one ASAP version.

    The extract's assembly encodes its rows with these; the counter encodes the
    values it is about to capture with the same, so both hand the state's
    validator the same strings.
    """

    def __init__(self, version: str) -> None:
        self.table = t = table(version)
        self.pat = row_encoder(t, "PAT", PAT_NAMES, Patient())
        dsp = row_encoder(t, "DSP", (*DSP_NAMES, "status", "fill_number"), Dispensation())
        partial = PARTIAL_FILL_CODES[version]

        def dsp_in_version(values: tuple[Any, ...]) -> list[str]:
            """DSP13 as this version codes it (the store keeps 4.1's 01 / 02)."""
            out: list[str] = dsp(values)
            if len(out) > DSP13 and out[DSP13] in partial:
                out[DSP13] = partial[out[DSP13]]
            return out

        self.dsp = dsp_in_version
        self.numbered = PARTIAL_FILL_NUMBERED[version]
        self.pre = row_encoder(t, "PRE", PRE_NAMES, Prescriber())

    def patient(self, values: Mapping[str, object]) -> list[str]:
        out: list[str] = self.pat(block(PATIENT, values))
        return out

    def dispensation(self, values: Mapping[str, object], status: str = NEW) -> list[str]:
        number = fill_number_code(int(str(values.get("fill_number") or 0)))
        out: list[str] = self.dsp((*block(DISPENSATION, values), status, number))
        return out

    def partial_number(self, dsp: list[str], number: int) -> None:
        """DSP13 of the `number`th partial fill of its prescription, in a version that
        numbers them (4.2 on; the store knows only that a fill is partial)."""
        if self.numbered and len(dsp) > DSP13:
            dsp[DSP13] = f"{min(number, 99):02d}"

    def prescriber(self, values: Mapping[str, object]) -> list[str]:
        out: list[str] = self.pre(block(PRESCRIBER, values))
        return out

    def ingredient(self, ingredient: Ingredient) -> list[str]:
        return encode(self.table, "CDI", ingredient)


@functools.cache
def elements(version: str) -> Elements:
    """The Elements of an ASAP version, made once."""
    return Elements(version)
