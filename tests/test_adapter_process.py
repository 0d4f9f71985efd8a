"""`cashcapture serve` as a real process: SIGKILL under load loses and doubles nothing,
SIGTERM finishes claims in flight, and the logs never carry patient data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _adapter_helpers import (
    PATIENT_PHI,
    ROOT,
    Client,
    ServerProcess,
    b1,
    build,
    free_port,
    load,
    register_pharmacy,
    statuses,
    write_config,
)
from sqlalchemy import func, select

import ncpdp
from cashcapture.core.store import Fill, make_engine, session_factory

pytestmark = pytest.mark.slow


def _load(port: int, stop: threading.Event, paid: list[int], sent: list[int], base: int) -> None:
    """One pharmacy connection sending B1s back to back until the server goes away."""
    rx = base
    try:
        with Client(port, timeout=5) as c:
            while not stop.is_set():
                rx += 1
                sent.append(rx)
                answer = c.exchange(build(b1(rx=rx)))
                if statuses(answer) == ["P"]:
                    paid.append(rx)
    except (OSError, AssertionError):
        return


def _start_load(port: int, base: int, connections: int = 4):
    stop = threading.Event()
    paid: list[int] = []
    sent: list[int] = []
    threads = [
        threading.Thread(target=_load, args=(port, stop, paid, sent, base * (k + 1)))
        for k in range(connections)
    ]
    for t in threads:
        t.start()
    return stop, paid, sent, threads


def _fill_counts(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            rows = s.execute(select(Fill.rx_number, func.count()).group_by(Fill.rx_number))
            return {rx: n for rx, n in rows}
    finally:
        engine.dispose()


def test_sigkill_under_load_every_paid_claim_stored_once(tmp_path, migrated_db_url):
    register_pharmacy(migrated_db_url)
    port = free_port()
    cfg = write_config(tmp_path, migrated_db_url, port)
    server = ServerProcess(cfg, tmp_path / "serve.log")
    server.wait_listening()
    stop, paid, sent, threads = _start_load(port, 10_000)
    deadline = time.monotonic() + 20
    while len(paid) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGKILL)  # under load, mid-claim
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(paid) >= 150

    counts = _fill_counts(migrated_db_url)
    assert all(counts.get(str(rx)) == 1 for rx in paid), "a paid claim is missing"
    assert all(n == 1 for n in counts.values())
    assert set(counts) <= {str(rx) for rx in sent}

    # restarted, the pharmacy retransmits what it sent: paid ones are duplicates (D),
    # unanswered ones are paid now or were already captured; never a second fill
    again = ServerProcess(cfg, tmp_path / "serve2.log")
    again.wait_listening()
    try:
        with Client(port) as c:
            for rx in paid[-20:]:
                assert statuses(c.exchange(build(b1(rx=rx)))) == ["D"]
            unanswered = sorted(set(sent) - set(paid))
            for rx in unanswered:
                assert statuses(c.exchange(build(b1(rx=rx)))) in (["P"], ["D"])
    finally:
        assert again.stop(signal.SIGTERM) == 0
    counts = _fill_counts(migrated_db_url)
    assert all(n == 1 for n in counts.values())
    assert {str(rx) for rx in sent} <= set(counts)


def test_sigterm_finishes_claims_in_flight(tmp_path, migrated_db_url):
    register_pharmacy(migrated_db_url)
    port = free_port()
    server = ServerProcess(write_config(tmp_path, migrated_db_url, port), tmp_path / "serve.log")
    server.wait_listening()
    stop, paid, sent, threads = _start_load(port, 50_000)
    while len(paid) < 50:
        time.sleep(0.02)
    assert server.stop(signal.SIGTERM) == 0
    stop.set()
    for t in threads:
        t.join(10)
    counts = _fill_counts(migrated_db_url)
    assert all(counts.get(str(rx)) == 1 for rx in paid)
    events = [json.loads(line)["event"] for line in server.log_path.read_text().splitlines()]
    assert "draining" in events and events[-1] == "stopped"


def _wait_event(server: ServerProcess, event: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f'"event":"{event}"' in server.log_path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event} in {server.log_path.read_text()[-1000:]}")


def test_sighup_reads_the_drug_directory_again(tmp_path, migrated_db_url):
    """After `drugs import` the operator sends SIGHUP: the next claim is judged by the new
    directory, no restart, no claim lost; a broken file leaves the old one in use."""
    register_pharmacy(migrated_db_url)
    port = free_port()
    server = ServerProcess(write_config(tmp_path, migrated_db_url, port), tmp_path / "serve.log")
    newer = "12345678901"  # in no directory yet
    directory = tmp_path / "drugs.csv"  # the file write_config names as [adapter] drug_list
    try:
        server.wait_listening()
        with Client(port) as c:
            before = c.exchange(build(b1(rx=801, ndc=newer)))
            assert b"NDC not in drug directory" in before
            text = directory.read_text()
            directory.write_text("not a directory\n")
            server.proc.send_signal(signal.SIGHUP)
            _wait_event(server, "directory_not_reloaded")
            assert b"NDC not in drug directory" in c.exchange(build(b1(rx=802, ndc=newer)))
            directory.write_text(text + f"{newer},CII,,A product newer than the file\n")
            server.proc.send_signal(signal.SIGHUP)
            _wait_event(server, "directory_reloaded")
            after = c.exchange(build(b1(rx=803, ndc=newer)))
        assert statuses(after) == ["P"] and b"Cash claim captured for PMP" in after
    finally:
        assert server.stop(signal.SIGTERM) == 0
    engine = make_engine(migrated_db_url)
    with session_factory(engine)() as s:
        got = {f.rx_number: (f.schedule, f.unclassified) for f in s.scalars(select(Fill))}
    engine.dispose()
    assert got == {"801": (None, True), "802": (None, True), "803": ("CII", False)}
    claims = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    counted = [c.get("unclassified") for c in claims if c["event"] == "claim"]
    assert counted == [1, 1, None]  # the log line says which claims waited


def test_logs_carry_no_patient_data(tmp_path, db_url):
    register_pharmacy(db_url)
    port = free_port()
    server = ServerProcess(write_config(tmp_path, db_url, port), tmp_path / "serve.log")
    server.wait_listening()
    incomplete = b1(rx=4242)
    pat = ncpdp.find(incomplete.segments, "01")
    pat.fields = [(c, "PO BOX 9 HOLLOWAY" if c == "CM" else v) for c, v in pat.fields]
    claims = [
        load("b1_cash.dat"),
        load("b1_cash.dat"),  # duplicate
        load("b1_cash_4_transactions.dat"),
        load("b1_compound.dat"),
        load("b3_rebill.dat"),
        load("b2_reversal.dat"),
        load("b1_insured.dat"),  # no route configured: rejected
        build(incomplete),
        load("b1_cash.dat")[:56] + b"\x1eMARGARET HOLLOWAY",  # unreadable body
    ]
    try:
        with Client(port) as c:
            answers = [c.exchange(m) for m in claims]
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert statuses(answers[0]) == ["P"] and statuses(answers[1]) == ["D"]
    assert statuses(answers[7]) == ["R"]
    log = server.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines()]
    claim_lines = [r for r in lines if r["event"] == "claim"]
    assert len(claim_lines) == 8
    assert {"claim_id", "pharmacy", "route", "status", "latency_ms"} <= set(claim_lines[0])
    assert any(r.get("reject_codes") == ["CM"] for r in claim_lines)
    for phi in PATIENT_PHI:
        assert phi not in log, f"patient data in the log: {phi}"


def test_workers_share_the_port_and_one_database(tmp_path, migrated_db_url):
    register_pharmacy(migrated_db_url)
    port = free_port()
    cfg = write_config(tmp_path, migrated_db_url, port)
    server = ServerProcess(cfg, tmp_path / "serve.log", "--workers", "2")
    server.wait_listening(count=2)
    try:
        for k in range(8):  # new connections spread over both workers
            with Client(port) as c:
                for j in range(3):
                    assert statuses(c.exchange(build(b1(rx=70_000 + k * 10 + j)))) == ["P"]
        with Client(port) as c:  # a retransmission, whichever worker gets it
            assert statuses(c.exchange(build(b1(rx=70_000)))) == ["D"]
    finally:
        assert server.stop(signal.SIGTERM) == 0
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    pids = {r["pid"] for r in lines if r["event"] == "listening"}
    assert len(pids) == 2
    counts = _fill_counts(migrated_db_url)
    assert len(counts) == 24 and all(n == 1 for n in counts.values())


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_workers_log_to_stdout_and_die_with_their_parent(tmp_path, migrated_db_url):
    """SIGKILL of a `--workers` parent leaves no worker serving, and a restarted serve
    is alone on its port; every worker's JSON lines go to stdout, as the parent's."""
    register_pharmacy(migrated_db_url)
    port = free_port()
    cfg = write_config(tmp_path, migrated_db_url, port)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--config", str(cfg), "--workers", "2"],
            cwd=ROOT,
            stdout=o,
            stderr=e,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(pids) < 2:
            assert time.monotonic() < deadline, out.read_text()[-2000:] + err.read_text()[-2000:]
            lines = out.read_text().splitlines()
            pids = {json.loads(x)["pid"] for x in lines if '"listening"' in x}
            time.sleep(0.05)
        assert proc.pid not in pids
        assert '"event"' not in err.read_text()  # no JSON log line on stderr
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(p) for p in pids), "a worker outlived its parent"
        again = ServerProcess(cfg, tmp_path / "again.log")
        try:
            again.wait_listening()
            with Client(port) as c:
                assert statuses(c.exchange(build(b1(rx=90_001)))) == ["P"]
        finally:
            assert again.stop(signal.SIGTERM) == 0
        lines = (tmp_path / "again.log").read_text().splitlines()
        claims = [json.loads(x) for x in lines if '"claim"' in x]
        assert {c["pid"] for c in claims if "pid" in c} <= {again.proc.pid}
    finally:
        for p in pids | {proc.pid}:
            if _running(p):
                os.kill(p, signal.SIGKILL)
