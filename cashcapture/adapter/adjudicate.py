"""Cash adjudication, pure: a request and what the store holds -> a response and actions.

The caller (router.py) looks up, for each transaction's fill key, the fill the
store holds (`Prior`), calls `adjudicate`, applies the `Action`s and sends the
response only once they are committed. Rules, per transaction, each judged on
its own:

- B1: paid (P), patient pays the gross amount due (U&C when gross is absent),
  plan pays 0, no fee; an authorization number; a message line saying whether
  the fill was captured for the PMP. Controlled drugs must carry every PMP
  field (capture.FIELD_MAP) or are rejected with that field's M/I code; a
  controlled claim the codec already rejects hears of its PMP gaps in the
  same answer, so the pharmacist fixes everything at once.
  Same key and same content as the fill's last claim: duplicate (D), the
  stored response again; same key, other content: 83. A drug that is not
  controlled has no fill: its `Prior` is the identical claim paid before
  (found by content hash), answered D alike.
- B2: approved (A), the fill voided; nothing to match: 87.
- B3: rebill: paid, the fill revised; nothing to match: 84.
- E1: approved (A).
- anything else: 1S.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import ncpdp
from cashcapture.adapter import capture, recordcheck
from cashcapture.core.drugs import UNKNOWN, most_controlled
from cashcapture.core.pmp.records import PAY_PRIVATE
from ncpdp import Request, Response, Segment, responses
from ncpdp.dictionary import reject_description
from ncpdp.responses import MAX_MESSAGE_LINES, Answer, Pricing
from ncpdp.validate import Problem as CodecProblem

PAID, DUPLICATE, APPROVED, DUPLICATE_APPROVED, REJECTED = "P", "D", "A", "S", "R"
MSG_CAPTURED = "Cash claim captured for PMP"
MSG_NOT_CONTROLLED = "Not a controlled substance: not captured"
MSG_UNCLASSIFIED = "NDC not in drug directory: captured for PMP review"
MSG_UNCLASSIFIED_CERTIFIED = "NDC not in drug directory: would be captured for PMP review"
MSG_CERTIFIED = "PMP fields complete (certification)"
MSG_ELIGIBLE = "Cash capture: patient pays 100%"
MSG_VOIDED = "Captured fill voided"
ZERO = Decimal("0.00")
MESSAGE_F4 = 200  # 504-F4 Message length

# transaction code -> handler name; a new transaction type is a new row.
HANDLERS: dict[str, str] = {"B1": "billing", "B3": "billing", "B2": "reversal", "E1": "eligibility"}


@dataclass(frozen=True)
class Prior:
    """The fill the store holds for a transaction's key, and its last claim (or, for a
    drug that is not controlled, the identical claim answered before: state "answered")."""

    state: str  # new | revised | voided | answered
    request: bytes | None  # the request of the claim that last changed the fill
    response: bytes | None  # the response sent for it


@dataclass(frozen=True)
class Action:
    """A change to the store: insert or revise a fill (with its values), or void it."""

    kind: str  # insert | revise | void
    transaction: int
    values: dict[str, object] = field(default_factory=dict)
    ingredients: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One transaction's verdict: an Answer to build, or a stored answer to send again."""

    status: str
    rejects: tuple[str, ...] = ()
    action: Action | None = None
    captured: bool = False
    answer: Answer | None = None
    stored: list[Segment] | None = None  # duplicates: the earlier response transaction


@dataclass(frozen=True)
class Decision:
    response: Response
    outcomes: list[Outcome]
    rejected_message: bool = False

    @property
    def status(self) -> str:
        """Status of the first transaction (R when the transmission was rejected)."""
        if self.rejected_message or not self.outcomes:
            return REJECTED
        return self.outcomes[0].status

    @property
    def reject_codes(self) -> list[str]:
        return [c for o in self.outcomes for c in o.rejects]

    @property
    def actions(self) -> list[Action]:
        return [o.action for o in self.outcomes if o.action is not None]


# --- small pure helpers --------------------------------------------------------


def tx_segments(request: Request, i: int) -> list[Segment]:
    """A transaction's own segments followed by the message-level ones."""
    return [*request.transactions[i], *request.segments]


