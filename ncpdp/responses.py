"""Pure builders of the Response a payer sends back to a Request.

Each response transaction answers the request transaction at the same index:
a Response Status segment (21) with 112-AN, optional Response Claim (22, the
Rx number echoed) and Response Pricing (23). The header status (501-F1) is A
when the transmission was accepted (whatever each transaction's status) and R
when the transmission itself is rejected.

    responses.paid(req, [Pricing.patient_pays_all(gross)])   # P, one Pricing per txn
    responses.captured(req)                                  # C
    responses.approved(req)                                  # A (reversal, eligibility)
    responses.duplicate(req, of="P", pricing=[...])          # D / Q / S
    responses.rejected(req, [["07", "CA"], ["21"]])          # R per txn, header A
    responses.transmission_rejected(req_or_header, ["01"])   # header R
    responses.from_problems(req, ncpdp.validate(req))        # either of the two above
    responses.respond(req, [Answer(...), ...])               # any mix
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from .header import RequestHeader, ResponseHeader
from .message import FS, GS, RS, Request, Response, Segment, find
from .typed import wire
from .validate import Problem

PAID, CAPTURED, APPROVED, REJECTED = "P", "C", "A", "R"
DUPLICATE_OF = {"P": "D", "C": "Q", "A": "S"}  # 112-AN duplicate statuses
NOT_PROCESSED = "85"  # Claim Not Processed: rejected along with the others
MAX_REJECT_CODES = 5  # 510-FA is at most 5 in D.0
MESSAGE_LINE = 40  # 526-FQ Additional Message Information length
MAX_MESSAGE_LINES = 9  # 132-UH qualifiers 01-09: free text lines


@dataclass(frozen=True)
class Pricing:
    """Response Pricing (23) amounts; None leaves a field out."""

    patient_pay: Decimal  # 505-F5
    ingredient_cost_paid: Decimal | None = Decimal(0)  # 506-F6
    dispensing_fee_paid: Decimal | None = Decimal(0)  # 507-F7
    total_amount_paid: Decimal | None = Decimal(0)  # 509-F9
    basis_of_reimbursement: int | None = None  # 522-FM
    copay: Decimal | None = None  # 518-FI
    flat_sales_tax_paid: Decimal | None = None  # 558-AW
    percentage_sales_tax_paid: Decimal | None = None  # 559-AX
    incentive_paid: Decimal | None = None  # 521-FL
    professional_service_fee_paid: Decimal | None = None  # 562-J1
    other_amounts_paid: tuple[tuple[str, Decimal], ...] = ()  # 564-J3 / 565-J4, counted by J2
    sales_tax_attributed: Decimal | None = None  # 523-FN

    @classmethod
    def patient_pays_all(cls, gross: Decimal) -> Pricing:
        """Cash: the patient owes the whole gross amount; the plan pays 0, no fee."""
        return cls(patient_pay=gross, copay=gross)

    def segment(self) -> Segment:
        values = (
            ("F5", self.patient_pay),
            ("F6", self.ingredient_cost_paid),
            ("F7", self.dispensing_fee_paid),
            ("AW", self.flat_sales_tax_paid),
            ("AX", self.percentage_sales_tax_paid),
            ("FL", self.incentive_paid),
            ("J1", self.professional_service_fee_paid),
        )
        pairs = [(c, _money_wire(c, v)) for c, v in values if v is not None]
        if self.other_amounts_paid:
            pairs.append(("J2", str(len(self.other_amounts_paid))))
            for qualifier, amount in self.other_amounts_paid:
                pairs += [("J3", qualifier), ("J4", _money_wire("J4", amount))]
        tail = (
            ("FI", self.copay),
            ("FN", self.sales_tax_attributed),
            ("F9", self.total_amount_paid),
            ("FM", self.basis_of_reimbursement),
        )
        pairs += [(c, _money_wire(c, v)) for c, v in tail if v is not None]
        return _trusted("23", pairs)


def _trusted(seg_id: str, pairs: list[tuple[str, str]]) -> Segment:
    """A segment of (code, value) pairs this module made, as wire text checked once here.

    `build` checks the field list of a segment made in memory again (every code 2
    characters, no separator in a value); one made here holds this module's own
    2-character codes, and its values are checked as it is made, so it is handed
    over as if parsed. Anything odd (a value that is no string or carries a
    separator) makes an ordinary segment, for `build` to refuse with its reason.
    """
    try:
        raw = "".join([FS + c + v for c, v in pairs])
    except TypeError:
        return Segment(seg_id, pairs)
    if raw.count(FS) != len(pairs) or GS in raw or RS in raw:
        return Segment(seg_id, pairs)
    return Segment._from_wire(seg_id, raw)


def _money_wire(code: str, value: Decimal | int) -> str:
    """`wire`, with the zeros a cash answer repeats on every claim read from a table."""
    if type(value) is Decimal and value.is_zero() and code in _ZERO_WIRE:
        return _ZERO_WIRE[code]
    return wire(code, value)


_ZERO_WIRE = {c: wire(c, Decimal(0)) for c in ("F5", "F6", "F7", "FI", "F9", "AW", "AX", "J1")}


@dataclass(frozen=True)
class Answer:
    """What to say about one transaction."""

    status: str  # 112-AN: P D C Q A S R (B, F)
    reject_codes: Sequence[str] = ()  # 511-FB, counted by 510-FA
    authorization_number: str | None = None  # 503-F3
    messages: Sequence[str] = ()  # additional message lines (130-UF, 132-UH, 526-FQ, 131-UG)
    pricing: Pricing | None = None
    extra: Sequence[Segment] = field(default=())  # further segments (24, 26, 28 ...)


def respond(
    request: Request,
    answers: Sequence[Answer],
    *,
    message: str | None = None,
    header_status: str = "A",
) -> Response:
    """The response: one answer per request transaction (E1 without groups: one)."""
    n = _count(request)
    if len(answers) != n:
        raise ValueError(f"{n} transactions need {n} answers, got {len(answers)}")
    txns = [
        _transaction(a, request.transactions[i] if request.transactions else [], request)
        for i, a in enumerate(answers)
    ]
    return Response(
        _header(request.header, header_status, n),
        [_trusted("20", [("F4", message)])] if message else [],
        txns,
    )


def paid(
    request: Request,
    pricing: Sequence[Pricing | None],
    *,
    authorization_number: str | None = None,
    messages: Sequence[str] = (),
    message: str | None = None,
) -> Response:
    """Every transaction paid (P), with its Pricing (23)."""
    return respond(
        request,
        [Answer(PAID, (), authorization_number, messages, p) for p in pricing],
        message=message,
    )


def captured(
    request: Request,
    *,
    authorization_number: str | None = None,
    messages: Sequence[str] = (),
    message: str | None = None,
) -> Response:
    """Every transaction captured (C): recorded, no payment."""
    return _all(request, CAPTURED, authorization_number, messages, message)


def approved(
    request: Request,
    *,
    authorization_number: str | None = None,
    messages: Sequence[str] = (),
    message: str | None = None,
) -> Response:
    """Every transaction approved (A): reversal accepted, eligibility confirmed."""
    return _all(request, APPROVED, authorization_number, messages, message)


def duplicate(
    request: Request,
    *,
    of: str = PAID,
    pricing: Sequence[Pricing | None] | None = None,
    authorization_number: str | None = None,
    messages: Sequence[str] = (),
    message: str | None = None,
) -> Response:
    """Every transaction a duplicate of an earlier P (-> D), C (-> Q) or A (-> S)."""
    status = DUPLICATE_OF[of]
    n = _count(request)
    prices = list(pricing) if pricing is not None else [None] * n
    return respond(
        request,
        [Answer(status, (), authorization_number, messages, p) for p in prices],
        message=message,
    )


def rejected(
    request: Request,
    codes_per_txn: Sequence[Sequence[str]],
    *,
    messages: Sequence[str] = (),
    message: str | None = None,
) -> Response:
    """Each transaction rejected (R) with its reject codes; the transmission accepted."""
    return respond(
        request,
        [Answer(REJECTED, codes, None, messages) for codes in codes_per_txn],
        message=message,
    )


def transmission_rejected(
    request: Request | RequestHeader,
    codes: Sequence[str],
    *,
    messages: Sequence[str] = (),
    message: str | None = None,
) -> Response:
    """Header status R: the transmission itself is rejected (one status group)."""
    header = request.header if isinstance(request, Request) else request
    txn = _transaction(Answer(REJECTED, codes, None, messages), [], None)
    return Response(
        _header(header, "R", 1),
        [_trusted("20", [("F4", message)])] if message else [],
        [txn],
    )


def from_problems(
    request: Request, problems: Sequence[Problem], *, message: str | None = None
) -> Response:
    """Reject response for validation problems: header problems reject the
    transmission; otherwise every transaction is rejected with its codes
    (see codes_by_transaction to answer the clean ones otherwise)."""
    if any(p.field in _HEADER_FIELDS and p.transaction is None for p in problems):
        return transmission_rejected(request, [p.reject_code for p in problems], message=message)
    codes = [c or [NOT_PROCESSED] for c in codes_by_transaction(request, problems)]
    return rejected(request, codes, message=message)


def codes_by_transaction(request: Request, problems: Sequence[Problem]) -> list[list[str]]:
    """Reject codes per request transaction; message-level problems count for each."""
    codes: list[list[str]] = [[] for _ in range(_count(request))]
    for p in problems:
        targets = range(len(codes)) if p.transaction is None else [p.transaction]
        for i in targets:
            if p.reject_code not in codes[i]:
                codes[i].append(p.reject_code)
    return codes


_HEADER_FIELDS = frozenset({"A1", "A2", "A3", "A9", "B1", "B2", "D1"})


def _all(
    request: Request, status: str, auth: str | None, messages: Sequence[str], message: str | None
) -> Response:
    n = _count(request)
    return respond(request, [Answer(status, (), auth, messages)] * n, message=message)


def _count(request: Request) -> int:
    return len(request.transactions) or 1


def _header(h: RequestHeader, status: str, count: int) -> ResponseHeader:
    return ResponseHeader(
        version="D0",
        transaction_code=h.transaction_code,
        transaction_count=count,
        header_response_status=status,
        service_provider_id_qualifier=h.service_provider_id_qualifier,
        service_provider_id=h.service_provider_id,
        date_of_service=h.date_of_service,
    )


def _transaction(a: Answer, req_txn: list[Segment], request: Request | None) -> list[Segment]:
    segs = [_status(a)]
    claim = find(req_txn, "07")
    if claim is not None:
        echo = [(c, v) for c in ("EM", "D2") if (v := claim.get(c)) is not None]
        if echo:
            segs.append(_trusted("22", echo))
    if a.pricing is not None:
        segs.append(a.pricing.segment())
    segs.extend(a.extra)
    return segs


def _status(a: Answer) -> Segment:
    f: list[tuple[str, str]] = [("AN", a.status)]
    if a.authorization_number:
        f.append(("F3", a.authorization_number))
    codes = list(dict.fromkeys(a.reject_codes))[:MAX_REJECT_CODES]
    if codes:
        f.append(("FA", wire("FA", len(codes))))
        f.extend(("FB", c) for c in codes)
    lines = _lines(a.messages)
    if lines:
        f.append(("UF", wire("UF", len(lines))))
        for i, (text, more) in enumerate(lines, 1):
            f.append(("UH", f"{i:02d}"))
            f.append(("FQ", text))
            if more:
                f.append(("UG", "+"))
    return _trusted("21", f)


def wrap(message: str) -> list[str]:
    """A message as 526-FQ lines of at most 40 characters, broken after a space (a word
    longer than a line is cut). The space stays at the end of its line, so a system that
    joins continued lines (131-UG '+') reads the message as sent, and one that shows
    them one under another shows whole words."""
    lines: list[str] = []
    rest = message
    while len(rest) > MESSAGE_LINE:
        cut = rest.rfind(" ", 1, MESSAGE_LINE) + 1  # the break is after the space
        if cut <= 1:
            cut = MESSAGE_LINE
        lines.append(rest[:cut])
        rest = rest[cut:]
    lines.append(rest)
    return lines


def _lines(messages: Sequence[str]) -> list[tuple[str, bool]]:
    """Message lines of 40 characters at most; continued lines flagged for 131-UG '+'."""
    out: list[tuple[str, bool]] = []
    for m in messages:
        chunks = wrap(m)
        out.extend((c, k < len(chunks) - 1) for k, c in enumerate(chunks))
    return out[:MAX_MESSAGE_LINES]
