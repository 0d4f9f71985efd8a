"""`cashcapture demo`: the whole pipeline on loopback, in one process, in one folder.

It stands up every part a switch has, for real: the adapter (asyncio TCP, SQLite
store), a simulated insured payer (a tiny TCP server answering paid), and an
SFTP server standing in for the state's collector (generated host key, pinned).
Then it sends the scenario claims of `demo_claims` over TCP, extracts the day,
validates and submits the files, and checks the collector's folder with the
same validator the state applies. Nothing is mocked; only the payer and the
collector are stand-ins.

The folder is started clean on every run (it is marked as a demo folder on the
first run; a folder that holds anything else is refused, never emptied), and
everything is left in it for a person to open: the database, the config file
(one `cashcapture.toml` that `serve` and the extract commands both read), the
outbox, the collector's folder, the SSH keys.

The claims are dated today (in the extract's time zone) and the day extracted is
today: the extract reports what was captured up to the end of its day, so the
demo need not wait for midnight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import ncpdp
from cashcapture.adapter import framing
from cashcapture.adapter.client import AsyncClient, ClientError
from cashcapture.app import demo_claims
from ncpdp import Request, responses
from ncpdp.responses import Pricing

MARKER = ".cashcapture-demo"
DEFAULT_DIR = "demo-run"
PGP_PUBLIC = "keys/collector-pgp-public.asc"  # relative to the demo folder (the config's)
CONFIG_TOML = "cashcapture.toml"  # one file: the adapter's and the extract's sections
DB_FILE = "cashcapture.db"
COLLECTOR_DIR = "collector"
FRAMING = "stx"
TIMEOUT = 10.0
COPAY, PLAN_PAYS = Decimal("5.00"), Decimal("12.40")  # the simulated payer's answer

Step = Callable[[str], None]


class DemoError(Exception):
    """The demo cannot run (folder in use, a part failed to start); one line."""


# --- results -----------------------------------------------------------------------


@dataclass
class ClaimResult:
    """What the pharmacy system saw for one scenario message."""

    name: str
    what: str
    route: str
    status: str
    rejects: tuple[str, ...]
    messages: tuple[str, ...]
    expected: bool


@dataclass
class DeliveredFile:
    name: str
    path: Path
    records: int
    status: str  # the validator's: Accept / Accept with warnings / ... / File Failed
    exit_code: int  # as `cashcapture validate`: 0 accepted, 1 rejects, 2 failed
    warnings: int


@dataclass
class DemoResult:
    folder: Path
    day: dt.date
    adapter_port: int = 0
    claims: list[ClaimResult] = field(default_factory=list)
    fills: Counter = field(default_factory=Counter)  # (route, state) -> count
    unclassified: int = 0  # fills of NDCs the drug directory does not hold, waiting
    certification_fills: int = 0
    payer_requests: int = 0
    payer_unchanged: bool = True
    files_written: list[str] = field(default_factory=list)
    zero_report_files: set[str] = field(default_factory=set)
    held_back: list[tuple[str, str, str]] = field(default_factory=list)  # (rx, ndc, reason)
    extract_problems: list[str] = field(default_factory=list)
    delivered: list[DeliveredFile] = field(default_factory=list)
    not_delivered: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def outcomes(self) -> Counter:
        return Counter(c.status for c in self.claims)

    @property
    def ok(self) -> bool:
        """Every answer as expected, every file delivered and accepted by the validator."""
        return (
            all(c.expected for c in self.claims)
            and bool(self.delivered)
            and not self.not_delivered
            and not self.extract_problems
            and all(f.exit_code == 0 for f in self.delivered)
            and self.certification_fills == 0
            and self.payer_unchanged
        )


# --- the folder ---------------------------------------------------------------------


def prepare(folder: Path) -> Path:
    """A clean demo folder: created, or emptied if a previous demo made it; else refused."""
    folder = folder.resolve()
    if folder.exists():
        if not folder.is_dir():
            raise DemoError(f"{folder} is a file, not a folder")
        if any(folder.iterdir()) and not (folder / MARKER).exists():
            raise DemoError(
                f"{folder} is not empty and was not made by the demo; choose another --dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `cashcapture demo`; emptied on the next run\n")
    return folder


def config_toml(
    db_url: str, payer_port: int, sftp_section: str, profile: str = "KY", package: str = ""
) -> str:
    """The demo's one config file: adapter, routes, the simulated payer, extract, SFTP."""
    cash, cert, insured = (
        demo_claims.CASH_ROUTE,
        demo_claims.CERTIFICATION_ROUTE,
        demo_claims.INSURED_ROUTE,
    )
    return (
        "# The demo's config, one file for every part (port 0: any free port):\n"
        "#   cashcapture serve --config cashcapture.toml\n"
        "#   cashcapture status --config cashcapture.toml --db ...\n"
        "[adapter]\n"
        f'db = "{db_url}"\n'
        'state = "KY"\n'
        f'profile = "{profile}"\n\n'
        "[[listeners]]\n"
        'host = "127.0.0.1"\n'
        "port = 0\n"
        f'framing = "{FRAMING}"\n\n'
        "[routes]\n"
        f'cash = ["{cash}"]\n'
        f'certification = ["{cert}"]\n\n'
        "[[payers]]  # the simulated insured payer (stopped when the demo ends)\n"
        f'route = "{insured}"\n'
        'host = "127.0.0.1"\n'
        f"port = {payer_port}\n"
        "timeout = 5.0\n"
        'payment_type = "commercial"  # DSP16 04 for its fills\n\n'
        "[extract]\n"
        f'profile = "{profile}"  # cashcapture profiles list\n'
        'outbox = "outbox"\n'
        'zero_reports = "daily"  # every pharmacy gets a file, whatever the profile says\n'
        'po_box = "reject"  # hold PO Box records back, as the guide\'s reject table shows\n\n'
        + sftp_section
        + "retries = 2\nbackoff = 0.2\ntimeout = 10.0\n"
        + (f'package = "{package}"\n' if package else "")
        + (f'pgp_public_key = "{PGP_PUBLIC}"  # the collector\'s\n' if package == "pgp" else "")
    )


