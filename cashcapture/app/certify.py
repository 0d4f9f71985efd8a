"""Certification: does a pharmacy system's claim carry everything the PMP record needs?

A software vendor runs its claims through the same tables and rules the
adapter and the extract use, offline, and gets for each transaction:

- every PMP field of `capture.FIELD_MAP`: present, missing or invalid (and why),
  the NCPDP field (name and ID), the ASAP element it feeds and the reject code
  the counter gives when it is missing or invalid;
- the counter's answer (`adjudicate.adjudicate`, pure): status and reject codes;
- the ASAP record the fill would become (PAT, DSP, PRE, CDI segments) and what
  the state's validator (`cashcapture.core.pmp.validate.validate_record`) says about it.

Pure: bytes, the drug list's look-up and today's date in, `ClaimFindings` out.
Rendering (rich for the terminal, one self-contained HTML file, JSON) is apart,
in the manner of pyx12's visitors: one run of the rules feeds every format.
The terminal and JSON show the values the claim carries: a vendor certifies
with test patients, and the report goes to the vendor, never to a log. The HTML
file outlives the session, so it masks patient identifiers (names, date of
birth, address, phone, patient ID) unless asked to show them.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import ncpdp
from cashcapture.adapter import adjudicate, capture
from cashcapture.core.drugs import UNKNOWN, Directory, controlled_by
from ncpdp import Request
from ncpdp.dictionary import field_name, reject_description

PRESENT, MISSING, INVALID, ABSENT = "present", "missing", "invalid", "absent"
# B2/B3 are judged as if the fill they reverse or rebill were on file.
_LIVE_FILL = adjudicate.Prior("new", None, None)
_TITLE = "cashcapture certification report"


@dataclass(frozen=True)
class FieldFinding:
    """One PMP field of one transaction."""

    code: str  # NCPDP field code on the wire, "CB"
    field_id: str  # NCPDP field ID, "311-CB"
    name: str  # "Patient Last Name"
    segment: str  # NCPDP segment id it is read from ("01"), or "header"
    asap: str  # ASAP 4.1 element it feeds ("PAT07"), "" when only checked
    asap_name: str  # the state's element name ("PAT_PATIENT_LAST_NAME")
    reject: str  # NCPDP reject code the counter gives when it is missing or invalid
    required: bool  # the state needs it
    status: str  # present | missing | invalid | absent (optional, not sent)
    reason: str = ""
    value: str = ""  # as sent (stripped)

    @property
    def problem(self) -> bool:
        return self.status in (MISSING, INVALID)


@dataclass(frozen=True)
class StateFinding:
    """What the state's validator says about the ASAP record."""

    severity: str  # reject | warning
    element: str  # "PAT12"
    reason: str  # "PAT_PATIENT_ADDRESS_1 : PO Box is not allowed. ..."


@dataclass
class TransactionFindings:
    index: int
    rx_number: str
    product: str  # NDC, or the compound's ingredients
    schedule: str | None  # None: not a reportable controlled substance; UNKNOWN: not listed
    fields: list[FieldFinding] = field(default_factory=list)
    other: list[FieldFinding] = field(default_factory=list)  # compound ingredients, ...
    counter_status: str = ""
    counter_rejects: list[str] = field(default_factory=list)
    counter_messages: list[str] = field(default_factory=list)
    asap_record: list[str] = field(default_factory=list)  # segments, one per line
    state: list[StateFinding] = field(default_factory=list)
    note: str = ""

    @property
    def problems(self) -> list[FieldFinding]:
        return [f for f in [*self.fields, *self.other] if f.problem]

    @property
    def ready(self) -> bool:
        """The counter pays it and the state accepts its record (warnings allowed).

        A drug that is not a reportable controlled substance makes no PMP record:
        only the counter's answer counts.
        """
        if self.counter_status in ("R", ""):
            return False
        if self.schedule is None:
            return True
        return not self.problems and not any(s.severity == "reject" for s in self.state)


