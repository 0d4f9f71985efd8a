"""The state's record rules at the counter: a claim judged on the record it would become.

The counter builds the ASAP record the extract would write for the fill it is
about to capture (`core.pmp.fillrecord`, the extract's own mapping; a compound
as the state's rules report it) and runs the state's record rules on it
(`core.pmp.validate.validate_record`, the code `extract` and `validate` run).
Each reject-level finding becomes a `capture.Problem`: the NCPDP field that
feeds the element (`capture.FIELD_MAP`), that field's M/I reject code from the
D.0 reject table, and the state's reason. Warnings let the claim pass, as they
let the record go at the collector. What the counter cannot judge is listed
once, in `UNJUDGED`, and skipped.

Pure: the rules, the drug list's look-up and the day come in. Compiled rules
are kept per thread (the validator keeps caches), one per rules table, drug
list and day.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cashcapture.adapter import capture
from cashcapture.core.drugs import controlled_by
from cashcapture.core.pmp import compounds, fillrecord
from cashcapture.core.pmp.asap.codec import RawRecord
from cashcapture.core.pmp.records import PAY_PRIVATE
from cashcapture.core.pmp.rules import StateRules
from cashcapture.core.pmp.validate import REJECT, Validator
from cashcapture.core.pmp.validate import Problem as StateProblem
from ncpdp.dictionary import FIELD_REJECT


@dataclass(frozen=True)
class Unjudged:
    """A part of the state's rules the counter has not got the data for."""

    segments: frozenset[str]  # findings in these ASAP segments are skipped
    rule: str
    why: str


# The one list of what the state checks and the counter cannot, and why.
UNJUDGED: tuple[Unjudged, ...] = (
    Unjudged(
        frozenset({"TH", "IS"}),
        "file header (TH, IS)",
        "written by the extract for the whole file",
    ),
    Unjudged(
        frozenset({"TP", "TT"}),
        "segment counts (TP, TT)",
        "file-level: known only once the file is written",
    ),
    Unjudged(
        frozenset({"PHA"}),
        "pharmacy (PHA)",
        "from the pharmacy registry, not the claim: `pharmacy add/import` checks its DEA, "
        "NPI, lengths and characters",
    ),
    Unjudged(
        frozenset(),
        "reporting status (DSP01 01 revised, 02 void)",
        "depends on what earlier files carried: the counter judges the fill as new (00)",
    ),
    Unjudged(
        frozenset(),
        "the collector's answer",
        "the state's verdict on a delivered file comes later (`cashcapture collector record`)",
    ),
)
SKIPPED_SEGMENTS = frozenset(s for u in UNJUDGED for s in u.segments)

# Reject code of an element no claim field feeds (the switch sets it, or has no
# source for it): the claim cannot be reported as sent, and no field is to blame.
NO_SOURCE_REJECT = "NN"
# Compound ingredient (CDI) Fill column -> the compound segment's NCPDP field.
INGREDIENT_FIELDS = {"product_id_qualifier": "RE", "ndc": "TE", "quantity": "ED"}


def _sources() -> dict[tuple[str, str], str]:
    """(ASAP segment, value attribute) -> the NCPDP field code that feeds it."""
    by_column = {row.column: row.code for row in capture.FIELD_MAP if row.column}
    tables = (
        ("PAT", fillrecord.PATIENT),
        ("DSP", (*fillrecord.DISPENSATION, *fillrecord.DISPENSATION_DERIVED)),
        ("PRE", fillrecord.PRESCRIBER),
    )
    out = {(seg, attr): by_column[col] for seg, t in tables for attr, col in t if col in by_column}
    for attr, col in fillrecord.INGREDIENT:
        if col in INGREDIENT_FIELDS:
            out[("CDI", attr)] = INGREDIENT_FIELDS[col]
    return out


SOURCES = _sources()