# --- the simulated payer --------------------------------------------------------------


class SimulatedPayer:
    """An insured payer on loopback: B1/B3 paid (patient pays a copay), B2 and E1 approved."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()
        self._auth = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end every open connection before the loop goes away."""
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        decoder = framing.decoder(FRAMING, 65535)
        try:
            while chunk := await reader.read(65536):
                decoder.feed(chunk)
                while (frame := decoder.next_frame()) is not None:
                    if isinstance(frame, framing.FrameError):
                        return
                    self.received.append(frame)
                    writer.write(framing.encode(FRAMING, self.answer(frame)))
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._clients.discard(task)
            writer.close()

    def answer(self, data: bytes) -> bytes:
        request = ncpdp.parse(data)
        assert isinstance(request, Request)
        if request.header.transaction_code in ("B1", "B3"):
            self._auth += 1
            pricing = [
                Pricing(patient_pay=COPAY, copay=COPAY, total_amount_paid=PLAN_PAYS)
                for _ in request.transactions
            ]
            response = responses.paid(
                request, pricing, authorization_number=f"BLUE{self._auth:08d}"
            )
        else:
            response = responses.approved(request)
        return ncpdp.build(response)


# --- the pharmacy side ------------------------------------------------------------------


async def send_all(port: int, messages: list[bytes]) -> list[bytes]:
    """Send each message on one connection, one at a time, as a pharmacy system does."""
    client = await AsyncClient.connect("127.0.0.1", port, FRAMING)
    answers = []
    try:
        for data in messages:
            try:
                answer = await asyncio.wait_for(client.exchange(data), TIMEOUT)
            except ClientError as exc:
                raise DemoError(f"{exc} from the adapter") from None
            if answer is None:
                raise DemoError("the adapter closed the connection without an answer")
            answers.append(answer)
    finally:
        client.close()
    return answers


