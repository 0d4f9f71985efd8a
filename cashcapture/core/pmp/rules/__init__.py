"""State rules as data: one CSV table per state and ASAP version, plus shared code tables.

`load(state, version, table_file)` joins the ASAP element table (lengths,
types, ASAP requirement and code lists) with the state's table (its
requirement, element names used in reject reasons, fixed values, code
overrides, named checks, message numbering) into `StateRules`, which the
validator compiles once. A second state is a second CSV and a `load` call.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from cashcapture.core.pmp.asap import Element, table

PO_BOX_REJECT = "reject"
PO_BOX_WARNING = "warning"
PO_BOX_OFF = "off"

# The collector's own PO Box expression, as its warning message prints it. Only the
# message quotes it: the check itself is core.address.is_po_box, shared with the
# counter (this expression also matches POPLAR HILL RD, PROSPECT AVE, SPORT LN).
KY_PO_BOX_PATTERN = r"^\S*P\.?\S*O\.?\S*B?"

# Per-state choices (data/settings.csv): how SSNs are checked (core.ids.SSN_AREA_RULES)
# and how a compound is reported (DSP07/DSP08 of the first ingredient, or 06 + CDI).
COMPOUND_FIRST_INGREDIENT = "first_ingredient"
COMPOUND_CODE_06 = "code_06"
SETTINGS = {"ssn": ("ssa", "2011"), "compound": (COMPOUND_FIRST_INGREDIENT, COMPOUND_CODE_06)}

# Prefix of state element names by segment (the guide: DIS_PRODUCT_ID for DSP08).
_STATE_PREFIX = {"DSP": "DIS"}

# Checks the validator knows (names used in the `checks` column).
KNOWN_CHECKS = frozenset(
    {
        "time",
        "dea",
        "us_state",
        "us_state_unless_foreign",
        "zip_unless_foreign",
        "country",
        "patient_id",
        "po_box",
        "not_future",
        "after_1900",
        "written_before_filled",
        "ndc",
        "drug_list",
        "positive",
        "sequence",
    }
)


@dataclass(frozen=True, slots=True)
class ElementRule:
    """What one element must satisfy in this state, and how messages name it."""

    element: Element
    required: bool
    codes: frozenset[str] | None
    fixed: str | None
    checks: tuple[str, ...]
    state_name: str  # e.g. PAT_PATIENT_ADDRESS_1
    number: int  # element number printed in "Element (n)"

    @property
    def id(self) -> str:
        return self.element.id


@dataclass(frozen=True, slots=True)
class PatientIdFormat:
    qualifier: str
    pattern: re.Pattern[str] | None  # None: Social Security Number rules
    jurisdiction_required: bool


@dataclass(frozen=True)
class StateRules:
    state: str
    version: str
    segments: dict[str, tuple[ElementRule, ...]]
    messages: dict[str, tuple[str, str]]  # key -> (message text, reject reason)
    us_states: frozenset[str]
    countries: frozenset[str]
    patient_ids: dict[str, PatientIdFormat]
    po_box: str = PO_BOX_WARNING
    min_birth_year: int = 1901  # "must be greater than 1900"
    ssn: str = "ssa"  # SSN area rule, a key of core.ids.SSN_AREA_RULES
    compound: str = COMPOUND_FIRST_INGREDIENT
    by_id: dict[str, ElementRule] = field(default_factory=dict)

    def rule(self, element_id: str) -> ElementRule:
        return self.by_id[element_id]


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def default_state_name(el: Element) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", el.name).strip("_").upper()
    return f"{_STATE_PREFIX.get(el.segment, el.segment)}_{words}"


@cache
def code_tables() -> tuple[frozenset[str], frozenset[str]]:
    """(US states and territories, countries) from the KY guide's Appendix B tables."""
    states = frozenset(r["code"] for r in _rows("us-states.csv"))
    countries = frozenset(r["code"] for r in _rows("countries.csv"))
    return states, countries


def load(
    state: str,
    version: str,
    table_file: str,
    *,
    po_box: str = PO_BOX_WARNING,
    patient_id_file: str = "patient-ids.csv",
    settings: str | None = None,
) -> StateRules:
    """`settings`: the key of this rule set's rows in data/settings.csv (default `state`)."""
    t = table(version)
    own = {r["element_id"]: r for r in _rows(table_file)}
    unknown = set(own) - set(t.by_id)
    if unknown:
        raise ValueError(f"{table_file}: elements not in ASAP {version}: {sorted(unknown)}")
    segments: dict[str, tuple[ElementRule, ...]] = {}
    for seg, elements in t.segments.items():
        rules = []
        for el in elements:
            row = own.get(el.id, {})
            req = row.get("requirement", "")
            checks = tuple(c for c in row.get("checks", "").split(";") if c)
            bad = set(checks) - KNOWN_CHECKS
            if bad:
                raise ValueError(f"{table_file}: {el.id}: unknown checks {sorted(bad)}")
            codes = row.get("codes", "")
            rules.append(
                ElementRule(
                    element=el,
                    required=req in ("Required", "Situational") or el.requirement == "Required",
                    codes=frozenset(codes.split(";")) if codes else frozenset(el.codes) or None,
                    fixed=row.get("fixed_value") or None,
                    checks=checks,
                    state_name=row.get("state_name") or default_state_name(el),
                    number=int(row.get("message_number") or el.position),
                )
            )
        segments[seg] = tuple(rules)
    messages = {r["key"]: (r["text"], r["reason"]) for r in _rows("messages.csv")}
    patient_ids = {
        r["qualifier"]: PatientIdFormat(
            r["qualifier"],
            None if r["pattern"] == "ssn" else re.compile(r["pattern"] + r"\Z"),
            r["jurisdiction"] == "required",
        )
        for r in _rows(patient_id_file)
    }
    states, countries = code_tables()
    return StateRules(
        state=state,
        version=version,
        segments=segments,
        messages=messages,
        us_states=states,
        countries=countries,
        patient_ids=patient_ids,
        po_box=po_box,
        **state_settings(settings or state),
        by_id={r.element.id: r for rs in segments.values() for r in rs},
    )


def state_settings(key: str) -> dict[str, Any]:
    """The settings rows of one rule set (KY, KY-2011, ASAP), checked against SETTINGS."""
    out: dict[str, Any] = {}
    for r in _rows("settings.csv"):
        if r["rules"] != key:
            continue
        allowed = SETTINGS.get(r["setting"])
        if allowed is None or r["value"] not in allowed:
            raise ValueError(f"settings.csv: {key}: bad {r['setting']} = {r['value']!r}")
        out[r["setting"]] = r["value"]
    return out


def for_state(state: str) -> StateRules:
    """The rules table of a state by its code (KY)."""
    state = state.upper()
    if state == "KY":
        from cashcapture.core.pmp.rules.ky import KY

        return KY
    raise KeyError(f"no rules table for state {state!r}; known: KY")