@dataclass
class ClaimFindings:
    source: str
    transaction_code: str = ""
    bin: str = ""
    pcn: str = ""
    provider: str = ""
    date_of_service: str = ""
    error: str = ""  # not a readable D.0 request
    message_rejects: list[str] = field(default_factory=list)  # the whole transmission
    transactions: list[TransactionFindings] = field(default_factory=list)
    note: str = ""

    @property
    def ready(self) -> bool:
        return (
            not self.error and not self.message_rejects and all(t.ready for t in self.transactions)
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ready"] = self.ready
        for t, d in zip(self.transactions, out["transactions"], strict=True):
            d["ready"] = t.ready
        return out


# --- the rules run ---------------------------------------------------------------------


def _state_names(state: str) -> Callable[[str], str]:
    from cashcapture.core.pmp.rules import for_state

    rules = for_state(state)

    def name(element_id: str) -> str:
        try:
            return rules.rule(element_id).state_name
        except KeyError:
            return ""

    return name


def field_findings(
    header_date_of_service: str,
    segments: list[ncpdp.Segment],
    state_name: Callable[[str], str] = lambda _e: "",
) -> tuple[list[FieldFinding], list[FieldFinding], capture.Extracted]:
    """Every FIELD_MAP row's finding for one transaction, plus compound findings and the fill."""
    extracted = capture.extract_fill(header_date_of_service, segments, required=True)
    problems = {p.field: p for p in extracted.problems}
    by_seg: dict[str, dict[str, str]] = {}
    for seg in segments:
        vals = by_seg.setdefault(seg.id, {})
        for code, raw in seg.fields:
            vals.setdefault(code, raw.strip())
    compound = by_seg.get("07", {}).get("D6") == capture.COMPOUND_CODE
    out = []
    for row in capture.FIELD_MAP:
        if row.segment == capture.HEADER:
            value, where = header_date_of_service.strip(), "header"
        else:
            value, where = by_seg.get(row.segment, {}).get(row.code, ""), row.segment
        problem = problems.pop(row.code, None)
        if problem is not None:
            missing = problem.reason == capture.MISSING
            status, reason = (MISSING, "") if missing else (INVALID, problem.reason)
        elif row.column and value and row.column not in extracted.values:
            status, reason = ABSENT, "not used for this record"  # e.g. PAT01 for an SSN
        elif value or (compound and row.code in ("D7", "E1")):
            status, reason = PRESENT, ""
        else:
            status, reason = ABSENT, ""
        if compound and row.code == "D7":
            reason = reason or "compound: NDCs go in CDI"
        out.append(
            FieldFinding(
                code=row.code,
                field_id=capture.field_id(row.code),
                name=field_name(row.code),
                segment=where,
                asap=row.asap or "",
                asap_name=state_name(row.asap) if row.asap else "",
                reject=row.reject,
                required=row.required,
                status=status,
                reason=reason,
                value=value,
            )
        )
    other = [
        FieldFinding(
            code=p.field,
            field_id=capture.field_id(p.field),
            name=field_name(p.field),
            segment="10" if p.field == "TE" else "07",
            asap="CDI03" if p.field == "TE" else "DSP07",
            asap_name=state_name("CDI03" if p.field == "TE" else "DSP07"),
            reject=p.reject,
            required=True,
            status=MISSING if p.reason == capture.MISSING else INVALID,
            reason=p.reason,
        )
        for p in problems.values()
    ]
    return out, other, extracted


def asap_record(extracted: capture.Extracted, payment_type: str, provider: tuple[str, str]):
    """The ASAP value Record the extract would write for this fill (status 00)."""
    from cashcapture.core.pmp import fillrecord
    from cashcapture.core.pmp import records as asap

    qualifier, provider_id = provider
    pharmacy = asap.Pharmacy(
        npi=provider_id if qualifier == "01" else "",
        ncpdp_id=provider_id if qualifier == "07" else "",
    )
    values = dict(extracted.values, payment_type=payment_type)
    return fillrecord.record(values, extracted.ingredients, pharmacy=pharmacy)


def record_lines(record, version: str = "4.1") -> list[str]:
    """PHA, PAT, DSP, PRE and CDI segments of a record as they appear in a file."""
    from cashcapture.core.pmp.asap import table
    from cashcapture.core.pmp.asap.codec import encode

    t = table(version)
    segs = [
        encode(t, "PHA", record.pharmacy),
        encode(t, "PAT", record.patient),
        encode(t, "DSP", record.fill),
    ]
    if record.fill.prescriber is not None:
        segs.append(encode(t, "PRE", record.fill.prescriber))
    segs += [encode(t, "CDI", i) for i in record.fill.ingredients]
    return ["*".join(s) + "~" for s in segs]


def certify(
    data: bytes,
    source: str = "",
    *,
    schedule_of: Callable[[str], str | None],
    today: dt.date,
    state: str = "KY",
    drug_list: Directory | None = None,
    payment_type: str = "01",
) -> ClaimFindings:
    """Findings for one raw D.0 request (no framing). Never raises on bad input.

    The claim is judged as the cash-capture BIN judges it; ``payment_type`` is
    the DSP16 its record gets (01 private pay for cash, 04 commercial insurance).
    """
    from cashcapture.core.pmp import compounds
    from cashcapture.core.pmp.rules import for_state
    from cashcapture.core.pmp.validate import WARNING, validate_record

    out = ClaimFindings(source)
    try:
        request = ncpdp.parse(data)
    except ncpdp.ParseError as exc:
        out.error = f"not a D.0 message: {exc}"
        return out
    if not isinstance(request, Request):
        out.error = "a response, not a claim"
        return out
    h = request.header
    out.transaction_code, out.bin, out.pcn = h.transaction_code, h.bin, h.pcn.strip()
    out.provider = f"{h.service_provider_id.strip()} (qualifier {h.service_provider_id_qualifier})"
    out.date_of_service = h.date_of_service
    problems = ncpdp.validate(request)
    out.message_rejects = [p.reject_code for p in problems if p.transaction is None]
    rules = for_state(state)
    decision = adjudicate.adjudicate(
        request,
        priors=[None if h.transaction_code == "B1" else _LIVE_FILL] * len(request.transactions),
        schedule_of=schedule_of,
        pharmacy_known=True,
        auth_numbers=[""] * len(request.transactions),
        problems=problems,
        rules=rules,  # the counter's answer: the state's record rules included
    )
    if h.transaction_code in ("B2", "B3"):
        out.note = f"{h.transaction_code} judged as if the fill it changes were on file"
    names = _state_names(state)
    for i in range(len(request.transactions)):
        segs = adjudicate.tx_segments(request, i)
        claim = ncpdp.find(request.transactions[i], "07")
        t = TransactionFindings(
            index=i + 1,
            rx_number=((claim.get("D2") if claim else None) or "").strip().lstrip("0"),
            product=", ".join(capture.product_ndcs(segs)),
            schedule=adjudicate.schedule(segs, schedule_of),
        )
        if i < len(decision.outcomes):
            o = decision.outcomes[i]
            t.counter_status, t.counter_rejects = o.status, list(o.rejects)
            t.counter_messages = list(o.answer.messages) if o.answer else []
        elif decision.rejected_message:
            t.counter_status, t.counter_rejects = "R", list(out.message_rejects)
        if h.transaction_code in ("B1", "B3"):
            t.fields, t.other, extracted = field_findings(h.date_of_service, segs, names)
            if t.schedule is None:
                t.note = "not a reportable controlled drug: no PMP record (fields for reference)"
                out.transactions.append(t)
                continue
            listed: object = drug_list
            if t.schedule == UNKNOWN:
                t.note = (
                    "NDC not in the drug directory: paid and captured unclassified, reported "
                    "once a newer directory schedules it; its record is judged as if it were"
                )
                if drug_list is not None:
                    listed = _listing_also(drug_list, capture.product_ndcs(segs))
            record = asap_record(
                extracted,
                payment_type,
                (h.service_provider_id_qualifier, h.service_provider_id.strip()),
            )
            fill = compounds.reported_fill(record.fill, rules.compound, controlled_by(schedule_of))
            record = replace(record, fill=fill)
            try:
                t.asap_record = record_lines(record, rules.version)
            except ValueError as exc:  # a value that would break the file
                t.asap_record = [f"(cannot be written: {exc})"]
            found = validate_record(record, rules, listed, today=today)
            t.state = [
                StateFinding(
                    "warning" if p.severity == WARNING else "reject",
                    p.element_id or p.segment,
                    p.reject_reason,
                )
                for p in found
                if p.segment != "PHA"  # the pharmacy comes from the registry, not the claim
            ]
        out.transactions.append(t)
    return out


def counter_messages(fields: Iterable[FieldFinding], limit: int = 9) -> list[str]:
    """Short lines naming each missing or invalid field, for a certification response.

    For the adapter's certification route: ``fields, other, _ = field_findings(dos, segs)``
    then ``counter_messages([*fields, *other])`` as the response's message lines.
    """
    lines = [
        f"{f.field_id} {f.status}{': ' + f.reason if f.reason else ''} -> {f.asap or '-'}"
        for f in fields
        if f.problem
    ]
    return lines[:limit] or ["PMP fields complete"]


# --- rendering: terminal -------------------------------------------------------------------

_STYLE = {PRESENT: "green", MISSING: "bold red", INVALID: "bold red", ABSENT: "dim"}


def render(all_findings: Iterable[ClaimFindings], console) -> None:
    """The findings on a rich console."""
    from rich.table import Table

    for c in all_findings:
        verdict = "[bold green]READY[/]" if c.ready else "[bold red]NOT READY[/]"
        console.rule(f"{c.source}  {verdict}")
        if c.error:
            console.print(f"[bold red]{c.error}[/]")
            continue
        console.print(_describe(c))
        if c.note:
            console.print(f"[dim]{c.note}[/]")
        if c.message_rejects:
            console.print(f"Whole transmission rejected: {_codes(c.message_rejects)}")
        for t in c.transactions:
            console.print(f"\n[bold]{_transaction(t)}[/]", highlight=False)
            console.print(_counter(t))
            if t.note:
                console.print(f"[dim]{t.note}[/]")
            for m in t.counter_messages:
                console.print(f"  {m}")
            if t.fields:
                table = Table(title="PMP fields", show_lines=False)
                for col in ("NCPDP field", "name", "ASAP", "state element", "reject", "status"):
                    table.add_column(col)
                for f in [*t.fields, *t.other]:
                    status = f.status + (f": {f.reason}" if f.reason else "")
                    req = "" if f.required else " (optional)"
                    table.add_row(
                        f.field_id,
                        f.name + req,
                        f.asap or "-",
                        f.asap_name or "-",
                        f.reject or "-",
                        f"[{_STYLE[f.status]}]{status}[/]",
                    )
                console.print(table)
            if t.asap_record:
                console.print("ASAP record that would be produced:")
                for line in t.asap_record:
                    console.print(f"  {line}", markup=False, highlight=False)
            for s in t.state:
                style = "yellow" if s.severity == "warning" else "bold red"
                console.print(f"  [{style}]state {s.severity}[/] {s.element}: {s.reason}")
    console.print()


def _listing_also(drug_list: Directory, ndcs: Iterable[str]) -> Callable[[str], bool]:
    """The drug list's look-up, taking `ndcs` as listed too."""
    extra = frozenset(ndcs)
    return lambda ndc: ndc in extra or drug_list.is_reportable(ndc)


def _describe(c: ClaimFindings) -> str:
    return (
        f"{c.transaction_code} to BIN {c.bin} PCN {c.pcn or '-'}, pharmacy {c.provider}, "
        f"date of service {c.date_of_service}"
    )


def _transaction(t: TransactionFindings) -> str:
    drug = (
        "not in the drug directory"
        if t.schedule == UNKNOWN
        else f"schedule {t.schedule}"
        if t.schedule
        else "not a reportable controlled drug"
    )
    return f"Transaction {t.index}: Rx {t.rx_number or '-'}, {t.product or 'no product'} ({drug})"


def _counter(t: TransactionFindings) -> str:
    rejects = f", rejects {_codes(t.counter_rejects)}" if t.counter_rejects else ""
    return f"Counter answer: {_status_name(t.counter_status)}{rejects}"


def _codes(codes: Iterable[str]) -> str:
    return ", ".join(f"{c} ({d})" if (d := reject_description(c)) else c for c in codes)


_STATUS = {"P": "paid", "A": "approved", "D": "duplicate", "R": "rejected", "S": "duplicate"}


def _status_name(code: str) -> str:
    return f"{_STATUS.get(code, code)} ({code})" if code else "-"


# --- rendering: HTML, one self-contained file ------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-top:2px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:left;font-size:.9em}th{background:#f3f3f3}
.present{color:#176117}.missing,.invalid,.reject,.no{color:#b00020;font-weight:bold}
.absent{color:#888}.warning{color:#8a6d00}.ok{color:#176117;font-weight:bold}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
"""


#: Patient elements the HTML shows even when masking: codes, not identifiers.
PATIENT_SHOWN = frozenset({"PAT01", "PAT02", "PAT15", "PAT19", "PAT20"})
MASK = "•••"


def _patient(f: FieldFinding) -> bool:
    """A patient identifier: fed to a PAT element (not a code) or read from the patient segment."""
    if f.asap:
        return f.asap.startswith("PAT") and f.asap not in PATIENT_SHOWN
    return f.segment == "01"


def mask_record_line(line: str) -> str:
    """A segment line with its patient identifiers masked (other segments as they are)."""
    if not line.startswith("PAT*"):
        return line
    body, end = (line[:-1], "~") if line.endswith("~") else (line, "")
    parts = body.split("*")
    for i in range(1, len(parts)):
        if parts[i] and f"PAT{i:02d}" not in PATIENT_SHOWN:
            parts[i] = MASK
    return "*".join(parts) + end


def to_html(
    all_findings: Iterable[ClaimFindings],
    generated: dt.datetime | None = None,
    *,
    show_patient: bool = False,
) -> str:
    """One HTML document with inline CSS, no scripts, no external references.

    Patient identifiers are masked unless `show_patient`.
    """
    e = html.escape
    claims = list(all_findings)
    when = (generated or dt.datetime.now()).strftime("%Y-%m-%d %H:%M")
    ready = sum(c.ready for c in claims)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_TITLE}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_TITLE}</h1>",
        f"<p>{len(claims)} claim(s), {ready} ready for the PMP. Generated {e(when)}.</p>",
    ]
    if not show_patient:
        parts.append(f"<p class='absent'>Patient identifiers are shown as {MASK}.</p>")
    for c in claims:
        cls, word = ("ok", "READY") if c.ready else ("no", "NOT READY")
        parts.append(f"<h2>{e(c.source)} <span class='{cls}'>{word}</span></h2>")
        if c.error:
            parts.append(f"<p class='no'>{e(c.error)}</p>")
            continue
        parts.append(f"<p>{e(_describe(c))}</p>")
        if c.note:
            parts.append(f"<p class='absent'>{e(c.note)}</p>")
        if c.message_rejects:
            codes = e(_codes(c.message_rejects))
            parts.append(f"<p class='no'>Whole transmission rejected: {codes}</p>")
        for t in c.transactions:
            parts.append(f"<h3>{e(_transaction(t))}</h3>")
            parts.append(f"<p>{e(_counter(t))}</p>")
            if t.note:
                parts.append(f"<p class='absent'>{e(t.note)}</p>")
            if t.counter_messages:
                items = "".join(f"<li>{e(m)}</li>" for m in t.counter_messages)
                parts.append(f"<ul>{items}</ul>")
            if t.fields:
                parts.append(
                    "<table><tr><th>NCPDP field</th><th>name</th><th>segment</th><th>value</th>"
                    "<th>ASAP</th><th>state element</th><th>reject</th><th>status</th></tr>"
                )
                for f in [*t.fields, *t.other]:
                    status = f.status + (f": {f.reason}" if f.reason else "")
                    req = "" if f.required else " (optional)"
                    value = MASK if f.value and _patient(f) and not show_patient else f.value
                    parts.append(
                        f"<tr><td>{e(f.field_id)}</td><td>{e(f.name + req)}</td>"
                        f"<td>{e(f.segment)}</td><td>{e(value)}</td><td>{e(f.asap or '-')}</td>"
                        f"<td>{e(f.asap_name or '-')}</td><td>{e(f.reject or '-')}</td>"
                        f"<td class='{f.status}'>{e(status)}</td></tr>"
                    )
                parts.append("</table>")
            if t.asap_record:
                parts.append("<p>ASAP record that would be produced:</p>")
                lines = t.asap_record if show_patient else map(mask_record_line, t.asap_record)
                parts.append("<pre>" + e("\n".join(lines)) + "</pre>")
            if t.state:
                items = "".join(
                    f"<li class='{s.severity}'>state {e(s.severity)} {e(s.element)}: "
                    f"{e(s.reason)}</li>"
                    for s in t.state
                )
                parts.append(f"<ul>{items}</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def to_json(all_findings: Iterable[ClaimFindings]) -> str:
    return json.dumps([c.to_dict() for c in all_findings], indent=2)