def read_answer(data: bytes) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(status, reject codes, message lines) of a one-transaction response."""
    response = ncpdp.parse(data)
    segments = response.transactions[0] if response.transactions else response.segments
    st = ncpdp.find(segments, "21")
    if st is None:
        return response.header.header_response_status, (), ()  # type: ignore[union-attr]
    return st.get("AN") or "?", tuple(st.get_all("FB")), message_lines(st)


def message_lines(status: ncpdp.Segment) -> tuple[str, ...]:
    """The messages of a Response Status segment, 40-character lines joined where 131-UG is +."""
    out: list[str] = []
    glue = False
    for code, raw in status.fields:
        if code == "FQ":
            if glue and out:
                out[-1] += raw
            else:
                out.append(raw)
            glue = False
        elif code == "UG":
            glue = raw.strip() == "+"
    return tuple(m.strip() for m in out)


def judge(scenario: demo_claims.Scenario, route: str, answer: bytes) -> ClaimResult:
    status, rejects, lines = read_answer(answer)
    expected = status == scenario.expect_status and set(rejects) == set(scenario.expect_rejects)
    return ClaimResult(scenario.name, scenario.what, route, status, rejects, lines, expected)


def route_of(data: bytes) -> str:
    header = ncpdp.peek_header(data)
    key = f"{header.bin}/{header.pcn.strip()}"  # type: ignore[union-attr]
    return {
        demo_claims.CASH_ROUTE: "cash",
        demo_claims.INSURED_ROUTE: "insured",
        demo_claims.CERTIFICATION_ROUTE: "certification",
    }.get(key, "unrouted")


# --- the run -----------------------------------------------------------------------------


def run(
    folder: Path, *, profile: str = "KY", package: str = "", step: Step = lambda _msg: None
) -> DemoResult:
    """Run the whole demo in ``folder``; ``step`` hears about progress as it happens."""
    from extract.sftp_server import LoopbackSftpServer

    started = time.perf_counter()
    folder = prepare(folder)
    db_url = f"sqlite:///{folder / DB_FILE}"
    step(f"demo folder {folder} (clean: any earlier demo run there was removed)")

    from cashcapture.core.store import upgrade

    upgrade(db_url)
    _register(db_url)
    step(f"SQLite store {folder / DB_FILE}: schema created, 4 pharmacies registered")

    sftp = LoopbackSftpServer(folder / COLLECTOR_DIR, folder / "keys")
    try:
        info = sftp.start()
        step(f"collector SFTP server on 127.0.0.1:{info.port}, host key pinned ({_short(info)})")
        secret = _collector_key(folder, step) if package == "pgp" else None
        result, settings = asyncio.run(_claims(folder, db_url, info.toml(), profile, package, step))
        _extract_and_submit(db_url, settings, result, step)
    finally:
        sftp.stop()
    _check_collector(result, settings, secret, step)
    _count_fills(db_url, result)
    result.seconds = time.perf_counter() - started
    return result


def _short(info) -> str:
    kind, _, body = info.host_key.partition(" ")
    return f"{kind} ...{body[-12:]}"


def _register(db_url: str) -> None:
    from cashcapture.core.pharmacies import import_csv
    from cashcapture.core.store import make_engine, session_factory

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            import_csv(session, demo_claims.PHARMACIES_CSV)
            session.commit()
    finally:
        engine.dispose()


async def _claims(
    folder: Path, db_url: str, sftp_section: str, profile: str, package: str, step: Step
):
    """Write the config, run adapter and payer, send the claims: (DemoResult, extract settings).

    The claims are dated today in the extract's time zone, the day it will extract.
    """
    from cashcapture.adapter import config
    from cashcapture.adapter.server import AdapterServer, schedule_factory
    from extract.settings import load as load_settings

    payer = SimulatedPayer()
    payer_port = await payer.start()
    server: AdapterServer | None = None
    try:
        step(f"simulated insured payer {demo_claims.INSURED_ROUTE} on 127.0.0.1:{payer_port}")
        path = folder / CONFIG_TOML
        path.write_text(config_toml(db_url, payer_port, sftp_section, profile, package))
        cfg = config.load(path)
        settings = load_settings(path)
        day = dt.datetime.now(settings.extract.zone()).date()
        result = DemoResult(folder=folder, day=day)
        server = AdapterServer(cfg, schedule_factory(cfg))
        await server.start()
        result.adapter_port = server.ports[0]
        step(
            f"adapter listening on 127.0.0.1:{result.adapter_port} "
            f"(cash {demo_claims.CASH_ROUTE}, certification {demo_claims.CERTIFICATION_ROUTE})"
        )
        messages = demo_claims.messages(day)
        answers = await send_all(result.adapter_port, list(messages.values()))
        for scenario, answer in zip(demo_claims.SCENARIOS, answers, strict=True):
            data = messages[scenario.name]
            result.claims.append(judge(scenario, route_of(data), answer))
        step(f"{len(answers)} claims sent over TCP and answered")
        forwarded = [m for m in messages.values() if route_of(m) == "insured"]
        result.payer_requests = len(payer.received)
        result.payer_unchanged = payer.received == forwarded
    finally:
        if server is not None:
            await server.shutdown()
        await payer.close()
    step("adapter stopped (claims in flight finished, store committed)")
    return result, settings


def _extract_and_submit(db_url: str, settings, result: DemoResult, step: Step) -> None:
    from cashcapture.core.store import make_engine, session_factory
    from extract import reports
    from extract.daily import extract
    from extract.runlock import run_lock
    from extract.submit import submit

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        with run_lock(engine, settings.extract.lock_file or None):
            extracted = extract(sessions, settings, result.day)
            result.files_written = [f.name for f in extracted.files]
            result.zero_report_files = {f.name for f in extracted.files if f.zero_report}
            result.extract_problems = list(extracted.problems) + [
                f"{f.name}: {e}" for f in extracted.failed for e in f.errors
            ]
            step(
                f"extract {result.day}: {len(extracted.files)} files written "
                f"({extracted.records} records, {len(result.zero_report_files)} zero reports), "
                f"{extracted.rejected} records held back"
            )
            submitted = submit(sessions, settings)
            result.not_delivered = dict(submitted.failed)
            step(
                f"submit: {len(submitted.uploaded) + len(submitted.recovered)} files delivered "
                f"by SFTP, {len(submitted.failed)} not sent"
            )
        with sessions() as s:
            held = reports.rejects(s, settings.extract.zone())
        result.held_back = [(row[2], row[4], row[5]) for row in held.rows]
    finally:
        engine.dispose()


def _collector_key(folder: Path, step: Step) -> str:
    """The collector's OpenPGP pair: public key for the config, secret key written
    (0600) so anyone can decrypt what was delivered with `gpg --decrypt`."""
    from extract.packaging import generate_key_pair

    public, secret = generate_key_pair("cashcapture demo collector <collector@demo.invalid>")
    keys = folder / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    (keys / "collector-pgp-public.asc").write_text(public)
    fd = os.open(keys / "collector-pgp-secret.asc", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    step(f"collector OpenPGP key pair made; secret key {keys / 'collector-pgp-secret.asc'}")
    return secret


def _check_collector(result: DemoResult, settings, secret: str | None, step: Step) -> None:
    """Open what the collector received (unzip, decrypt with its secret key) and validate
    it, as `cashcapture validate` would: each file by the rules of its TH01 version
    under the state's profile."""
    from cashcapture.core import drugs, profiles
    from cashcapture.core.pmp.asap.codec import file_version
    from cashcapture.core.pmp.validate import Validator
    from extract.packaging import unpack

    state = settings.extract.report_state
    drug_list = drugs.load(state)
    for path in sorted((result.folder / COLLECTOR_DIR).iterdir()):
        _, data = unpack(path.name, path.read_bytes(), secret)
        rules = profiles.for_file(state, file_version(data)).rules(state)
        report = Validator(rules, drug_list, today=result.day).validate(data)
        result.delivered.append(
            DeliveredFile(
                path.name,
                path,
                report.records,
                report.status,
                report.exit_code,
                len(report.warnings),
            )
        )
    accepted = sum(1 for f in result.delivered if f.exit_code == 0)
    step(
        f"collector folder: {len(result.delivered)} files ({settings.package()}), {accepted} "
        f"pass the {state} validator (profile {settings.extract.profile}, "
        f"ASAP {settings.extract.version})"
    )


