"""Pharmacy registry: validation of identifiers and all-or-nothing CSV import.

The state knows a pharmacy by its DEA number (ASAP PHA03), so it is required
and checked: two letters (registrant type, then the first letter of the
registrant's name or 9), six digits and a check digit where
(d1 + d3 + d5) + 2 * (d2 + d4 + d6) ends in d7. The NPI check digit is the
Luhn digit of the number prefixed with 80840. The submitter ID and RegKey go
into the state's file name (PMP_KY_SubmitterID_RegKey_CCYYMMDDHHMMSS.dat), so
the registry takes only what the collector's `file_name` takes: the name's
rule is the one definition. Lookups by provider ID are in
`cashcapture.core.store.repo.find_pharmacy`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cashcapture.core.csvfile import CsvError, rows
from cashcapture.core.ids import dea_ok, npi_ok
from cashcapture.core.pmp.carry import REASON as CARRY_REASON
from cashcapture.core.pmp.carry import carriable
from cashcapture.core.pmp.filenames import file_name
from cashcapture.core.store.models import Pharmacy, PharmacyRegistration

FILE_NAME_PART_MAX = 40  # the registry's column width
_ANY_TIME = datetime(2000, 1, 1)


class RegistryError(ValueError):
    """A bad pharmacy row; the message names the row and column, never patient data."""

    def __init__(self, message: str, column: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.column = column
        self.detail = detail or message


def file_name_part_ok(value: str) -> bool:
    """True when the writer can put ``value`` in a file name as the submitter ID or RegKey."""
    if len(value) > FILE_NAME_PART_MAX:
        return False
    try:
        file_name(value, value, _ANY_TIME)
    except ValueError:
        return False
    return True


#: Named checks of `Column.check`; any other check is a regular expression.
CHECKS: dict[str, Callable[[str], bool]] = {
    "dea": dea_ok,
    "npi": npi_ok,
    "file_name": file_name_part_ok,
}


@dataclass(frozen=True)
class Column:
    name: str  # CSV header and `Pharmacy` attribute
    required: bool
    check: str  # a name in CHECKS, or a regular expression
    what: str  # said in the error

    def clean(self, raw: str | None) -> str | None:
        value = (raw or "").strip()
        if not value:
            if self.required:
                raise ValueError(f"{self.name} is required")
            return None
        if not carriable(value):  # it goes into the state's file as it is
            raise ValueError(f"{self.name} {value!r} {CARRY_REASON}")
        if self.name in ("dea", "state"):
            value = value.upper()
        named = CHECKS.get(self.check)
        if named is not None:
            ok = named(value)
        else:
            ok = re.fullmatch(self.check, value) is not None
        if not ok:
            raise ValueError(f"{self.name} {value!r} is not {self.what}")
        return value


_FILE_NAME_PART = (
    f"letters and digits only, at most {FILE_NAME_PART_MAX} "
    "(it goes into the file name PMP_KY_SubmitterID_RegKey_CCYYMMDDHHMMSS.dat)"
)

_YES_NO = r"(?i)(y|yes|n|no|true|false|1|0)"

#: One table drives `pharmacy add` options, CSV import columns and checks.
COLUMNS: tuple[Column, ...] = (
    Column("dea", True, "dea", "a DEA number with a valid check digit"),
    Column("name", True, r".{1,60}", "a name of at most 60 characters"),
    Column("ncpdp_id", False, r"\d{7}", "a 7-digit NCPDP provider ID"),
    Column("npi", False, "npi", "a 10-digit NPI with a valid check digit"),
    Column("address1", False, r".{1,30}", "an address of at most 30 characters"),
    Column("address2", False, r".{1,30}", "an address of at most 30 characters"),
    Column("city", False, r".{1,25}", "a city of at most 25 characters"),
    Column("state", False, r"[A-Z]{2}", "a 2-letter state code"),
    Column("zip", False, r"\d{5}(\d{4})?", "a 5- or 9-digit ZIP code"),
    Column("phone", False, r"\d{10}", "a 10-digit phone number"),
    Column("chain", False, r".{1,60}", "a chain name of at most 60 characters"),
    Column("submitter_id", False, "file_name", _FILE_NAME_PART),
    Column("reg_key", False, "file_name", _FILE_NAME_PART),
    Column("active", False, _YES_NO, "yes or no"),
    Column("mail_order", False, _YES_NO, "yes or no (ships to patients in other states)"),
)
BOOLEAN_COLUMNS = frozenset({"active", "mail_order"})
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


def yes(value: object) -> bool:
    return str(value).lower() in ("y", "yes", "true", "1")


def clean_row(row: Mapping[str, str | None]) -> dict[str, object]:
    """Checked `Pharmacy` fields from raw strings; raises RegistryError naming the column."""
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise RegistryError(f"unknown column {sorted(unknown)[0]!r}")
    fields: dict[str, object] = {}
    for column in COLUMNS:
        try:
            value = column.clean(row.get(column.name))
        except ValueError as exc:
            raise RegistryError(f"column {column.name}: {exc}", column.name, str(exc)) from None
        if value is not None:
            fields[column.name] = value
    for name in BOOLEAN_COLUMNS & set(fields):
        fields[name] = yes(fields[name])
    fields.setdefault("state", "KY")
    return fields


def _conflicts(session: Session, rows: list[dict[str, object]]) -> None:
    """Refuse a DEA, NCPDP ID or NPI used twice in the rows or already registered."""
    for key in ("dea", "ncpdp_id", "npi"):
        seen: dict[object, int] = {}
        for n, fields in enumerate(rows, start=1):
            value = fields.get(key)
            if value is None:
                continue
            if value in seen:
                raise RegistryError(f"row {n}: column {key}: {value} repeats row {seen[value]}")
            seen[value] = n
        if not seen:
            continue
        column = getattr(Pharmacy, key)
        taken = set(session.scalars(select(column).where(column.in_(list(seen)))))
        for value, n in seen.items():
            if value in taken:
                raise RegistryError(f"row {n}: column {key}: {value} is already registered")


def add_pharmacies(session: Session, rows: Iterable[dict[str, object]]) -> list[Pharmacy]:
    """Add cleaned rows after checking them against each other and the registry (no commit)."""
    rows = list(rows)
    _conflicts(session, rows)
    pharmacies = [Pharmacy(**fields) for fields in rows]
    session.add_all(pharmacies)
    session.flush()
    return pharmacies


def read_csv(text: str) -> list[dict[str, object]]:
    """Cleaned rows of a registry CSV (header = column names); first bad row raises.

    Strict CSV (`core.csvfile`): an unterminated quote is an error, not a name.
    A column in the header whose cell is blank is cleared (None); a column not
    in the header is left alone. Row numbers count data rows from 1, as a
    spreadsheet shows them below the header.
    """
    out = []
    try:
        for n, raw in rows(text, COLUMN_NAMES, ("dea", "name")):
            try:
                fields = clean_row(raw)
            except RegistryError as exc:
                raise RegistryError(f"row {n}: {exc}") from None
            for name in raw:
                if name not in fields and name not in _NOT_NULL:
                    fields[name] = None
            out.append(fields)
    except CsvError as exc:
        raise RegistryError(str(exc)) from None
    return out


_NOT_NULL = ("dea", "name", "state", "active", "mail_order")


@dataclass
class Imported:
    added: list[Pharmacy]
    updated: list[tuple[Pharmacy, list[str]]]  # with the names of the columns changed
    unchanged: list[Pharmacy]


def _taken_by_other(session: Session, rows: list[dict[str, object]]) -> None:
    """Refuse an NCPDP ID or NPI another pharmacy than the row's own DEA holds."""
    for key in ("ncpdp_id", "npi"):
        column = getattr(Pharmacy, key)
        wanted = {f[key]: (n, f["dea"]) for n, f in enumerate(rows, 1) if f.get(key)}
        if not wanted:
            continue
        for value, dea in session.execute(
            select(column, Pharmacy.dea).where(column.in_(list(wanted)))
        ):
            n, own = wanted[value]
            if dea != own:
                raise RegistryError(f"row {n}: column {key}: {value} is registered to {dea}")


