"""One message in, one response out: parse, route by BIN/PCN, decide, capture, answer.

The IO edge around the pure parts: the store is reached only through the
group committer, so a response leaves only after the claim and its capture
are committed; when the store cannot commit, the pharmacy gets reject 99
(host processing error), never a paid response.

Routes, from the config: cash (adjudicated here, captured), certification
(adjudicated here, nothing captured), a payer (forwarded unchanged, the
payer's answer relayed unchanged, controlled fills it paid captured), and no
route (reject NN).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

import ncpdp
from ncpdp import Request, responses
from ncpdp.header import LENGTHS, parse_header

from . import adjudicate, capture, logs
from .config import Config, PayerRoute
from .metrics import Metrics
from .store import (
    Claim,
    GroupCommitter,
    answer_claim,
    find_fill,
    find_pharmacy,
    insert_fill,
    record_claim,
    revise_fill,
    void_fill,
)
from .upstream import Payer, UpstreamError

log = logging.getLogger("cashcapture.router")

CASH, CERTIFICATION, INSURED, UNROUTED = "cash", "certification", "insured", "unrouted"
HOST_ERROR = "99"  # Host Processing Error: the store could not commit
SYNTAX_ERROR = "R8"
NO_ROUTE = "NN"  # Transaction Rejected At Switch Or Intermediary
PAYER_PAID = frozenset({"P", "C"})  # payer statuses whose fill is captured
PAYER_APPROVED = frozenset({"A"})  # a reversal the payer accepted voids the fill
COMMIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    """What goes back on the connection: response bytes, or None to close it."""

    data: bytes | None
    route: str = UNROUTED
    status: str = "R"


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
        self.metrics = metrics or Metrics()
        self.payers = {p.route: Payer(p, max_size=cfg.max_message_size) for p in cfg.payers}
        self.auth = AuthNumbers()
        self._pharmacies: dict[str, int] = {}  # provider id -> pharmacy id (hits only)

    def close(self) -> None:
        for p in self.payers.values():
            p.close()

    # --- entry point ----------------------------------------------------------

    async def handle(self, data: bytes, *, payload_only: bool = False) -> Reply:
        """Answer one message. Never raises; ``Reply.data`` None means close the connection.

        ``payload_only``: the bytes came from a broken frame; answer with a
        reject if a header can be read, never adjudicate them.
        """
        start = time.perf_counter()
        reply = await self._handle(data, payload_only)
        self.metrics.claims.labels(reply.route, reply.status).inc()
        self.metrics.latency.labels(reply.route).observe(time.perf_counter() - start)
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
            return Reply(None)
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
                header = parse_header("request", data[: LENGTHS["request"]])
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
        return Reply(None)

    # --- cash and certification ---------------------------------------------------

    async def _cash(self, data: bytes, request: Request, route: str) -> tuple[Reply, dict]:
        problems = ncpdp.validate(request)
        n = len(request.transactions) or 1
        auths = [self.auth() for _ in range(n)]
        h = request.header
        provider = h.service_provider_id.strip()
        capture_on = route == CASH

        def unit(session: Session) -> tuple[bytes, adjudicate.Decision, Claim]:
            pharmacy_id = self._pharmacy_id(session, provider)
            fills: list = [None] * n
            priors: list[adjudicate.Prior | None] = [None] * n
            if capture_on and pharmacy_id is not None:
                for i in range(len(request.transactions)):
                    key = adjudicate.fill_key(request, i)
                    if key is not None:
                        fills[i] = find_fill(session, pharmacy_id, *key)
                        priors[i] = _prior(session, fills[i])
            decision = adjudicate.adjudicate(
                request,
                priors=priors,
                schedule_of=self.schedule_of,
                pharmacy_known=pharmacy_id is not None or not capture_on,
                auth_numbers=auths,
                problems=problems,
                capture_on=capture_on,
            )
            response = ncpdp.build(decision.response)
            claim = record_claim(
                session,
                request=data,
                transaction_code=h.transaction_code,
                bin=h.bin,
                pcn=h.pcn.strip() or None,
                route=route,
                service_provider_id=provider,
            )
            claim.pharmacy_id = pharmacy_id
            if capture_on:
                _apply(session, decision.actions, fills, pharmacy_id, claim)
            answer_claim(
                session,
                claim,
                response=response,
                status=decision.status,
                reject_codes=decision.reject_codes,
            )
            return response, decision, claim

        response, decision, claim = await self._commit(unit)
        captured = sum(1 for o in decision.outcomes if o.captured and o.action is not None)
        fields = {
            "claim_id": claim.id,
            "reject_codes": decision.reject_codes or None,
            "captured": captured,
        }
        return Reply(response, route, decision.status), fields

    def _pharmacy_id(self, session: Session, provider: str) -> int | None:
        pid = self._pharmacies.get(provider)
        if pid is None:
            pharmacy = find_pharmacy(session, provider)
            if pharmacy is not None and pharmacy.active:
                pid = self._pharmacies[provider] = pharmacy.id
        return pid

    async def _commit(self, unit):
        return await asyncio.wait_for(self.committer.run(unit), COMMIT_TIMEOUT)

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
            fields = {"payer": label, "reject_codes": [exc.reject_code], "reason": exc.reason}
            return Reply(response, INSURED, "R"), fields
        status, captured, claim_id = "?", 0, None
        try:
            parsed = ncpdp.parse(answer)
        except ncpdp.ParseError:
            parsed = None
        statuses: list[str] = []
        if isinstance(parsed, ncpdp.Response):
            for txn in parsed.transactions:
                st = ncpdp.find(txn, "21")
                statuses.append((st.get("AN") or "?") if st is not None else "?")
            status = statuses[0] if statuses else parsed.header.header_response_status
        try:
            claim, captured = await self._commit(
                self._insured_unit(data, answer, request, statuses)
            )
            claim_id = claim.id
        except Exception:
            # the payer has answered; its answer goes back, the capture is counted lost
            log.warning("capture_failed", exc_info=True, extra={"fields": {"route": INSURED}})
            self.metrics.capture_failures.labels(INSURED).inc()
        fields = {"claim_id": claim_id, "payer": label, "captured": captured}
        return Reply(answer, INSURED, status), fields

    def _insured_unit(self, data: bytes, answer: bytes, request: Request, statuses: list[str]):
        h = request.header
        provider = h.service_provider_id.strip()
        code = h.transaction_code

        def unit(session: Session) -> tuple[Claim, int]:
            pharmacy_id = self._pharmacy_id(session, provider)
            claim = record_claim(
                session,
                request=data,
                transaction_code=code,
                bin=h.bin,
                pcn=h.pcn.strip() or None,
                route=INSURED,
                service_provider_id=provider,
            )
            claim.pharmacy_id = pharmacy_id
            answer_claim(session, claim, response=answer, status=statuses[0] if statuses else "?")
            done = 0
            if pharmacy_id is None:
                return claim, done
            for i, status in enumerate(statuses[: len(request.transactions)]):
                segs = adjudicate.tx_segments(request, i)
                sched = adjudicate.schedule(segs, self.schedule_of)
                if sched is None:
                    continue
                key = adjudicate.fill_key(request, i)
                if key is None:
                    continue
                fill = find_fill(session, pharmacy_id, *key)
                if code in ("B1", "B3") and status in PAYER_PAID:
                    got = capture.extract_fill(h.date_of_service, segs, required=False)
                    values = dict(got.values, payment_type="04", route=INSURED, schedule=sched)
                    if fill is None:
                        insert_fill(
                            session,
                            dict(values, pharmacy_id=pharmacy_id),
                            claim=claim,
                            ingredients=got.ingredients,
                        )
                    else:
                        revise_fill(session, fill, values, claim=claim, ingredients=got.ingredients)
                    done += 1
                elif code == "B2" and status in PAYER_APPROVED and fill is not None:
                    if fill.state != "voided":
                        void_fill(session, fill, claim=claim)
                        done += 1
            return claim, done

        return unit


def _prior(session: Session, fill) -> adjudicate.Prior | None:
    if fill is None:
        return None
    claim_id = fill.updated_by_claim_id or fill.created_by_claim_id
    claim = session.get(Claim, claim_id) if claim_id else None
    return adjudicate.Prior(
        fill.state,
        claim.request if claim is not None else None,
        claim.response if claim is not None else None,
    )


def _apply(session: Session, actions, fills, pharmacy_id, claim) -> None:
    for action in actions:
        fill = fills[action.transaction]
        if action.kind == "insert":
            insert_fill(
                session,
                dict(action.values, pharmacy_id=pharmacy_id),
                claim=claim,
                ingredients=action.ingredients,
            )
        elif action.kind == "revise":
            revise_fill(session, fill, action.values, claim=claim, ingredients=action.ingredients)
        elif action.kind == "void":
            void_fill(session, fill, claim=claim)