def _count_fills(db_url: str, result: DemoResult) -> None:
    from sqlalchemy import func, select

    from cashcapture.core.store import Claim, Fill, make_engine, session_factory

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            by = (Fill.route, Fill.state)
            rows = s.execute(select(*by, func.count()).group_by(*by))
            result.fills = Counter({(r, st): n for r, st, n in rows})
            waiting = select(func.count()).select_from(Fill).where(Fill.unclassified.is_(True))
            result.unclassified = s.scalar(waiting) or 0
            cert_claims = select(Claim.id).where(Claim.route == "certification")
            result.certification_fills = (
                s.scalar(
                    select(func.count())
                    .select_from(Fill)
                    .where(
                        (Fill.created_by_claim_id.in_(cert_claims))
                        | (Fill.updated_by_claim_id.in_(cert_claims))
                    )
                )
                or 0
            )
    finally:
        engine.dispose()


# --- the report -----------------------------------------------------------------------------

_STATUS_NAMES = {"P": "paid", "D": "duplicate", "A": "approved", "S": "duplicate of approved",
                 "R": "rejected", "C": "captured"}  # fmt: skip


def _open_hint(result: DemoResult) -> str:
    """How a person opens what the collector got, by its packing."""
    folder = result.folder / COLLECTOR_DIR
    names = [f.name for f in result.delivered]
    if any(n.endswith(".pgp") for n in names):
        secret = result.folder / "keys" / "collector-pgp-secret.asc"
        return (
            f"  gpg --import {secret}    (the collector's secret key)\n"
            f"  gpg --decrypt {folder}/{names[0]} > {names[0].removesuffix('.pgp')}\n"
        )
    if any(n.endswith(".zip") for n in names):
        return f"  unzip {folder}/{names[0]}\n"
    return f"  cashcapture validate {folder}/*.dat\n"


