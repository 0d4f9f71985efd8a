"""One message in, one response out: parse, route by BIN/PCN, decide, capture, answer.

The IO edge around the pure parts: the store is reached only through the
group committer, so a response leaves only after the claim and its capture
are committed; when the store cannot commit, the pharmacy gets reject 99
(host processing error), never a paid response.

Routes, from the config: cash (adjudicated here, captured), certification
(adjudicated here, nothing captured), a payer (forwarded unchanged, the
payer's answer relayed unchanged, controlled fills it paid captured), and no
route (reject NN).

An insured answer is relayed even when its capture cannot be committed (the
payer has paid; the pharmacy must have its answer): a capture that would
change a controlled fill goes to the spool (`spool.py`) first, synced, and is
replayed into the store at start and every `SPOOL_REPLAY_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

import ncpdp
from cashcapture.adapter import adjudicate, capture, logs
from cashcapture.adapter.config import Config, PayerRoute, rules_by_state
from cashcapture.adapter.metrics import Metrics
from cashcapture.adapter.spool import Record, Spool, spool_path
from cashcapture.adapter.upstream import Payer, UpstreamError
from cashcapture.core.pmp.records import PAY_OTHER
from cashcapture.core.pmp.rules import StateRules
from cashcapture.core.store import (
    BatchUnit,
    FillKey,
    FillRow,
    GroupCommitter,
    Ref,
    Writes,
    claim_answered_with,
    claim_hash,
    find_claim_by_hash,
    find_pharmacy,
    registered_states,
)
from cashcapture.core.store.models import MAIL_ORDER
from cashcapture.core.store.types import utcnow
from ncpdp import Request, responses
from ncpdp.header import LENGTHS, RequestHeader, parse_header


def latest_service_date() -> dt.date:
    """The latest date of service the counter takes: today on this host, plus a day for
    pharmacies in time zones ahead of it (the state refuses a DSP05 in its future)."""
    return dt.date.today() + dt.timedelta(days=1)


log = logging.getLogger("cashcapture.adapter.router")

CASH, CERTIFICATION, INSURED, UNROUTED = "cash", "certification", "insured", "unrouted"
HOST_ERROR = "99"  # Host Processing Error: the store could not commit
SYNTAX_ERROR = "R8"
NO_ROUTE = "NN"  # Transaction Rejected At Switch Or Intermediary
PAYER_PAID = frozenset({"P", "C"})  # payer statuses whose fill is captured
PAYER_APPROVED = frozenset({"A"})  # a reversal the payer accepted voids the fill
COMMIT_TIMEOUT = 10.0
SPOOL_REPLAY_EVERY = 30.0  # seconds between looks at the capture spool


@dataclass(frozen=True)
class Reply:
    """What goes back on the connection: response bytes, or None to close it."""

    data: bytes | None
    route: str = UNROUTED
    status: str = "R"
    dropped: str = ""  # data None: why the message gets no answer (a metrics label)


class RouteTable:
    """BIN/PCN -> route; a route with a PCN wins over one for the whole BIN."""

    def __init__(self, cfg: Config) -> None:
        self._routes: dict[tuple[str, str | None], tuple[str, PayerRoute | None]] = {}
        for r in cfg.cash:
            self._routes[(r.bin, r.pcn)] = (CASH, None)
        for r in cfg.certification:
            self._routes[(r.bin, r.pcn)] = (CERTIFICATION, None)
        for p in cfg.payers:
            self._routes[(p.route.bin, p.route.pcn)] = (INSURED, p)

    def lookup(self, bin_: str, pcn: str) -> tuple[str, PayerRoute | None]:
        pcn = pcn.strip()
        return self._routes.get((bin_, pcn)) or self._routes.get((bin_, None)) or (UNROUTED, None)


class AuthNumbers:
    """Authorization numbers unique across processes: C + pid + time + counter (base 36)."""

    def __init__(self) -> None:
        self._prefix = "C" + _b36(os.getpid())[-4:].rjust(4, "0") + _b36(int(time.time()))[-6:]
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return (self._prefix + _b36(next(self._counter)).rjust(9, "0"))[:20]


def _b36(n: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass(frozen=True)
class _Dispenser:
    """Where a pharmacy's fills are reported: its state, and the others it is registered
    with for mail order to their residents."""

    state: str
    mail_order: bool
    registered: frozenset[str]


class Router:
    """Handles one message at a time per caller; safe for many concurrent callers."""

    def __init__(
        self,
        cfg: Config,
        committer: GroupCommitter,
        schedule_of: Callable[[str], str | None],
        metrics: Metrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.routes = RouteTable(cfg)
        self.committer = committer
        self.schedule_of = schedule_of
        # every reporting state's record rules, judged at the counter (`rules_for`)
        self.rules_by_state = rules_by_state(cfg)
        self.rules = self.rules_by_state[cfg.state]
        self.metrics = metrics or Metrics()
        self.payers = {p.route: Payer(p, max_size=cfg.max_message_size) for p in cfg.payers}
        self.auth = AuthNumbers()
        self._pharmacies: dict[str, int] = {}  # provider id -> pharmacy id (hits only)
        self._dispensers: dict[int, _Dispenser] = {}  # pharmacy id -> where it reports
        self._counted: dict[tuple[str, str], tuple] = {}  # (route, status) -> metric children
        self.spool = Spool(spool_path(cfg.spool, cfg.db))
        self.spool_every = SPOOL_REPLAY_EVERY
        self._replayer: asyncio.Task | None = None

    async def start(self) -> None:
        """Replay the capture spool, then keep replaying it while the router runs."""
        await self.replay_spool()
        self._replayer = asyncio.create_task(self._replay_every())

    def close(self) -> None:
        if self._replayer is not None:
            self._replayer.cancel()
        for p in self.payers.values():
            p.close()

    # --- the capture spool ------------------------------------------------------

    async def replay_spool(self) -> int:
        """Commit the spooled captures (each removed once committed); the count replayed."""
        try:
            done, _kept = await asyncio.to_thread(self.spool.replay, self._replay)
        except OSError as exc:
            logs.event(log, "spool_unreadable", logging.ERROR, error=type(exc).__name__)
            return 0
        return done

    async def _replay_every(self) -> None:
        while True:
            await asyncio.sleep(self.spool_every)
            if self.spool.pending():
                await self.replay_spool()

    def _replay(self, record: Record) -> None:
        """One spooled answer into the store (a replay thread; raises when not committed)."""
        request = ncpdp.parse(record.request)
        if not isinstance(request, Request):
            raise TypeError("spooled request is not a request")
        statuses = _payer_statuses(record.response)[1]
        unit = _Replayed(self, record.request, record.response, request, statuses)
        unit.received_at = record.received_at
        self.committer.call(unit, COMMIT_TIMEOUT)

    async def _spool(self, unit: _InsuredCapture) -> str:
        """Keep a capture the store refused; what the claim's log line says of it."""
        record = Record(unit.data, unit.answer, unit.received_at)
        try:
            await asyncio.to_thread(self.spool.append, record)
        except OSError as exc:
            logs.event(log, "capture_lost", logging.ERROR, route=INSURED, error=type(exc).__name__)
            return "capture lost"
        return "capture spooled"

    # --- entry point ----------------------------------------------------------

    async def handle(self, data: bytes, *, payload_only: bool = False) -> Reply:
        """Answer one message. Never raises; ``Reply.data`` None means close the connection.

        ``payload_only``: the bytes came from a broken frame; answer with a
        reject if a header can be read, never adjudicate them.
        """
        start = time.perf_counter()
        reply = await self._handle(data, payload_only)
        if reply.data is None:  # no answer: a dropped frame, not a claim
            self.metrics.frames_dropped.labels(reply.dropped or "unanswered").inc()
            return reply
        counted = self._counted.get((reply.route, reply.status))
        if counted is None:  # label look-ups cost more than the counting
            counted = self._counted[(reply.route, reply.status)] = (
                self.metrics.claims.labels(reply.route, reply.status),
                self.metrics.latency.labels(reply.route),
            )
        counted[0].inc()
        counted[1].observe(time.perf_counter() - start)
        return reply

    async def _handle(self, data: bytes, payload_only: bool) -> Reply:
        start = time.perf_counter()
        try:
            if payload_only:
                raise ncpdp.ParseError(0, "frame could not be read")
            msg = ncpdp.parse(data)
        except ncpdp.ParseError as exc:
            return self._unreadable(data, exc, start)
        if not isinstance(msg, Request):
            logs.event(log, "not_a_request", logging.WARNING, reason="response received")
            return Reply(None, dropped="not_a_request")
        h = msg.header
        route, payer = self.routes.lookup(h.bin, h.pcn)
        try:
            if route in (CASH, CERTIFICATION):
                reply, fields = await self._cash(data, msg, route)
            elif route == INSURED:
                assert payer is not None
                reply, fields = await self._insured(data, msg, payer)
            else:
                response = responses.transmission_rejected(
                    msg, [NO_ROUTE], message="No route for this BIN/PCN"
                )
                reply, fields = (
                    Reply(ncpdp.build(response), UNROUTED, "R"),
                    {"reject_codes": [NO_ROUTE]},
                )
        except Exception:  # the store or a bug: the pharmacy still gets an answer
            log.warning(
                "claim_failed", exc_info=True, extra={"fields": {"route": route, "bin": h.bin}}
            )
            self.metrics.capture_failures.labels(route).inc()
            response = responses.transmission_rejected(msg, [HOST_ERROR])
            reply, fields = Reply(ncpdp.build(response), route, "R"), {"reject_codes": [HOST_ERROR]}
        logs.event(
            log,
            "claim",
            pharmacy=h.service_provider_id.strip(),
            route=reply.route,
            bin=h.bin,
            pcn=h.pcn.strip() or None,
            transaction_code=h.transaction_code,
            transactions=len(msg.transactions),
            status=reply.status,
            latency_ms=logs.ms_since(start),
            **fields,
        )
        return reply

    def _unreadable(self, data: bytes, exc: ncpdp.ParseError, start: float) -> Reply:
        """A reject when the request header can be read; otherwise close."""
        fields = {"offset": exc.offset, "reason": exc.reason}
        if len(data) >= LENGTHS["request"] and data[:2] != b"D0":
            try:
                parsed = parse_header("request", data[: LENGTHS["request"]])
                header = parsed if isinstance(parsed, RequestHeader) else None
            except ncpdp.ParseError:
                header = None
            if header is not None:
                response = responses.transmission_rejected(header, [SYNTAX_ERROR])
                logs.event(
                    log,
                    "unreadable_claim",
                    logging.WARNING,
                    pharmacy=header.service_provider_id.strip(),
                    bin=header.bin,
                    status="R",
                    reject_codes=[SYNTAX_ERROR],
                    latency_ms=logs.ms_since(start),
                    **fields,
                )
                return Reply(ncpdp.build(response), UNROUTED, "R")
        logs.event(log, "unreadable_frame", logging.WARNING, **fields)
        return Reply(None, dropped="unreadable")

    # --- cash and certification ---------------------------------------------------

    async def _cash(self, data: bytes, request: Request, route: str) -> tuple[Reply, dict]:
        unit = _CashCapture(self, data, request, route)
        response, decision, claim = await self._commit(unit)
        captured = sum(1 for o in decision.outcomes if o.captured and o.action is not None)
        fields = {
            "claim_id": claim.id,
            "reject_codes": decision.reject_codes or None,
            "captured": captured,
        }
        self._count_unclassified(route, unit.unclassified, fields)
        return Reply(response, route, decision.status), fields

    def _count_unclassified(self, route: str, n: int, fields: dict) -> None:
        """Fills just captured for an NDC the drug directory does not hold."""
        if n:
            fields["unclassified"] = n
            self.metrics.unclassified.labels(route).inc(n)

    def _pharmacy_id(self, session: Session, provider: str) -> int | None:
        pid = self._pharmacies.get(provider)
        if pid is None:
            pharmacy = find_pharmacy(session, provider)
            if pharmacy is not None and pharmacy.active:
                pid = self._pharmacies[provider] = pharmacy.id
                registered = registered_states(session, pid)
                self._dispensers[pid] = _Dispenser(pharmacy.state, pharmacy.mail_order, registered)
        return pid

    def reload(self, schedule_of: Callable[[str], str | None]) -> None:
        """A new drug directory; the pharmacies are looked up again on their next claim."""
        self.schedule_of = schedule_of
        self._pharmacies.clear()
        self._dispensers.clear()

    def rules_for(self, pharmacy_id: int | None, request: Request) -> tuple[StateRules, ...]:
        """The record rules of every state a claim's fills go to, as the extract sends
        them: the pharmacy's own state's (this adapter's state's when none here reports
        to it), and, shipped to a resident of a state the pharmacy is registered with
        (a mail-order pharmacy, or 147-U7 = 05), that state's too."""
        where = self._dispensers.get(pharmacy_id) if pharmacy_id is not None else None
        if where is None:
            return (self.rules,)
        out = [self.rules_by_state.get(where.state, self.rules)]
        patient = ncpdp.find(request.segments, "01")
        home = ((patient.get("CO") if patient else None) or "").strip().upper()
        mail = where.mail_order or any(
            (claim.get("U7") or "").strip() == MAIL_ORDER
            for txn in request.transactions
            if (claim := ncpdp.find(txn, "07")) is not None
        )
        if mail and home != where.state and home in where.registered:
            if (theirs := self.rules_by_state.get(home)) is not None:
                out.append(theirs)
        return tuple(out)

    async def _commit(self, unit):
        return await self.committer.run(unit, COMMIT_TIMEOUT)

    # --- insured ----------------------------------------------------------------

    async def _insured(
        self, data: bytes, request: Request, payer_route: PayerRoute
    ) -> tuple[Reply, dict]:
        payer = self.payers[payer_route.route]
        label = str(payer_route.route)
        try:
            answer = await payer.send(data)
        except UpstreamError as exc:
            if exc.reject_code == "95":
                self.metrics.upstream_timeouts.labels(label).inc()
            else:
                self.metrics.upstream_errors.labels(label, exc.reject_code).inc()
            response = ncpdp.build(responses.transmission_rejected(request, [exc.reject_code]))
            fields: dict[str, object] = {
                "payer": label,
                "reject_codes": [exc.reject_code],
                "reason": exc.reason,
            }
            return Reply(response, INSURED, "R"), fields
        captured, claim_id, reason = 0, None, None
        status, statuses = _payer_statuses(answer)
        unit = _InsuredCapture(self, data, answer, request, statuses)
        try:
            claim, captured = await self._commit(unit)
            claim_id = claim.id
        except Exception:
            # the payer has answered: its answer goes back, the capture to the spool first
            log.warning("capture_failed", exc_info=True, extra={"fields": {"route": INSURED}})
            self.metrics.capture_failures.labels(INSURED).inc()
            if unit.changes_a_fill():
                reason = await self._spool(unit)
        fields = {"claim_id": claim_id, "payer": label, "captured": captured, "reason": reason}
        if claim_id is not None:
            self._count_unclassified(INSURED, unit.unclassified, fields)
        return Reply(answer, INSURED, status), fields


