"""The adapter over real TCP on loopback, in every framing, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from _adapter_helpers import (
    CASH_BIN,
    INSURED_BIN,
    Client,
    FakePayer,
    b1,
    b2,
    b3,
    build,
    fx,
    load,
    register_pharmacy,
    rejects,
    schedule_of,
    statuses,
)
from sqlalchemy import func, select, text

import ncpdp
from cashcapture.adapter import config, framing
from cashcapture.adapter.server import AdapterServer
from cashcapture.core.store import Claim, Fill, make_engine, session_factory
from extract import reports

FRAMINGS = ["stx", "len2", "etx"]


class Running:
    """An AdapterServer on its own event loop thread; tests talk to it over TCP."""

    def __init__(self, cfg: config.Config | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        if cfg is not None:
            self.start(cfg)

    def start(self, cfg: config.Config) -> None:
        self.server: AdapterServer = self.call(self._start(cfg))
        self.ports = dict(zip((li.framing for li in cfg.listeners), self.server.ports, strict=True))

    async def _start(self, cfg):
        server = AdapterServer(cfg, schedule_of)
        await server.start()
        return server

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def make_config(db_url: str, **adapter) -> config.Config:
    data = {
        "adapter": {"db": db_url, "idle_timeout": 10, **adapter},
        "listeners": [{"host": "127.0.0.1", "port": 0, "framing": f} for f in FRAMINGS],
        "routes": {"cash": [CASH_BIN], "certification": ["999002"]},
    }
    return config.from_dict(data)


@pytest.fixture
def adapter(migrated_db_url):
    register_pharmacy(migrated_db_url)
    running = Running(make_config(migrated_db_url))
    yield running
    running.stop()


def fills(db_url: str) -> list[Fill]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return list(s.scalars(select(Fill).order_by(Fill.id)))
    finally:
        engine.dispose()


@pytest.mark.parametrize("framing_name", FRAMINGS)
def test_b1_b3_b2_e1_over_tcp(adapter, migrated_db_url, framing_name):
    with Client(adapter.ports[framing_name], framing_name) as c:
        paid = c.exchange(build(b1()))
        assert statuses(paid) == ["P"]
        [fill] = fills(migrated_db_url)  # committed before the answer left
        assert (fill.rx_number, fill.state, fill.route) == ("1234567", "new", "cash")
        assert fill.patient_last_name == "HOLLOWAY" and fill.schedule == "CII"

        again = c.exchange(build(b1()))  # identical retransmission
        assert again == paid.replace(b"\x1cANP", b"\x1cAND")
        assert rejects(c.exchange(build(b1(qty="31")))) == ["83"]

        assert statuses(c.exchange(build(b3(qty="28")))) == ["P"]
        [fill] = fills(migrated_db_url)
        assert fill.state == "revised" and str(fill.quantity).startswith("28")

        assert statuses(c.exchange(build(b2()))) == ["A"]
        assert fills(migrated_db_url)[0].state == "voided"
        assert statuses(c.exchange(build(b2()))) == ["S"]
        assert rejects(c.exchange(build(b2(rx=999)))) == ["87"]

        e1 = ncpdp.parse(load("e1_eligibility.dat"))
        e1.header.bin, e1.header.pcn = fx.CASH_BIN, fx.CASH_PCN.ljust(10)
        assert statuses(c.exchange(build(e1))) == ["A"]


def test_several_messages_per_connection_in_order(adapter, migrated_db_url):
    msgs = [build(b1(rx=100 + i)) for i in range(5)]
    with Client(adapter.ports["stx"]) as c:
        c.send_raw(b"".join(framing.encode("stx", m) for m in msgs))  # pipelined
        answers = [c.receive() for _ in msgs]
    for i, a in enumerate(answers):
        assert statuses(a) == ["P"]
        claim = ncpdp.find(ncpdp.parse(a).transactions[0], "22")
        assert claim.get("D2").lstrip("0") == str(100 + i)
    assert len(fills(migrated_db_url)) == 5


def test_many_concurrent_connections(adapter, migrated_db_url):
    results: list[str] = []

    def one(k: int) -> None:
        with Client(adapter.ports["len2"], "len2") as c:
            for j in range(5):
                results.extend(statuses(c.exchange(build(b1(rx=1000 + k * 10 + j)))))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["P"] * 40
    assert len(fills(migrated_db_url)) == 40


def test_four_transactions_and_unknown_bin(adapter):
    with Client(adapter.ports["etx"], "etx") as c:
        assert statuses(c.exchange(load("b1_cash_4_transactions.dat"))) == ["P"] * 4
        unknown = b1()
        unknown.header.bin = "123456"
        answer = ncpdp.parse(c.exchange(build(unknown)))
        assert answer.header.header_response_status == "R"
        assert ncpdp.find(answer.transactions[0], "21").get_all("FB") == ["NN"]


def test_unreadable_frames(adapter):
    port = adapter.ports["stx"]
    # a header that can be read, a body that cannot: reject R8, connection stays usable
    broken = build(b1())[:56] + b"\x1eGARBAGE"
    with Client(port) as c:
        answer = ncpdp.parse(c.exchange(broken))
        assert answer.header.header_response_status == "R"
        assert "R8" in ncpdp.find(answer.transactions[0], "21").get_all("FB")
        assert statuses(c.exchange(build(b1(rx=555)))) == ["P"]
    # no STX at all: nothing readable, the connection is closed
    with Client(port) as c:
        c.send_raw(b"HELLO\x03")
        assert c.receive() is None
    # a frame without ETX whose header can be read: reject, then closed
    with Client(port) as c:
        body = build(b1(rx=556))
        c.send_raw(b"\x02%04d" % len(body) + body + b"X")
        answer = c.receive()
        assert answer is not None and ncpdp.parse(answer).header.header_response_status == "R"
        assert c.receive() is None
    # longer than the maximum message size: closed without reading it
    with Client(adapter.ports["len2"], "len2") as c:
        c.send_raw(b"\xff\xff" + b"x" * 100)
        assert c.receive() is None


def test_idle_connection_is_closed(migrated_db_url):
    running = Running(make_config(migrated_db_url, idle_timeout=0.3))
    try:
        with Client(running.ports["stx"]) as c:
            start = time.monotonic()
            assert c.receive() is None
            assert time.monotonic() - start < 5
    finally:
        running.stop()


def test_store_failure_answers_99_never_paid(adapter, migrated_db_url):
    engine = make_engine(migrated_db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE fill_ingredients"))
        conn.execute(text("DROP TABLE submission_records"))
        conn.execute(text("DROP TABLE record_rejects"))
        conn.execute(text("DROP TABLE fill_reports"))
        conn.execute(text("DROP TABLE fills"))
    engine.dispose()
    with Client(adapter.ports["stx"]) as c:
        answer = ncpdp.parse(c.exchange(build(b1(rx=777))))
    assert answer.header.header_response_status == "R"
    assert ncpdp.find(answer.transactions[0], "21").get_all("FB") == ["99"]


def _insured_config(
    db_url: str, payer_port: int, timeout: float = 8.0, payment_type: str | None = "commercial"
) -> config.Config:
    route = {"route": INSURED_BIN, "host": "127.0.0.1", "port": payer_port, "timeout": timeout}
    if payment_type is not None:
        route["payment_type"] = payment_type
    data = {
        "adapter": {"db": db_url},
        "listeners": [{"host": "127.0.0.1", "port": 0, "framing": f} for f in FRAMINGS],
        "routes": {"cash": [CASH_BIN]},
        "payers": [route],
    }
    return config.from_dict(data)


@pytest.mark.parametrize(
    ("payment_type", "dsp16"),
    [("commercial", "04"), ("medicaid", "02"), ("workers_comp", "06"), (None, "99")],
)
def test_insured_claim_forwarded_and_relayed_unchanged(migrated_db_url, payment_type, dsp16):
    register_pharmacy(migrated_db_url)
    payer = FakePayer()
    holder = Running()
    holder.call(payer.start())
    holder.start(_insured_config(migrated_db_url, payer.port, payment_type=payment_type))
    try:
        request = load("b1_insured.dat")
        with Client(holder.server.ports[0]) as c:
            answer = c.exchange(request)
            answer2 = c.exchange(request)  # the pooled payer connection is reused
        assert payer.received == [request, request]  # byte for byte
        assert answer == payer.answer(request) == answer2  # relayed unchanged
        [fill] = fills(migrated_db_url)
        assert (fill.route, fill.ndc, fill.payment_type) == ("insured", fx.HYDROCODONE_APAP, dsp16)
        engine = make_engine(migrated_db_url)
        with session_factory(engine)() as s:
            kept = s.scalars(select(Claim.response).where(Claim.route == "insured")).all()
            day = fill.date_of_service
            listed = reports.unclassified_payers(s, day, day).rows
        engine.dispose()
        # a route with no payment_type: 99, and `status` names it; never a silent 04
        bin_, _, pcn = INSURED_BIN.partition("/")
        assert listed == (
            [(bin_, pcn, 1, day.isoformat(), day.isoformat())] if dsp16 == "99" else []
        )
        assert kept[0] == answer  # the payer's response is kept
    finally:
        holder.call(payer.stop())
        holder.stop()


@pytest.mark.parametrize("case", ["timeout", "unreachable"])
def test_payer_timeout_and_unreachable(migrated_db_url, case):
    holder = Running()
    payer = FakePayer(silent=True)
    holder.call(payer.start())
    port = payer.port
    if case == "unreachable":
        holder.call(payer.stop())
        time.sleep(0.05)
    holder.start(_insured_config(migrated_db_url, port, 0.3))
    try:
        with Client(holder.server.ports[0]) as c:
            answer = ncpdp.parse(c.exchange(load("b1_insured.dat")))
        expected = "95" if case == "timeout" else "98"
        assert ncpdp.find(answer.transactions[0], "21").get_all("FB") == [expected]
        assert answer.header.header_response_status == "R"
        assert fills(migrated_db_url) == []
    finally:
        holder.call(payer.stop())
        holder.stop()


def test_certification_route_judges_alike_captures_nothing_and_metrics_count(
    adapter, migrated_db_url
):
    from prometheus_client import generate_latest

    cert = b1(rx=4711)
    cert.header.bin = "999002"
    with Client(adapter.ports["stx"]) as c:
        answer = c.exchange(build(cert))
        assert statuses(answer) == ["P"]
        assert b"certification" in answer
        pat = ncpdp.find(cert.segments, "01")
        pat.fields = [(k, v) for k, v in pat.fields if k != "CB"]
        assert rejects(c.exchange(build(cert))) == ["CB"]
        assert statuses(c.exchange(build(b1(rx=4712)))) == ["P"]
    assert [f.rx_number for f in fills(migrated_db_url)] == ["4712"]
    text = generate_latest(adapter.server.metrics.registry).decode()
    assert 'cashcapture_claims_total{route="certification",status="P"} 1.0' in text
    assert 'cashcapture_claims_total{route="cash",status="P"} 1.0' in text
    assert "cashcapture_claim_latency_seconds_bucket" in text


def test_non_controlled_retransmission_is_duplicate_with_stored_response(adapter, migrated_db_url):
    claim = build(b1(rx=5550001, ndc=fx.LISINOPRIL))
    other = build(b1(rx=5550002, ndc=fx.LISINOPRIL))
    with Client(adapter.ports["stx"]) as c:
        first = c.exchange(claim)
        again = c.exchange(claim)
        third = c.exchange(claim)
        fresh = c.exchange(other)
    assert statuses(first) == ["P"] and statuses(fresh) == ["P"]
    assert statuses(again) == ["D"] and third == again
    # the stored response byte for byte, only its status P -> D
    assert again == first.replace(b"\x1cANP", b"\x1cAND", 1)
    engine = make_engine(migrated_db_url)
    with session_factory(engine)() as s:
        rows = s.execute(select(Claim.route, Claim.status, Claim.response).order_by(Claim.id))
        assert [tuple(r) for r in rows] == [
            ("cash", "P", first),
            ("cash", "D", again),
            ("cash", "D", third),
            ("cash", "P", fresh),
        ]
        assert s.scalar(select(func.count()).select_from(Fill)) == 0
    engine.dispose()


def test_a_frame_trickling_in_is_cut_off_and_a_whole_one_still_answered(migrated_db_url):
    """Idle silence is not the only limit: a client sending a byte now and then holds a
    slot forever unless the frame itself must complete in `frame_timeout` seconds."""
    register_pharmacy(migrated_db_url)
    running = Running(make_config(migrated_db_url, frame_timeout=0.6))
    try:
        port = running.ports["stx"]
        frame = framing.encode("stx", build(b1(rx=9101)))
        with Client(port) as c:
            assert statuses(c.exchange(build(b1(rx=9100)))) == ["P"]  # a whole frame: fine
            closed_at = None
            start = time.monotonic()
            for byte in frame[:40]:  # a byte every 0.1 s: never silent for long
                try:
                    c.send_raw(bytes([byte]))
                except OSError:
                    closed_at = time.monotonic() - start
                    break
                time.sleep(0.1)
            if closed_at is None:
                c.sock.settimeout(3)
                assert c.receive() is None  # the server closed it, no answer
                closed_at = time.monotonic() - start
        assert closed_at < 3.5  # well before the 10 s idle timeout or the frame's end
        with Client(port) as c:  # the server is fine for everyone else
            assert statuses(c.exchange(build(b1(rx=9102)))) == ["P"]
    finally:
        running.stop()


def test_connections_over_the_cap_are_closed_and_logged_once(migrated_db_url):
    register_pharmacy(migrated_db_url)
    running = Running(make_config(migrated_db_url, max_connections=2))
    try:
        port = running.ports["stx"]
        held = [Client(port), Client(port)]
        for i, c in enumerate(held):  # both served: they count as open
            assert statuses(c.exchange(build(b1(rx=9200 + i)))) == ["P"]
        for _ in range(20):
            extra = Client(port)
            extra.sock.settimeout(3)
            assert extra.receive() is None  # closed at once, no answer
            extra.close()
        # the first refusal was logged; the next 19 wait for the next line (10 s later)
        assert running.server.refused == 19
        for c in held:
            c.close()
        time.sleep(0.2)
        with Client(port) as c:  # room again
            assert statuses(c.exchange(build(b1(rx=9300)))) == ["P"]
    finally:
        running.stop()
