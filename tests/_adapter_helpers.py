"""Shared pieces of the adapter tests: fixture claims, a drug list, a pharmacy,
a real TCP client, a fake insured payer on loopback, a server subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import ncpdp
from cashcapture.adapter import client, framing
from cashcapture.core.store import Pharmacy, make_engine, session_factory, upgrade

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from cashcapture.adapter.router import Router

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "ncpdp"
sys.path.insert(0, str(FIXTURES))
import make as fx  # noqa: E402  (fixtures/ncpdp/make.py: the fixture claims' builders)

CASH_BIN = f"{fx.CASH_BIN}/{fx.CASH_PCN}"
INSURED_BIN = f"{fx.INSURED_BIN}/{fx.INSURED_PCN}"
# The fixture claims' controlled drugs and their schedules (a test drug list).
SCHEDULES = {
    fx.OXYCODONE_APAP: "CII",
    fx.HYDROCODONE_APAP: "CII",
    fx.ALPRAZOLAM: "CIV",
    fx.ZOLPIDEM: "CIV",
    fx.TESTOSTERONE_POWDER: "CIII",
}
schedule_of: Callable[[str], str | None] = SCHEDULES.get
PHARMACY_DEA = "FP1234563"

# The fixture patient: none of these may ever appear in a log line.
PATIENT_PHI = ["MARGARET", "HOLLOWAY", "19680704", "412 WOODLAND", "K12345678", "8595550123"]


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def build(msg) -> bytes:
    return ncpdp.build(msg)


def b1(rx: int = 1234567, ndc: str = fx.OXYCODONE_APAP, *, qty: str = "30", fill: int = 0):
    req = fx.b1_cash()
    req.transactions[0][0] = fx.claim(rx, ndc, qty, 5, fill)
    return req


def b2(rx: int = 1234567, ndc: str = fx.OXYCODONE_APAP, fill: int = 0):
    req = fx.b2_reversal()
    req.transactions[0][0] = fx.seg(
        "07", ("EM", "1"), ("D2", rx), ("E1", "03"), ("D7", ndc), ("D3", fill)
    )
    return req


def b3(rx: int = 1234567, ndc: str = fx.OXYCODONE_APAP, qty: str = "28"):
    req = fx.b3_rebill()
    req.transactions[0][0] = fx.claim(rx, ndc, qty, 5)
    return req


def statuses(response: bytes) -> list[str]:
    msg = ncpdp.parse(response)
    return [ncpdp.find(t, "21").get("AN") for t in msg.transactions]


def rejects(response: bytes, i: int = 0) -> list[str]:
    msg = ncpdp.parse(response)
    return ncpdp.find(msg.transactions[i], "21").get_all("FB")


def register_pharmacy(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        s.add(Pharmacy(dea=PHARMACY_DEA, npi=fx.PHARMACY_NPI, name="Bluegrass Community Pharmacy"))
        s.commit()
    engine.dispose()


@contextmanager
def real_counter(
    db_url: str,
    tmp_path: Path,
    schedule_of: Callable[[str], str | None],
    *,
    fixture_pharmacy: bool = True,
    **sections: dict,
) -> Iterator[tuple[Router, sessionmaker]]:
    """(router, sessions): the real counter (Router and group committer) over a migrated
    store at `db_url`, with the fixture claims' pharmacy registered unless told not, and
    any further config `sections` ({"states": {...}}, {"extract": {...}})."""
    from cashcapture.adapter import config
    from cashcapture.adapter.router import Router
    from cashcapture.core.store import GroupCommitter

    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    if fixture_pharmacy:
        with sessions.begin() as s:
            s.add(Pharmacy(dea=PHARMACY_DEA, npi=fx.PHARMACY_NPI, name="Bluegrass", reg_key="9004"))
    cfg = config.from_dict(
        {
            "adapter": {"db": db_url, "spool": str(tmp_path / "spool")},
            "routes": {"cash": [CASH_BIN]},
            **sections,
        }
    )
    committer = GroupCommitter(engine).start()
    router = Router(cfg, committer, schedule_of)
    try:
        yield router, sessions
    finally:
        router.close()
        committer.close()
        engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- clients ---------------------------------------------------------------------


class Client(client.Client):
    """A pharmacy system on loopback: the library client, asserting it gets answers."""

    def __init__(self, port: int, framing_name: str = "stx", timeout: float = 10.0) -> None:
        super().__init__("127.0.0.1", port, framing_name, timeout=timeout)

    def receive(self) -> bytes | None:
        """The next response, or None when the server closed the connection."""
        try:
            return super().receive()
        except client.ClientError as exc:
            raise AssertionError(str(exc)) from None

    def exchange(self, message: bytes) -> bytes:
        answer = super().exchange(message)
        assert answer is not None, "server closed the connection"
        return answer


class FakePayer:
    """An insured payer on loopback: records every request, answers paid (or stays silent)."""

    def __init__(self, framing_name: str = "stx", *, silent: bool = False) -> None:
        self.framing = framing_name
        self.silent = silent
        self.received: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def answer(self, request: bytes) -> bytes:
        req = ncpdp.parse(request)
        if req.header.transaction_code == "B2":
            return ncpdp.build(ncpdp.responses.approved(req))
        pricing = [ncpdp.responses.Pricing(patient_pay=fx.Decimal("5.00"))] * len(req.transactions)
        return ncpdp.build(ncpdp.responses.paid(req, pricing, authorization_number="PAYER1"))

    async def start(self) -> FakePayer:
        async def on_conn(reader, writer):
            self._writers.append(writer)
            dec = framing.decoder(self.framing, 65535)
            try:
                while chunk := await reader.read(65536):
                    dec.feed(chunk)
                    while (frame := dec.next_frame()) is not None:
                        assert isinstance(frame, bytes)
                        self.received.append(frame)
                        if not self.silent:
                            writer.write(framing.encode(self.framing, self.answer(frame)))
                            await writer.drain()
            finally:
                writer.close()

        self._server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        await asyncio.sleep(0.01)


# --- a server subprocess -------------------------------------------------------------


def write_config(
    tmp_path: Path, db_url: str, port: int, *, framing_name: str = "stx", extra: str = ""
) -> Path:
    drug_list = tmp_path / "drugs.csv"
    drug_list.write_text(  # a directory: any other NDC is unknown (captured unclassified)
        "ndc11,schedule,state,product\n"
        + "".join(f"{ndc},{s},,test drug\n" for ndc, s in SCHEDULES.items())
        + "".join(f"{ndc},,,\n" for ndc in (fx.LISINOPRIL, fx.CREAM_BASE))
    )
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(
        f"""
[adapter]
db = {json.dumps(db_url)}
drug_list = {json.dumps(str(drug_list))}
idle_timeout = 30
shutdown_grace = 5

[[listeners]]
host = "127.0.0.1"
port = {port}
framing = "{framing_name}"

[routes]
cash = ["{CASH_BIN}"]
{extra}
"""
    )
    return cfg


class ServerProcess:
    """`cashcapture serve` as a real process; its JSON log lines land in ``log_path``."""

    def __init__(self, config: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--config", str(config), *args],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_listening(self, count: int = 1, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = [
                json.loads(line)["port"]
                for line in self.log_path.read_text().splitlines()
                if '"listening"' in line
            ]
            if len(ports) >= count:
                return ports
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError("server did not start listening")

    def stop(self, sig: int, timeout: float = 20.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()