def _payer_statuses(answer: bytes) -> tuple[str, list[str]]:
    """The payer's status for the log and metrics, and each transaction's (112-AN)."""
    try:
        parsed = ncpdp.parse(answer)
    except ncpdp.ParseError:
        return "?", []
    if not isinstance(parsed, ncpdp.Response):
        return "?", []
    statuses: list[str] = []
    for txn in parsed.transactions:
        st = ncpdp.find(txn, "21")
        statuses.append((st.get("AN") or "?") if st is not None else "?")
    return (statuses[0] if statuses else parsed.header.header_response_status), statuses


class _Capture(BatchUnit):
    """What every capture shares: the claim as received, its pharmacy, its fill keys."""

    def __init__(self, router: Router, data: bytes, request: Request) -> None:
        self.router = router
        self.data = data
        self.request = request
        self.received_at = utcnow()
        h = request.header
        self.provider = h.service_provider_id.strip()
        self.pcn = h.pcn.strip() or None
        self.pharmacy_id: int | None = None
        self.fill_keys: list[FillKey | None] = []
        self.unclassified = 0  # fills the last apply captured unclassified

    def wanted(self) -> list[int]:
        """Transactions whose fill this capture reads."""
        return list(range(len(self.request.transactions)))

    def keys(self, session: Session) -> list[FillKey]:
        self.pharmacy_id = pid = self.router._pharmacy_id(session, self.provider)
        self.fill_keys = [None] * (len(self.request.transactions) or 1)
        if pid is None:
            return []
        for i in self.wanted():
            key = adjudicate.fill_key(self.request, i)
            if key is not None:
                self.fill_keys[i] = (pid, *key)
        return [k for k in self.fill_keys if k is not None]

    def fills(self, found: Mapping[FillKey, FillRow]) -> list[FillRow | None]:
        return [found.get(k) if k is not None else None for k in self.fill_keys]

    def claim(self, writes: Writes, route: str, response: bytes, status: str, rejects=()) -> Ref:
        h = self.request.header
        return writes.claim(
            request=self.data,
            transaction_code=h.transaction_code,
            bin=h.bin,
            pcn=self.pcn,
            route=route,
            service_provider_id=self.provider,
            pharmacy_id=self.pharmacy_id,
            response=response,
            status=status,
            reject_codes=rejects,
            received_at=self.received_at,
        )