def render(result: DemoResult, console) -> None:
    """The demo's report on a rich console: claims, fills, files, rejects, where things are."""
    from rich.table import Table

    from extract.packaging import plain_name

    folder = result.folder
    claims = Table(title=f"Claims sent to the adapter on 127.0.0.1:{result.adapter_port}")
    for col in ("claim", "route", "answer", "rejects", "as expected"):
        claims.add_column(col)
    for c in result.claims:
        claims.add_row(
            c.name,
            c.route,
            _STATUS_NAMES.get(c.status, c.status),
            " ".join(c.rejects) or "-",
            "yes" if c.expected else "[bold red]NO[/]",
        )
    console.print(claims)
    outcomes = ", ".join(
        f"{n} {_STATUS_NAMES.get(s, s)}" for s, n in sorted(result.outcomes.items())
    )
    console.print(f"Claims by outcome: {outcomes}")
    fills = ", ".join(f"{n} {route} {state}" for (route, state), n in sorted(result.fills.items()))
    console.print(
        f"Fills captured: {sum(result.fills.values())} ({fills}); "
        f"certification claims captured: {result.certification_fills}"
    )
    if result.unclassified:
        console.print(
            f"Waiting for a newer drug directory: {result.unclassified} fill(s) captured for "
            "an NDC it does not hold, reported once classified (drugs unknown, drugs import)"
        )
    console.print(
        f"Insured payer: {result.payer_requests} claims forwarded, "
        + ("bytes unchanged" if result.payer_unchanged else "[bold red]BYTES CHANGED[/]")
    )
    console.print(
        f"Files written: {len(result.files_written)} "
        f"({len(result.zero_report_files)} zero reports); "
        f"delivered to the collector: {len(result.delivered)}"
        + (f"; NOT delivered: {len(result.not_delivered)}" if result.not_delivered else "")
    )
    for f in result.delivered:
        verdict = "passes the validator" if f.exit_code == 0 else "[bold red]FAILS[/]"
        warn = f", {f.warnings} warnings" if f.warnings else ""
        zero = plain_name(f.name) in result.zero_report_files
        what = "zero report" if zero else f"{f.records} records"
        console.print(f"  {f.name}: {what}, {f.status}{warn}, {verdict}")
    for problem in result.extract_problems:
        console.print(f"  [bold red]not extracted[/]: {problem}")
    rejected = [c for c in result.claims if c.status == "R"]
    console.print(f"Rejected at the counter: {len(rejected)}")
    for c in rejected:
        lines = "; ".join(c.messages) or "-"
        console.print(f"  {c.name}: {' '.join(c.rejects)} ({lines})")
    console.print(f"Held back by the state's rules for correction: {len(result.held_back)}")
    for rx, ndc, reason in result.held_back:
        console.print(f"  Rx {rx} NDC {ndc}: {reason}")
    db = f"sqlite:///{folder / DB_FILE}"
    console.print(
        f"\nEverything is in {folder}:\n"
        f"  database      {folder / DB_FILE}\n"
        f"  config        {folder / CONFIG_TOML}  (adapter and extract, one file)\n"
        f"  written files {folder / 'outbox'}\n"
        f"  collector     {folder / COLLECTOR_DIR}  (what the state received)\n"
        "Try:\n"
        + _open_hint(result)
        + f"  cashcapture validate {folder / 'outbox'}/*.dat  (the plain files as written)\n"
        f"  cashcapture status --db {db} --config {folder / CONFIG_TOML}\n"
        f"  cashcapture rejects --db {db} --config {folder / CONFIG_TOML}\n"
        f"  cashcapture fills --db {db}\n"
        f"  cashcapture drugs unknown --db {db}\n"
        "  cashcapture certify fixtures/demo/*.dat"
    )
    verdict = "[bold green]demo OK[/]" if result.ok else "[bold red]demo found a problem[/]"
    console.print(f"{verdict} in {result.seconds:.1f} s")