class RecordCheck:
    """One state's record rules compiled for the counter, with its drug list and day."""

    def __init__(
        self, rules: StateRules, schedule_of: Callable[[str], str | None], today: dt.date
    ) -> None:
        self.rules = rules
        self.schedule_of = schedule_of
        self.today = today
        self.controlled: Callable[[str], bool] = controlled_by(schedule_of)
        self.validator = Validator(rules, self.controlled, today=today)
        self.elements = fillrecord.elements(rules.version)
        self._pha = ["PHA"]  # the pharmacy is not judged here (UNJUDGED)
        self.validator.checked_elsewhere(self._pha)
        self._pat: list[str] = []

    def record_problems(
        self, values: Mapping[str, object], ingredients: Sequence[Mapping[str, object]] = ()
    ) -> list[StateProblem]:
        """The state's reject-level findings on the record these Fill values make.

        Encoded as the extract's assembly encodes a stored fill (the same row
        encoders, a compound as the state reports it) and checked by the
        validator's record check, which `extract` and `validate` run on files.
        """
        el = self.elements
        dsp = el.dispensation(values)
        cdi: list[list[str]] = []
        if ingredients:
            parts = tuple(fillrecord.ingredient_value(i) for i in ingredients)
            product, parts = compounds.as_reported(self.rules.compound, parts, self.controlled)
            if product is not None:
                dsp[7:9] = product  # DSP07 / DSP08: the first controlled ingredient
            cdi = [el.ingredient(i) for i in parts]
        pat = el.patient(values)
        if pat == self._pat:  # the same patient again (a claim's next transaction, say):
            pat = self._pat  # the same list, whose findings the validator has kept
        self._pat = pat
        raw = RawRecord(
            number=1,
            pha=self._pha,
            pat=pat,
            dsp=dsp,
            pre=el.prescriber(values),
            cdi=cdi,
            air=None,
            segment=0,
        )
        found = self.validator.check_record(raw)
        return [p for p in found if p.severity == REJECT and p.segment not in SKIPPED_SEGMENTS]

    def problems(
        self, values: Mapping[str, object], ingredients: Sequence[Mapping[str, object]] = ()
    ) -> list[capture.Problem]:
        """The findings as the counter names them: field, M/I reject code, the state's reason."""
        return [self.as_claim_problem(p) for p in self.record_problems(values, ingredients)]

    def as_claim_problem(self, p: StateProblem) -> capture.Problem:
        rule = self.rules.by_id.get(p.element_id)
        code = SOURCES.get((p.segment, rule.element.field)) if rule is not None else None
        if code is None:
            return capture.Problem(NO_SOURCE_REJECT, p.element_id or p.segment, p.reason)
        reject = FIELD_REJECT.get(code, NO_SOURCE_REJECT)
        return capture.Problem(reject, code, f"({p.element_id}) {p.reason}")


_compiled = threading.local()


def compiled(
    rules: StateRules, schedule_of: Callable[[str], str | None], today: dt.date
) -> RecordCheck:
    """The RecordCheck for these rules, drug list and day, compiled once per thread."""
    cache: dict[tuple[int, int, dt.date], RecordCheck] | None = getattr(_compiled, "cache", None)
    if cache is None:
        cache = _compiled.cache = {}
    key = (id(rules), id(schedule_of), today)
    check = cache.get(key)
    if check is None or check.rules is not rules or check.schedule_of is not schedule_of:
        if len(cache) >= 8:  # a new day or a reloaded table: the old ones are done
            cache.clear()
        check = cache[key] = RecordCheck(rules, schedule_of, today)
    return check


# The record rules a claim is judged by: one state's, or every state the fill goes to.
Rules = StateRules | Sequence[StateRules] | None


def claim_problems(
    extracted: capture.Extracted,
    rules: Rules,
    schedule_of: Callable[[str], str | None],
    latest_service_date: dt.date | None,
) -> list[capture.Problem]:
    """Everything the PMP record of a controlled claim lacks, in the counter's terms.

    The capture's own problems first (a field missing or unreadable), then each
    state's record rules on the record it makes (a fill reported to several
    states meets each one's), for fields not already named, so the pharmacy
    hears of everything at once. ``rules`` None or empty: the capture's only.
    """
    problems = list(extracted.problems)
    every = (rules,) if isinstance(rules, StateRules) else tuple(rules or ())
    if not every:
        return problems
    today = latest_service_date or dt.date.max
    values = dict(extracted.values, payment_type=PAY_PRIVATE)
    named = {p.field for p in problems}
    for one in every:
        for p in compiled(one, schedule_of, today).problems(values, extracted.ingredients):
            if p.field not in named:
                named.add(p.field)
                problems.append(p)
    return problems