class _CashCapture(_Capture):
    """A cash or certification claim: adjudicated on what the store holds for its keys."""

    def __init__(self, router: Router, data: bytes, request: Request, route: str) -> None:
        super().__init__(router, data, request)
        self.route = route
        self.capture_on = route == CASH
        self.problems = ncpdp.validate(request)
        self.auths = [router.auth() for _ in range(len(request.transactions) or 1)]
        # billed drugs that are not controlled: no fill; their claim row tells a retransmission
        self.plain: set[int] = set()
        if (
            self.capture_on
            and adjudicate.HANDLERS.get(request.header.transaction_code) == "billing"
        ):
            for i in range(len(request.transactions)):
                segs = adjudicate.tx_segments(request, i)
                if adjudicate.schedule(segs, router.schedule_of) is None:
                    self.plain.add(i)
        self.earlier: adjudicate.Prior | None = None

    def wanted(self) -> list[int]:
        return super().wanted() if self.capture_on else []

    def keys(self, session: Session) -> list[FillKey]:
        self.earlier = None
        if self.plain:
            claim = find_claim_by_hash(session, claim_hash(self.data))
            if claim is not None:
                self.earlier = adjudicate.Prior("answered", claim.request, claim.response)
        return super().keys(session)

    def apply(self, found, writes: Writes) -> tuple[bytes, adjudicate.Decision, Ref]:
        fills = self.fills(found)
        priors = [
            adjudicate.Prior(f.state, f.last_request, f.last_response) if f is not None else None
            for f in fills
        ]
        for i in self.plain:
            priors[i] = self.earlier
        decision = adjudicate.adjudicate(
            self.request,
            priors=priors,
            schedule_of=self.router.schedule_of,
            pharmacy_known=self.pharmacy_id is not None or not self.capture_on,
            auth_numbers=self.auths,
            problems=self.problems,
            capture_on=self.capture_on,
            latest_service_date=latest_service_date(),
            rules=self.router.rules_for(self.pharmacy_id, self.request),
        )
        response = ncpdp.build(decision.response)
        claim = self.claim(writes, self.route, response, decision.status, decision.reject_codes)
        self.unclassified = sum(bool(a.values.get("unclassified")) for a in decision.actions)
        if self.capture_on:
            for action in decision.actions:
                fill = fills[action.transaction]
                if action.kind == "insert":
                    fields = dict(action.values, pharmacy_id=self.pharmacy_id)
                    writes.insert_fill(fields, claim=claim, ingredients=action.ingredients)
                elif action.kind == "revise":
                    assert fill is not None
                    writes.revise_fill(
                        fill, action.values, claim=claim, ingredients=action.ingredients
                    )
                elif action.kind == "void":
                    assert fill is not None
                    writes.void_fill(fill, claim=claim)
        return response, decision, claim