def import_csv(session: Session, text: str) -> Imported:
    """Add new DEAs, update changed ones, leave equal ones alone: all rows or none (no commit).

    Re-importing the same file changes nothing.
    """
    rows_ = read_csv(text)
    for key in ("dea", "ncpdp_id", "npi"):  # a value twice in the file is a mistake
        seen: dict[object, int] = {}
        for n, fields in enumerate(rows_, start=1):
            value = fields.get(key)
            if value is not None and value in seen:
                raise RegistryError(f"row {n}: column {key}: {value} repeats row {seen[value]}")
            if value is not None:
                seen[value] = n
    _taken_by_other(session, rows_)
    known = {
        p.dea: p
        for p in session.scalars(
            select(Pharmacy).where(Pharmacy.dea.in_([r["dea"] for r in rows_]))
        )
    }
    result = Imported([], [], [])
    new_rows = []
    for fields in rows_:
        pharmacy = known.get(str(fields["dea"]))
        if pharmacy is None:
            new_rows.append({k: v for k, v in fields.items() if v is not None})
            continue
        changed = _apply(pharmacy, fields)
        if changed:
            result.updated.append((pharmacy, changed))
        else:
            result.unchanged.append(pharmacy)
    session.flush()  # updates first: an NPI moved from an old row to a new one is free
    result.added = add_pharmacies(session, new_rows) if new_rows else []
    return result


