"""Checking a file as the collector would: the shared validator, and holding records back.

Every record goes through the validator once, in the bytes that would be sent:
the file is written, validated whole, and a record with a reject-level problem
is held back by writing the file again without it. Warnings (e.g. a PO Box
address where the rules table says warn) let a record go, as at the collector.
Nothing here touches the store.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field, replace

from cashcapture.core.pmp import compounds
from cashcapture.core.pmp import records as asap
from cashcapture.core.pmp.carry import REASON as CARRY_REASON
from cashcapture.core.pmp.carry import first_uncarriable
from cashcapture.core.pmp.rules import StateRules
from cashcapture.core.pmp.validate import REJECT, WARNING, Problem, Report, Validator
from extract import writer as asap_writer
from extract.reader import read


class Checker:
    """The shared validator bound to the state's rules, its drug list and today's date."""

    def __init__(
        self,
        rules: StateRules,
        today: dt.date,
        drug_list: object | None = None,
        po_box: str | None = None,
    ) -> None:
        if po_box is not None:
            rules = replace(rules, po_box=po_box)
        if drug_list is None:
            from cashcapture.core import drugs

            drug_list = drugs.load(rules.state)
        self.validator = Validator(rules, drug_list, today=today)

    def file(self, data: bytes) -> Report:
        return self.validator.validate(data)

    def compound(
        self, ingredients: tuple[asap.Ingredient, ...]
    ) -> tuple[tuple[str, str] | None, tuple[asap.Ingredient, ...]]:
        """A compound as the state's rules report it (see core.pmp.compounds)."""
        in_list = self.validator.in_list
        listed = in_list if in_list is not None else (lambda ndc: False)
        return compounds.as_reported(self.validator.rules.compound, ingredients, listed)

    def errors(self, data: bytes) -> list[str]:
        """A whole file that must go as it is (a zero report): its non-warning problems."""
        return [p.message for p in self.file(data).problems if p.severity != WARNING]


def uncarriable(*segments: list[str]) -> Problem | None:
    """The reject of a record holding a value no file can carry (a separator, a line
    break, a control character...), found before the writer would refuse the file."""
    for elements in segments:
        i = first_uncarriable(elements)
        if i is not None:
            seg = elements[0]
            name = f"{seg}{i:02d}"
            return Problem(REJECT, seg, i, name, CARRY_REASON, name, f"Value {CARRY_REASON}")
    return None


@dataclass
class Checked:
    """A file after checking: what may go, what failed it, which records stayed behind."""

    content: bytes | None  # None: every record was held back
    errors: list[str]  # file-level: the file is kept but never sent
    rejects: list[tuple[int, Problem]] = field(default_factory=list)  # (record index, problem)
    keep: list[int] | None = None  # indexes of the records left in; None: all of them


def check(checker: Checker, content: bytes) -> Checked:
    """Validate the file; hold back rejected records by writing it again without them."""
    report = checker.file(content)
    if report.failed:
        return Checked(content, [p.message for p in report.file_errors])
    bad = report.rejected_records
    if not bad:
        return Checked(content, [])
    rejects = [(p.rec - 1, p) for p in report.rejects]
    parsed = read(content)
    records = list(parsed.records())
    keep = [i for i in range(len(records)) if i + 1 not in bad]
    if not keep:
        return Checked(None, [], rejects, [])
    buf = io.BytesIO()
    with asap_writer.AsapWriter(buf, parsed.header) as w:
        for i in keep:
            w.add_record(records[i])
    content = buf.getvalue()
    again = checker.file(content)
    if again.failed or again.rejected_records:  # never send what it would refuse
        errors = [p.message for p in again.problems if p.severity != WARNING]
        return Checked(content, errors, rejects, keep)
    return Checked(content, [], rejects, keep)