def fill_key(request: Request, i: int) -> tuple[str, int, dt.date] | None:
    """(Rx number, fill number, date of service) of transaction ``i``, or None if unreadable."""
    claim = ncpdp.find(request.transactions[i], "07")
    if claim is None:
        return None
    ctx = capture.Context(None, {})
    try:
        rx = capture.RULES["rx_number"]((claim.get("D2") or "").strip(), ctx)
        fill = capture.RULES["fill_number"]((claim.get("D3") or "0").strip() or "0", ctx)
        dos = capture.RULES["date_of_service"](request.header.date_of_service.strip(), ctx)
    except capture.Invalid:
        return None
    return rx, fill, dos  # type: ignore[return-value]


def _content(request: Request, i: int) -> tuple[object, ...]:
    h = request.header
    return (
        h.bin,
        h.pcn.strip(),
        h.transaction_code,
        h.service_provider_id.strip(),
        h.date_of_service,
        [(s.id, s.wire()) for s in request.segments],
        [(s.id, s.wire()) for s in request.transactions[i]],
    )


def _match_prior(request: Request, i: int, prior: Prior) -> tuple[bool, list[Segment] | None]:
    """(same content?, the prior response's segments for that transaction)."""
    if prior.request is None or prior.response is None:
        return False, None
    try:
        old_req = ncpdp.parse(prior.request)
        assert isinstance(old_req, Request)  # the store keeps the request it was sent
        old_resp = ncpdp.parse(prior.response)
    except ncpdp.ParseError:
        return False, None
    key = fill_key(request, i)
    for j in range(len(old_req.transactions)):
        if fill_key(old_req, j) == key:
            same = _content(old_req, j) == _content(request, i)
            segs = old_resp.transactions[j] if j < len(old_resp.transactions) else None
            return same, segs
    return False, None


def _with_status(segments: list[Segment], status: str) -> list[Segment]:
    """The stored response transaction again, its 112-AN status changed (P -> D)."""
    out = []
    for s in segments:
        if s.id == "21":
            s = Segment("21", [(c, status if c == "AN" else v) for c, v in s.fields])
        out.append(s)
    return out


def _status(segments: list[Segment]) -> str | None:
    """The transaction status (112-AN) of a response transaction."""
    st = ncpdp.find(segments, "21")
    return st.get("AN") if st is not None else None


def _money(segments: list[Segment], code: str) -> Decimal | None:
    pricing = ncpdp.find(segments, "11")
    raw = pricing.get(code) if pricing is not None else None
    if not raw:
        return None
    try:
        return ncpdp.typed(code, raw)  # type: ignore[return-value]
    except ValueError:
        return None


# Claim pricing (11) amount -> the Response Pricing (23) field that pays it back.
# A paid answer echoes each, so F6 + F7 + AW + AX + FL + J1 + J4 - F5 = F9 = 0.
_ECHOED = (
    ("D9", "ingredient_cost_paid"),
    ("DC", "dispensing_fee_paid"),
    ("HA", "flat_sales_tax_paid"),
    ("GE", "percentage_sales_tax_paid"),
    ("E3", "incentive_paid"),
    ("BE", "professional_service_fee_paid"),
)
_TAXES = ("HA", "GE")
# D.0 430-DU: Gross Amount Due = D9 + DC + BE + E3 + H9... + HA + GE.
ZERO = Decimal(0)


def _pricing(segs: list[Segment]) -> tuple[Pricing | None, Outcome | None]:
    """The balanced paid pricing of a claim, or the reject of its amounts.

    Every submitted amount is paid back as its response field and the patient
    pays their sum (F5), which must be the gross amount due (DU; the U&C charge
    DQ when DU is absent); the plan pays nothing (F9 = 0).
    """
    seg = ncpdp.find(segs, "11")
    amounts: dict[str, Decimal] = {}
    for code, _ in _ECHOED:
        v = _money(segs, code)
        if v is not None:
            amounts[code] = v
    others: list[tuple[str, Decimal]] = []
    if seg is not None:
        for qualifier, raw in zip(seg.get_all("H8"), seg.get_all("H9"), strict=False):
            try:
                others.append((qualifier, ncpdp.typed("H9", raw)))  # type: ignore[arg-type]
            except ValueError:
                return None, rejected(["H9"])
    for code, v in [*amounts.items(), *(("H9", v) for _, v in others)]:
        if v < 0:
            return None, rejected([code], [f"{ncpdp.field_name(code)} is negative"])
    gross = _money(segs, "DU")
    asked, code = (gross, "R9") if gross is not None else (_money(segs, "DQ"), "DU")
    if asked is None or asked < 0:
        return None, rejected(["DU"], ["Gross Amount Due or U&C Charge needed"])
    total = sum(amounts.values(), ZERO) + sum((v for _, v in others), ZERO)
    if total != asked:
        what = "Gross Amount Due" if gross is not None else "U&C Charge"
        return None, rejected([code], [f"{what} {asked} is not the sum of amounts {total}"])
    taxes = sum((amounts.get(c, ZERO) for c in _TAXES), ZERO)
    paid = {name: amounts[c] for c, name in _ECHOED if c in amounts}
    return Pricing(
        patient_pay=total,
        total_amount_paid=ZERO,
        copay=total - taxes,
        sales_tax_attributed=taxes or None,
        other_amounts_paid=tuple(others),
        **{"ingredient_cost_paid": ZERO, "dispensing_fee_paid": ZERO, **paid},  # type: ignore[arg-type]
    ), None