class _InsuredCapture(_Capture):
    """A claim the payer answered: its controlled fills follow the payer's verdict."""

    def __init__(
        self, router: Router, data: bytes, answer: bytes, request: Request, statuses: list[str]
    ) -> None:
        super().__init__(router, data, request)
        self.answer = answer
        self.statuses = statuses
        self.schedules: dict[int, str] = {}
        for i in range(min(len(statuses), len(request.transactions))):
            sched = adjudicate.schedule(adjudicate.tx_segments(request, i), router.schedule_of)
            if sched is not None:
                self.schedules[i] = sched

    def wanted(self) -> list[int]:
        return list(self.schedules)

    def payment_type(self) -> str:
        """DSP16 of the payer route the claim went to (its configured class; 99 if none)."""
        h = self.request.header
        _, payer = self.router.routes.lookup(h.bin, h.pcn)
        return payer.dsp16 if payer is not None else PAY_OTHER

    def changes_a_fill(self) -> bool:
        """Whether the payer's verdict captures or voids a controlled fill (what a lost
        capture would lose)."""
        code = self.request.header.transaction_code
        verdicts = PAYER_PAID if code in ("B1", "B3") else PAYER_APPROVED if code == "B2" else ()
        return any(self.statuses[i] in verdicts for i in self.schedules)

    def apply(self, found, writes: Writes) -> tuple[Ref | None, int]:
        status = self.statuses[0] if self.statuses else "?"
        claim = self.claim(writes, INSURED, self.answer, status)
        if self.pharmacy_id is None:
            return claim, 0
        code = self.request.header.transaction_code
        fills = self.fills(found)
        done = self.unclassified = 0
        for i, sched in self.schedules.items():
            if self.fill_keys[i] is None:
                continue
            fill, status = fills[i], self.statuses[i]
            if code in ("B1", "B3") and status in PAYER_PAID:
                segs = adjudicate.tx_segments(self.request, i)
                got = capture.extract_fill(
                    self.request.header.date_of_service, segs, required=False
                )
                values = dict(got.values, payment_type=self.payment_type(), route=INSURED)
                values.update(capture.classification(sched))
                self.unclassified += bool(values["unclassified"])
                if fill is None:
                    fields = dict(values, pharmacy_id=self.pharmacy_id)
                    writes.insert_fill(fields, claim=claim, ingredients=got.ingredients)
                else:
                    writes.revise_fill(fill, values, claim=claim, ingredients=got.ingredients)
                done += 1
            elif code == "B2" and status in PAYER_APPROVED and fill is not None:
                if fill.state != "voided":
                    writes.void_fill(fill, claim=claim)
                    done += 1
        return claim, done


class _Replayed(_InsuredCapture):
    """A spooled answer: captured unless its claim is stored already (replayed before, or
    committed after the router gave up waiting), so a replay never doubles a change."""

    stored = False

    def keys(self, session: Session) -> list[FillKey]:
        self.stored = claim_answered_with(session, self.data, self.answer)
        return [] if self.stored else super().keys(session)

    def apply(self, found, writes: Writes) -> tuple[Ref | None, int]:
        # a capture of this batch may have stored it since `keys` looked: its fills say so
        mine = (self.data, self.answer)
        if self.stored or any(
            (f.last_request, f.last_response) == mine for f in self.fills(found) if f is not None
        ):
            return None, 0
        return super().apply(found, writes)