def _apply(pharmacy: Pharmacy, fields: Mapping[str, object]) -> list[str]:
    """Set the fields that differ; the names of those changed, in column order."""
    changed = []
    for name in COLUMN_NAMES:
        if name in fields and getattr(pharmacy, name) != fields[name]:
            setattr(pharmacy, name, fields[name])
            changed.append(name)
    return changed


def get(session: Session, dea: str) -> Pharmacy:
    pharmacy = session.scalar(select(Pharmacy).where(Pharmacy.dea == dea.strip().upper()))
    if pharmacy is None:
        raise RegistryError(f"no pharmacy with DEA {dea.strip().upper()}")
    return pharmacy


def update_pharmacy(
    session: Session, dea: str, changes: Mapping[str, str]
) -> tuple[Pharmacy, list[str]]:
    """Change the given columns of one pharmacy (a blank value clears an optional one).

    Checked as `add` checks them; returns the pharmacy and the columns changed (no commit).
    """
    pharmacy = get(session, dea)
    if not changes:
        raise RegistryError("nothing to change: give at least one --column value")
    fields: dict[str, object] = {}
    for name, raw in changes.items():
        column = next((c for c in COLUMNS if c.name == name), None)
        if column is None:
            raise RegistryError(f"unknown column {name!r}")
        if not (raw or "").strip() and name in _NOT_NULL:
            raise RegistryError(
                f"column {name}: {name} cannot be blank", name, f"{name} cannot be blank"
            )
        try:
            value: object = column.clean(raw)
        except ValueError as exc:
            raise RegistryError(f"column {name}: {exc}", name, str(exc)) from None
        if name in BOOLEAN_COLUMNS:
            value = yes(value)
        fields[name] = value
    if "dea" in fields and fields["dea"] != pharmacy.dea:
        if session.scalar(select(Pharmacy.id).where(Pharmacy.dea == fields["dea"])):
            raise RegistryError(f"column dea: {fields['dea']} is already registered")
    others = {k: v for k, v in fields.items() if k in ("ncpdp_id", "npi") and v is not None}
    for key, other in others.items():
        holder = session.scalar(
            select(Pharmacy.dea).where(getattr(Pharmacy, key) == other, Pharmacy.id != pharmacy.id)
        )
        if holder:
            raise RegistryError(f"column {key}: {other} is registered to {holder}")
    changed = _apply(pharmacy, fields)
    session.flush()
    return pharmacy, changed


def deactivate(session: Session, dea: str) -> tuple[Pharmacy, bool]:
    """No zero reports from now on; its queued fills still go out. (pharmacy, changed)."""
    pharmacy = get(session, dea)
    was = pharmacy.active
    pharmacy.active = False
    session.flush()
    return pharmacy, was


def list_pharmacies(session: Session) -> list[Pharmacy]:
    return list(session.scalars(select(Pharmacy).order_by(Pharmacy.id)))


def register(
    session: Session, dea: str, state: str, submitter_id: str | None, reg_key: str | None
) -> tuple[Pharmacy, bool]:
    """Register a pharmacy with another state's PMP, or change that registration
    (submitter ID and RegKey as that state issued them). (pharmacy, created); no commit."""
    pharmacy = get(session, dea)
    fields = {"state": state, "submitter_id": submitter_id, "reg_key": reg_key}
    cleaned: dict[str, object] = {}
    for name, raw in fields.items():
        column = next(c for c in COLUMNS if c.name == name)
        try:
            cleaned[name] = column.clean(raw)
        except ValueError as exc:
            raise RegistryError(f"column {name}: {exc}", name, str(exc)) from None
    if cleaned["state"] is None:
        raise RegistryError("column state: state is required", "state", "state is required")
    if cleaned["state"] == pharmacy.state:
        raise RegistryError(
            f"{pharmacy.dea} is a {pharmacy.state} pharmacy: its home registration is "
            "`pharmacy update --submitter-id --reg-key`"
        )
    reg = session.scalar(
        select(PharmacyRegistration).where(
            PharmacyRegistration.pharmacy_id == pharmacy.id,
            PharmacyRegistration.state == cleaned["state"],
        )
    )
    created = reg is None
    if reg is None:
        reg = PharmacyRegistration(pharmacy_id=pharmacy.id, state=cleaned["state"])
        session.add(reg)
    reg.submitter_id = cleaned["submitter_id"]  # type: ignore[assignment]
    reg.reg_key = cleaned["reg_key"]  # type: ignore[assignment]
    session.flush()
    return pharmacy, created


def registrations(session: Session, pharmacy: Pharmacy) -> list[PharmacyRegistration]:
    """The pharmacy's registrations with other states' PMPs, by state."""
    stmt = select(PharmacyRegistration).where(PharmacyRegistration.pharmacy_id == pharmacy.id)
    return list(session.scalars(stmt.order_by(PharmacyRegistration.state)))