def rejected(codes: Sequence[str], messages: Sequence[str] = ()) -> Outcome:
    codes = tuple(dict.fromkeys(codes))[: responses.MAX_REJECT_CODES]
    if not messages:
        messages = [reject_description(c) for c in codes if reject_description(c)]
    return Outcome(REJECTED, codes, answer=Answer(REJECTED, codes, messages=messages))


def rejected_problems(
    codec: Sequence[CodecProblem], pmp: Sequence[capture.Problem] = ()
) -> Outcome:
    """One reject naming everything to fix: the codec's problems, then the PMP's.

    A field both find is named once, the PMP's way ("PMP: Days Supply missing");
    reject codes are deduplicated and cut to the response's five, while the
    message lines name every field (see `pmp_messages`).
    """
    left = list(pmp)
    codes: list[str] = []
    fixed: list[str] = []  # codec problems the PMP does not name
    named: list[capture.Problem] = []
    for p in codec:
        codes.append(p.reject_code)
        twins = [q for q in left if p.field and q.field == p.field]
        if twins:
            named += twins
            left = [q for q in left if q not in twins]
        elif (text := reject_description(p.reject_code) or p.message) and text not in fixed:
            fixed.append(text)
    named += left
    codes += [q.reject for q in named]
    room = MAX_MESSAGE_LINES - line_count(fixed)
    return rejected(codes, [*fixed, *pmp_messages(named, room)])


def line_count(messages: Sequence[str]) -> int:
    """Response lines the messages take (40 characters each, continued with 131-UG)."""
    return sum(len(responses.wrap(m)) for m in messages)


def pmp_messages(problems: Sequence[capture.Problem], room: int = MAX_MESSAGE_LINES) -> list[str]:
    """Message lines naming the field of every problem within ``room`` response lines.

    A line per problem when they fit; else the missing fields in one message,
    invalid ones with their reasons, then without, then by NCPDP field ID.
    """
    if not problems:
        return []
    forms = (
        [p.message for p in problems],
        _grouped(problems, _name, reasons=True),
        _grouped(problems, _name, reasons=False),
        _grouped(problems, _field_id, reasons=False),
    )
    return next((f for f in forms if line_count(f) <= room), forms[-1])


def _name(p: capture.Problem) -> str:
    return p.name


def _field_id(p: capture.Problem) -> str:
    return capture.field_id(p.field)


def _grouped(
    problems: Sequence[capture.Problem],
    label: Callable[[capture.Problem], str],
    *,
    reasons: bool,
) -> list[str]:
    missing = [label(p) for p in problems if p.reason == capture.MISSING]
    invalid = [p for p in problems if p.reason != capture.MISSING]
    out = [f"PMP missing: {', '.join(dict.fromkeys(missing))}"] if missing else []
    if reasons:
        out += [p.message for p in invalid]
    elif invalid:
        out.append(f"PMP invalid: {', '.join(dict.fromkeys(label(p) for p in invalid))}")
    return out


def _pmp_problems(
    request: Request,
    i: int,
    schedule_of: Callable[[str], str | None],
    rules: recordcheck.Rules,
    latest_service_date: dt.date | None,
) -> list[capture.Problem]:
    """What the PMP record of transaction ``i`` lacks, when it dispenses a controlled drug."""
    segs = tx_segments(request, i)
    if schedule(segs, schedule_of) in (None, UNKNOWN):  # not (known to be) controlled
        return []
    extracted = capture.extract_fill(
        request.header.date_of_service,
        segs,
        required=True,
        latest_service_date=latest_service_date,
    )
    return recordcheck.claim_problems(extracted, rules, schedule_of, latest_service_date)


# Cash pays on the gross amount due, or the U&C charge when gross is absent: a
# missing one of the pair is no reason to reject when the other is there.
_EITHER = {"DU": "DQ", "DQ": "DU"}


def _waived(request: Request, problem: CodecProblem) -> bool:
    other = _EITHER.get(problem.field or "")
    if other is None or problem.transaction is None:
        return False
    if problem.transaction >= len(request.transactions):
        return False
    return _money(tx_segments(request, problem.transaction), other) is not None


# --- the rules -----------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What one transaction is judged on."""

    request: Request
    index: int
    prior: Prior | None
    schedule_of: Callable[[str], str | None]
    pharmacy_known: bool
    auth_number: str
    capture: bool = True  # False: certification, judged alike but nothing captured
    latest_service_date: dt.date | None = None  # the edge's today (+1 day): no future DOS
    rules: recordcheck.Rules = None  # the state's record rules (None: the capture's own only)


def schedule(segments: list[Segment], schedule_of: Callable[[str], str | None]) -> str | None:
    """The schedule of the most controlled drug dispensed (CII first); else UNKNOWN when
    the directory does not hold a drug dispensed; None when none is controlled."""
    return most_controlled(schedule_of(ndc) for ndc in capture.product_ndcs(segments))


def _controlled(inp: Inputs) -> str | None:
    return schedule(tx_segments(inp.request, inp.index), inp.schedule_of)


def _billing(inp: Inputs) -> Outcome:
    req, i = inp.request, inp.index
    segs = tx_segments(req, i)
    code = req.header.transaction_code
    pricing, bad = _pricing(segs)
    if bad is not None:
        return bad
    controlled = _controlled(inp)  # a schedule, UNKNOWN (captured unclassified) or None
    action: Action | None = None
    advice: list[capture.Problem] = []  # an unknown NDC's PMP gaps: said, not rejected
    if controlled:
        if not inp.pharmacy_known:
            return rejected(["50"], ["Pharmacy not registered for PMP capture"])
        extracted = capture.extract_fill(
            req.header.date_of_service,
            segs,
            required=True,
            latest_service_date=inp.latest_service_date,
        )
        problems = recordcheck.claim_problems(
            extracted, inp.rules, inp.schedule_of, inp.latest_service_date
        )
        if controlled == UNKNOWN:
            # most unknown NDCs are not controlled: paid and kept with what the claim has,
            # unless what finds the fill is unreadable; what the PMP would lack is said
            advice = [p for p in problems if p.field not in _PRODUCT_FIELDS]
            problems = [p for p in advice if p.field in _KEY_FIELDS]
            extracted = capture.extract_fill(
                req.header.date_of_service,
                segs,
                required=False,
                latest_service_date=inp.latest_service_date,
            )
        if problems:
            return rejected_problems((), problems)
        prior = inp.prior
        if prior is not None and prior.state != "voided":
            same, old = _match_prior(req, i, prior)
            if same and old is not None:
                return Outcome(DUPLICATE, stored=_with_status(old, DUPLICATE))
            if code == "B1":
                return rejected(["83"])
        elif code == "B3":  # a rebill needs a live fill to revise
            return rejected(["84"])
        values = dict(extracted.values, payment_type=PAY_PRIVATE, route="cash")
        values.update(capture.classification(controlled))
        kind = "insert" if prior is None else "revise"
        action = Action(kind, i, values, extracted.ingredients)
    elif inp.prior is not None:  # not controlled: the identical claim answered before
        same, old = _match_prior(req, i, inp.prior)
        if same and old is not None and _status(old) in (PAID, DUPLICATE):
            return Outcome(DUPLICATE, stored=_with_status(old, DUPLICATE))
    said = [_paid_message(controlled, inp.capture)]
    answer = Answer(
        PAID,
        authorization_number=inp.auth_number or None,
        messages=[*said, *pmp_messages(advice, MAX_MESSAGE_LINES - line_count(said))],
        pricing=pricing,
    )
    return Outcome(PAID, action=action, captured=bool(controlled), answer=answer)


# What finds a fill (Rx number, fill number, date of service): a claim for an unknown
# NDC is rejected only for these. The product is not judged against the list it is not on.
_KEY_FIELDS = frozenset({"D2", "D3", "D1"})
_PRODUCT_FIELDS = frozenset({"D7", "TE"})


def _paid_message(controlled: str | None, capture_on: bool) -> str:
    if not controlled:
        return MSG_NOT_CONTROLLED
    if controlled == UNKNOWN:
        return MSG_UNCLASSIFIED if capture_on else MSG_UNCLASSIFIED_CERTIFIED
    return MSG_CAPTURED if capture_on else MSG_CERTIFIED


def _reversal(inp: Inputs) -> Outcome:
    req, i, prior = inp.request, inp.index, inp.prior
    if prior is None:
        if not _controlled(inp) and capture.product_ndcs(tx_segments(req, i)):
            # a non-controlled cash claim was never captured: nothing to void
            return Outcome(APPROVED, answer=Answer(APPROVED, messages=[MSG_NOT_CONTROLLED]))
        return rejected(["87"])
    if prior.state == "voided":
        same, old = _match_prior(req, i, prior)
        if same and old is not None:
            return Outcome(DUPLICATE_APPROVED, stored=_with_status(old, DUPLICATE_APPROVED))
        return rejected(["87"])
    answer = Answer(APPROVED, messages=[MSG_VOIDED])
    return Outcome(APPROVED, action=Action("void", i), captured=True, answer=answer)


def _eligibility(inp: Inputs) -> Outcome:
    return Outcome(APPROVED, answer=Answer(APPROVED, messages=[MSG_ELIGIBLE]))


_RULES: dict[str, Callable[[Inputs], Outcome]] = {
    "billing": _billing,
    "reversal": _reversal,
    "eligibility": _eligibility,
}


def adjudicate(
    request: Request,
    *,
    priors: Sequence[Prior | None],
    schedule_of: Callable[[str], str | None],
    pharmacy_known: bool,
    auth_numbers: Sequence[str],
    problems: Sequence[CodecProblem] = (),
    capture_on: bool = True,
    latest_service_date: dt.date | None = None,
    rules: recordcheck.Rules = None,
) -> Decision:
    """Judge every transaction of a cash request on its own.

    ``priors[i]`` is the fill held for transaction i's key (None: none);
    ``schedule_of(ndc)`` the drug directory's schedule of an NDC (None: not
    controlled; `drugs.UNKNOWN`: not in the directory, paid and captured unclassified);
    ``problems`` are `ncpdp.validate`'s findings. A message-level problem
    rejects the whole transmission; a transaction's own problems reject it alone.
    ``rules``: the state's record rules (or every state's the fill goes to), run
    on the record a controlled claim would become (`recordcheck`), so the counter
    pays only what the state takes.
    """
    problems = [p for p in problems if not _waived(request, p)]
    if any(p.transaction is None for p in problems):
        # a message-level problem (header, patient segment): the 504-F4 message names them
        named = dict.fromkeys(reject_description(p.reject_code) or p.message for p in problems)
        text = "; ".join(named)[:MESSAGE_F4]
        return Decision(
            responses.from_problems(request, problems, message=text), [], rejected_message=True
        )
    code = request.header.transaction_code
    rule = _RULES.get(HANDLERS.get(code, ""))
    outcomes: list[Outcome] = []
    for i in range(len(request.transactions) or 1):
        mine = [p for p in problems if p.transaction == i]
        if mine:
            billing = HANDLERS.get(code) == "billing" and i < len(request.transactions)
            pmp = (
                _pmp_problems(request, i, schedule_of, rules, latest_service_date)
                if billing
                else []
            )
            outcomes.append(rejected_problems(mine, pmp))
        elif rule is None:
            outcomes.append(rejected(["1S"]))
        elif not request.transactions and code != "E1":
            outcomes.append(rejected(["1Y"]))
        else:
            prior = priors[i] if i < len(priors) else None
            auth = auth_numbers[i] if i < len(auth_numbers) else ""
            inp = Inputs(
                request,
                i,
                prior,
                schedule_of,
                pharmacy_known,
                auth,
                capture_on,
                latest_service_date,
                rules,
            )
            outcomes.append(rule(inp))
    answers = [o.answer or Answer(o.status) for o in outcomes]
    response = responses.respond(request, answers)
    for i, o in enumerate(outcomes):
        if o.stored is not None:
            response.transactions[i] = o.stored
    return Decision(response, outcomes)
