"""Command line of cashcapture: wires the parts together, holds no logic.

Every command lives in the section of the part it drives. Errors the user can
fix end as one line on stderr and exit status 2 (see `main`).
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import click


class UserError(click.ClickException):
    """Bad input from the command line or a file: one line, exit status 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cashcapture")
def cli() -> None:
    """Cash-capture NCPDP D.0 adapter and ASAP PMP extractor."""


def _read_claim(name: str) -> bytes:
    """A claim file: raw D.0 bytes, or JSON in the codec's contract (built to bytes).

    Shared by `send` (issue 5) and `certify` (issue 8).
    """
    import json

    import ncpdp

    data = _read_input(name)
    if data.lstrip()[:1] != b"{":
        return data
    try:
        return ncpdp.build(ncpdp.from_json(json.loads(data)))
    except (ValueError, ncpdp.BuildError) as exc:
        raise UserError(f"{name}: not a message in the JSON contract: {exc}") from None


# --- ncpdp codec (issue 3) --------------------------------------------------


def _read_input(source: str) -> bytes:
    """Bytes of FILE, or of stdin for "-"."""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror}") from None


def _read_text(name: str) -> str:
    try:
        with open(name, encoding="utf-8-sig", newline="") as f:
            return f.read()
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text") from None


@cli.command()
@click.argument("source", metavar="FILE|-")
@click.option("--names", is_flag=True, help="Readable table with field names instead of JSON.")
def decode(source: str, names: bool) -> None:
    """Decode one NCPDP D.0 message (raw bytes, no framing) to JSON."""
    import ncpdp
    from ncpdp.render import names_table

    try:
        msg = ncpdp.parse(_read_input(source))
    except ncpdp.ParseError as exc:
        raise UserError(f"{source}: not a D.0 message: {exc}") from None
    if names:
        click.echo(names_table(msg))
    else:
        click.echo(ncpdp.jsonio.dumps(msg))


@cli.command()
@click.argument("source", metavar="FILE|-")
def encode(source: str) -> None:
    """Build the D.0 bytes of a message from the JSON `decode` prints; bytes to stdout."""
    import json

    import ncpdp

    try:
        data = ncpdp.build(ncpdp.from_json(json.loads(_read_input(source))))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: not JSON: {exc}") from None
    except ncpdp.BuildError as exc:
        raise UserError(f"{source}: cannot encode: {exc}") from None
    out: BinaryIO = sys.stdout.buffer
    out.write(data)
    out.flush()


# --- store, drugs, pharmacies (issue 4) -------------------------------------

db_option = click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="Database URL (default: $CASHCAPTURE_DB, then [adapter] db of --config where the "
    "command takes one, then sqlite:///cashcapture.db).",
)
"""`--db URL`, the one database option of every command."""

_config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config ([extract] and [sftp] sections).",
)


def _safe_url(db: str | None) -> str:
    from sqlalchemy.engine import make_url

    from cashcapture.core.store import resolve_url

    return make_url(resolve_url(db)).render_as_string(hide_password=True)


@cli.group("db")
def db_group() -> None:
    """The capture store."""


@db_group.command("upgrade")
@db_option
def db_upgrade(db: str | None) -> None:
    """Create or migrate the database to the latest schema (safe to re-run)."""
    from cashcapture.core.store import upgrade

    try:
        upgrade(db)
    except OSError as exc:  # database errors: `main` names their cause
        raise UserError(f"cannot upgrade {_safe_url(db)}: {exc.strerror or exc}") from None
    click.echo(f"database {_safe_url(db)} is at the latest schema")


@cli.group("drugs")
def drugs_group() -> None:
    """The drug directory: every NDC controlled, not controlled, or unknown."""


def drugs_max_shrink_percent() -> float:
    from cashcapture.core.drugs import MAX_SHRINK

    return MAX_SHRINK * 100


@drugs_group.command("import")
@click.argument("product", type=click.Path(exists=True, dir_okay=False))
@click.argument("package", type=click.Path(exists=True, dir_okay=False))
@click.argument("more", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the directory (default: [adapter] drug_list of --config, else the "
    "shipped one of this installation).",
)
@click.option(
    "--max-shrink",
    type=click.FloatRange(0, 100),
    default=drugs_max_shrink_percent(),
    show_default=True,
    help="Refuse a directory with this many percent fewer (controlled) NDCs than the current.",
)
@click.option("--force", is_flag=True, help="Accept a directory that would shrink or is empty.")
@db_option
@_config_option
def drugs_import(
    product: str,
    package: str,
    more: tuple[str, ...],
    out: str | None,
    max_shrink: float,
    force: bool,
    db: str | None,
    config: str | None,
) -> None:
    """Rebuild the directory from the FDA NDC Directory's product.txt and package.txt
    (then any further product/package pairs, such as unfinished_product.txt and
    unfinished_package.txt: the bulk ingredients compounds are made of), then classify
    the store's unclassified fills by it.

    A file that would drop more than --max-shrink percent of the NDCs or of the
    controlled NDCs, or that holds no controlled product, is refused (one line, exit
    2) and the directory left as it was. Fills now controlled join the report queue
    (late at once if past their deadline); fills now known not controlled are
    removed. Send `serve` SIGHUP to have the counter read the new directory."""
    from pathlib import Path

    from cashcapture.core import drugs

    if len(more) % 2:
        raise UserError(f"drugs import: {more[-1]} has no package file to go with it")
    pairs = [(Path(a), Path(b)) for a, b in zip(more[::2], more[1::2], strict=True)]
    settings = _extract_settings(config, read_directory=False)  # this command rewrites it
    store = _store_if_any(db, settings)  # a store named but missing: refused before writing
    try:
        built = drugs.build(Path(product), Path(package), more=pairs)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    in_use = Path(settings.drug_list) if settings.drug_list else drugs.shipped_list_path()
    path = Path(out) if out else in_use
    if not force:
        try:
            old = drugs.read_list(drugs.read_text(path), name=path.name) if path.is_file() else []
            drugs.check_replacement(old, built, max_shrink / 100)
        except drugs.DirectoryError as exc:
            raise UserError(f"drugs import: the directory in place: {exc} (--force)") from None
        except drugs.ListRefused as exc:
            raise UserError(f"drugs import: {exc}") from None
    try:
        count = drugs.write_list(built, path)
    except OSError as exc:
        raise UserError(f"drugs import: cannot write {path}: {exc.strerror}") from None
    states = sorted({d.state for d in built if d.state})
    controlled = len({d.ndc11 for d in built if d.controlled})
    click.echo(
        f"{count} NDCs written to {path}, {controlled} controlled "
        f"(state additions: {', '.join(states) or 'none'})"
    )
    if store is None:
        click.echo("no store: no unclassified fills to classify")
        return
    try:
        if path.resolve() == in_use.resolve():
            _reclassify(store, settings, always=True)
        else:
            click.echo(
                f"{path} is not the directory in use ({in_use}; [adapter] drug_list): "
                "no fills classified by it"
            )
    finally:
        store.kw["bind"].dispose()


def _store_if_any(db: str | None, settings):
    """The sessions of the store a command may touch, or None when its SQLite file is not
    there (a fresh install) - unless --db named that file."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from cashcapture.core.configfile import database_url
    from cashcapture.core.store import session_factory
    from cashcapture.core.store.engine import beside_database

    url = database_url(db, settings.db)
    if not db and beside_database(url, "") is not None:
        if not Path(make_url(url).database or "").is_file():
            return None
    return session_factory(_open_store(url))


def _reclassify(sessions, settings, *, always: bool) -> None:
    """Classify the unclassified fills by the directory in use and say what changed (ids
    and counts only): always, or only when something did."""
    import datetime as dt

    from cashcapture.core.store.classify import reclassify
    from extract.submit import writing

    with writing(sessions) as s:
        done = reclassify(s, settings.directory)
    if not (always or done.changed):
        return
    today = dt.datetime.now(settings.extract.zone()).date()
    late = sum(1 for _, filled in done.reportable if settings.extract.deadline(filled) < today)
    past = f", {late} past their reporting deadline" if late else ""
    click.echo(
        f"unclassified fills: {len(done.reportable)} now controlled and queued for the "
        f"PMP{past}; {done.not_controlled} not controlled (removed, or voided where a state "
        "holds them); "
        f"{done.still_unknown} still unknown (cashcapture drugs unknown)"
    )


@drugs_group.command("unknown")
@db_option
@_config_option
def drugs_unknown(db: str | None, config: str | None) -> int:
    """NDCs captured and not in the drug directory (each pharmacy's state's view): fills,
    pharmacies, first and last filled, no patient data. Exit 1 when there are any: newer
    FDA files are needed (`drugs import`)."""
    from cashcapture.core.store.classify import unknown_ndcs

    engine, sessions, settings = _extract_env(db, config)
    try:
        with sessions() as s:
            found = unknown_ndcs(s, settings.directory)
    finally:
        engine.dispose()
    if found:
        click.echo("ndc          fills  pharmacies  first_filled  last_filled")
    for u in found:
        click.echo(
            f"{u.ndc}  {u.fills:>5}  {u.pharmacies:>10}  {u.first_filled}    {u.last_filled}"
        )
    click.echo(f"{len(found)} NDC(s) unknown to the drug directory")
    return 1 if found else 0


@drugs_group.command("show")
@click.argument("ndc")
@click.option("--state", default="KY", show_default=True, help="State whose additions apply.")
@_config_option
def drugs_show(ndc: str, state: str, config: str | None) -> int:
    """Print schedule and product of an NDC (10/11 digits, dashes optional). Exit 0
    controlled, 1 listed and not controlled, 3 not in the directory (unknown)."""
    from cashcapture.core import drugs

    try:
        candidates = drugs.ndc_candidates(ndc)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    directory = _extract_settings(config).directory(state.upper())
    drug = directory.lookup(ndc)
    if drug is not None:
        where = f"{drug.state} addition" if drug.state else "federal"
        click.echo(f"{drug.ndc11}  schedule {drug.schedule} ({where})  {drug.product}")
        return 0
    if directory.knows(ndc):
        click.echo(f"{' or '.join(candidates)}: in the directory, not controlled in {state}")
        return 1
    click.echo(
        f"{' or '.join(candidates)}: not in the drug directory (unknown: a claim for it is "
        "captured unclassified)"
    )
    return 3


def _open_store(url: str | None):
    """An engine on an existing database: a SQLite file that is not there is a one-line
    error, never an empty file made by a command that only meant to read."""
    from sqlalchemy.engine import make_url

    from cashcapture.core.store import make_engine, resolve_url
    from cashcapture.core.store.engine import beside_database

    url = resolve_url(url)
    if beside_database(url, "") is not None:
        path = make_url(url).database or ""
        from pathlib import Path

        if not Path(path).is_file():
            raise UserError(f"no database at {path}: run `cashcapture db upgrade` first")
    return make_engine(url)


def _registry(db: str | None):
    """A session on the registry; a database not yet created is a one-line error."""
    from sqlalchemy import inspect

    from cashcapture.core.store import session_factory

    engine = _open_store(db)
    try:
        ready = inspect(engine).has_table("pharmacies")
    except Exception:
        engine.dispose()
        raise
    if not ready:
        engine.dispose()
        raise UserError(f"{_safe_url(db)} has no tables: run `cashcapture db upgrade` first")
    return engine, session_factory(engine)


def _pharmacy_options(func=None, *, required: bool = True):
    """One option per registry column; `required=False` for `update` (none required)."""
    from cashcapture.core.pharmacies import COLUMNS

    def decorate(func):
        for column in reversed(COLUMNS):
            flag = "--" + column.name.replace("_", "-")
            func = click.option(
                flag, column.name, required=required and column.required, help=column.what
            )(func)
        return func

    return decorate(func) if func is not None else decorate


@cli.group("pharmacy")
def pharmacy_group() -> None:
    """The pharmacy registry (DEA required: the state's pharmacy ID)."""


@pharmacy_group.command("add")
@_pharmacy_options
@db_option
def pharmacy_add(db: str | None, **values: str | None) -> None:
    """Register one pharmacy; DEA and NPI check digits are verified."""
    from cashcapture.core.pharmacies import RegistryError, add_pharmacies, clean_row

    try:
        fields = clean_row({k: v for k, v in values.items() if v is not None})
    except RegistryError as exc:
        flag = (exc.column or "").replace("_", "-")
        raise UserError(f"--{flag}: {exc.detail}" if exc.column else str(exc)) from None
    engine, sessions = _registry(db)
    try:
        with sessions() as session:
            (pharmacy,) = add_pharmacies(session, [fields])
            session.commit()
            click.echo(f"pharmacy {pharmacy.id} {pharmacy.dea} {pharmacy.name} registered")
    except RegistryError as exc:
        raise UserError(str(exc).removeprefix("row 1: ")) from None
    finally:
        engine.dispose()


@pharmacy_group.command("import")
@click.argument("csv_file", metavar="CSV", type=click.Path(dir_okay=False))
@db_option
def pharmacy_import(csv_file: str, db: str | None) -> None:
    """Add new rows of a CSV, update changed ones (listed), all or none; safe to re-run."""
    from cashcapture.core.pharmacies import RegistryError, import_csv

    text = _read_text(csv_file)
    engine, sessions = _registry(db)
    try:
        with sessions() as session:
            done = import_csv(session, text)
            session.commit()
    except RegistryError as exc:
        raise UserError(f"{csv_file}: {exc}; nothing imported") from None
    finally:
        engine.dispose()
    for pharmacy, columns in done.updated:
        click.echo(f"updated     {pharmacy.dea} {pharmacy.name}: {', '.join(columns)}")
    click.echo(
        f"{csv_file}: {len(done.added)} added, {len(done.updated)} updated, "
        f"{len(done.unchanged)} unchanged"
    )


@pharmacy_group.command("update")
@click.argument("which", metavar="DEA")
@_pharmacy_options(required=False)
@db_option
def pharmacy_update(which: str, db: str | None, **values: str | None) -> None:
    """Change columns of a registered pharmacy (an empty value clears an optional one)."""
    from cashcapture.core.pharmacies import update_pharmacy

    engine, sessions = _registry(db)
    try:
        with sessions() as session:
            changes = {k: v for k, v in values.items() if v is not None}
            pharmacy, changed = update_pharmacy(session, which, changes)
            session.commit()
    finally:
        engine.dispose()
    what = ", ".join(changed) if changed else "nothing changed"
    click.echo(f"pharmacy {pharmacy.dea} {pharmacy.name}: {what}")


@pharmacy_group.command("register")
@click.argument("dea")
@click.option("--state", required=True, help="The other state whose PMP the pharmacy reports to.")
@click.option("--submitter-id", default=None, help="The submitter ID that state issued.")
@click.option("--reg-key", default=None, help="The RegKey that state issued.")
@db_option
def pharmacy_register(dea: str, state: str, submitter_id, reg_key, db: str | None) -> None:
    """Register a pharmacy with another state's PMP: its mail-order fills to that
    state's residents are reported there too (its home state gets every fill)."""
    from cashcapture.core.pharmacies import register

    engine, sessions = _registry(db)
    try:
        with sessions() as session:
            pharmacy, created = register(session, dea, state.upper(), submitter_id, reg_key)
            session.commit()
    finally:
        engine.dispose()
    what = "registered with" if created else "registration changed for"
    click.echo(f"pharmacy {pharmacy.dea} {pharmacy.name} {what} the {state.upper()} PMP")


@pharmacy_group.command("deactivate")
@click.argument("dea")
@db_option
def pharmacy_deactivate(dea: str, db: str | None) -> None:
    """Stop zero reports for a pharmacy; fills already queued are still sent."""
    from cashcapture.core.pharmacies import deactivate

    engine, sessions = _registry(db)
    try:
        with sessions() as session:
            pharmacy, was_active = deactivate(session, dea)
            session.commit()
    finally:
        engine.dispose()
    state = "deactivated" if was_active else "was already inactive"
    click.echo(f"pharmacy {pharmacy.dea} {pharmacy.name} {state}")


@pharmacy_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@db_option
def pharmacy_list(as_json: bool, db: str | None) -> None:
    """List registered pharmacies."""
    import json

    from cashcapture.core.pharmacies import COLUMN_NAMES, list_pharmacies

    engine, sessions = _registry(db)
    with sessions() as session:
        rows = [
            {"id": p.id, **{name: getattr(p, name) for name in COLUMN_NAMES}}
            for p in list_pharmacies(session)
        ]
    engine.dispose()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        group = r["submitter_id"] or "-"
        state = "active" if r["active"] else "inactive"
        click.echo(
            f"{r['id']:>4}  {r['dea']}  {r['ncpdp_id'] or '-':<7}  {r['npi'] or '-':<10}  "
            f"{group:<12} {state:<8}  {r['name']}, {r['city'] or ''} {r['state']}"
        )


# --- adapter: serve, send, fills (issue 5) ----------------------------------


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML settings.")
@db_option
@click.option("--host", default=None, help="Host of the first listener.")
@click.option("--port", type=int, default=None, help="Port of the first listener.")
@click.option("--cash-bin", "cash_bins", multiple=True, metavar="BIN[/PCN]", help="Cash BIN.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes.")
def serve(config_path, db, host, port, cash_bins, workers) -> None:
    """Run the cash-capture adapter (NCPDP D.0 over TCP) until SIGTERM."""
    import os

    from cashcapture.adapter import config, logs, server
    from cashcapture.core.store import ENV_VAR

    try:
        cfg = config.load(config_path)
        cfg = config.override(
            cfg,
            db=db or os.environ.get(ENV_VAR),
            host=host,
            port=port,
            cash_bins=cash_bins,
            workers=workers,
        )
    except config.ConfigError as exc:
        raise UserError(str(exc)) from None
    logs.setup(cfg.log_level, sys.stdout)
    try:
        server.serve(cfg)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot serve: {exc}") from None


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option(
    "--framing",
    "framing_name",
    default="stx",
    show_default=True,
    type=click.Choice(["stx", "len2", "etx"]),
)
@click.option("--json", "as_json", is_flag=True, help="Responses as JSON (codec contract).")
@click.option("--timeout", type=float, default=15.0, show_default=True)
def send(files, host, port, framing_name, as_json, timeout) -> None:
    """Send claims (raw D.0 files, or JSON in the codec's contract) and print the answers."""
    from cashcapture.adapter.client import Client, ClientError

    messages = [(name, _read_claim(name)) for name in files]
    try:
        client = Client(host, port, framing_name, timeout=timeout)
    except OSError as exc:
        raise UserError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    with client:
        for name, data in messages:
            try:
                answer = client.exchange(data)
            except (OSError, ClientError) as exc:
                raise UserError(f"{name}: {exc}") from None
            if answer is None:
                raise UserError(f"{name}: the server closed the connection without an answer")
            _print_answer(name, answer, as_json)


def _print_answer(name: str, answer: bytes, as_json: bool) -> None:
    import json

    import ncpdp

    try:
        msg = ncpdp.parse(answer)
    except ncpdp.ParseError as exc:
        raise UserError(f"{name}: unreadable answer: {exc}") from None
    if as_json:
        click.echo(json.dumps(ncpdp.to_json(msg)))
        return
    h = msg.header
    status = getattr(h, "header_response_status", "?")  # a request sent back has none
    click.echo(f"{name}: {h.transaction_code} header status {status}")
    for i, txn in enumerate(msg.transactions, 1):
        st = ncpdp.find(txn, "21")
        if st is None:
            continue
        parts = [f"  transaction {i}: status {st.get('AN')}"]
        if st.get("F3"):
            parts.append(f"authorization {st.get('F3')}")
        if codes := st.get_all("FB"):
            parts.append("rejects " + " ".join(codes))
        pricing = ncpdp.find(txn, "23")
        if pricing is not None and (f5 := pricing.get("F5")):
            parts.append(f"patient pays {ncpdp.typed('F5', f5)}")
        click.echo(", ".join(parts))
        for line in st.get_all("FQ"):
            click.echo(f"    {line}")


@cli.command()
@click.option("--date", "on_date", default=None, metavar="YYYY-MM-DD", help="Date of service.")
@click.option("--pharmacy", default=None, metavar="ID", help="DEA, NPI or NCPDP ID.")
@click.option("--json", "as_json", is_flag=True)
@db_option
def fills(on_date, pharmacy, as_json, db) -> None:
    """List captured fills (keys, drug, state; no patient data)."""
    import datetime as dt
    import json

    from sqlalchemy import select

    from cashcapture.core.store import Fill, find_pharmacy, session_factory

    day = None
    if on_date:
        try:
            day = dt.date.fromisoformat(on_date)
        except ValueError:
            raise UserError(f"--date {on_date!r} is not YYYY-MM-DD") from None
    engine = _open_store(db)
    try:
        with session_factory(engine)() as session:
            stmt = select(Fill).order_by(Fill.date_of_service, Fill.id)
            if day is not None:
                stmt = stmt.where(Fill.date_of_service == day)
            if pharmacy:
                ph = find_pharmacy(session, pharmacy)
                if ph is None:
                    raise UserError(f"no pharmacy with ID {pharmacy}")
                stmt = stmt.where(Fill.pharmacy_id == ph.id)
            rows = [
                {
                    "id": f.id,
                    "pharmacy": f.pharmacy.dea,
                    "rx_number": f.rx_number,
                    "fill_number": f.fill_number,
                    "date_of_service": f.date_of_service.isoformat(),
                    "ndc": f.ndc,
                    "schedule": "unclassified" if f.unclassified else f.schedule,
                    "quantity": str(f.quantity),
                    "days_supply": f.days_supply,
                    "route": f.route,
                    "state": f.state,
                    "reported": f.reported_status,
                }
                for f in session.scalars(stmt)
            ]
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(rows))
        return
    cols = [
        "id",
        "pharmacy",
        "rx_number",
        "fill_number",
        "date_of_service",
        "ndc",
        "schedule",
        "quantity",
        "route",
        "state",
    ]
    click.echo("  ".join(cols))
    for r in rows:
        click.echo("  ".join(str(r[c]) for c in cols))
    click.echo(f"{len(rows)} fill(s)")


# --- ASAP: validate, asap show (issue 6) ------------------------------------


def _drug_list(state: str):
    """The store's drug list for the state, when that part is installed."""
    try:
        from cashcapture.core import drugs
    except ImportError:
        return None
    try:
        return drugs.load(state=state)
    except (FileNotFoundError, KeyError, ValueError):
        return None


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--state", default="KY", show_default=True, help="The state whose PMP gets the file.")
@click.option(
    "--profile",
    default=None,
    help="Judge by this profile (default: the state's profile of the file's TH01 version).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON report instead of text.")
@click.option(
    "--po-box",
    type=click.Choice(["warning", "reject", "off"]),
    default=None,
    help="PO Box in PAT12: the state's table default (KY: warning).",
)
@click.option("--no-drug-list", is_flag=True, help="Do not check NDCs against the drug list.")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), help="Clock for date rules.")
def validate_cmd(files, state, profile, as_json, po_box, no_drug_list, today) -> int:
    """Validate ASAP files with the state's rules: exit 0 accepted, 1 rejects, 2 failed.

    Each file is judged by the ASAP version its TH01 names (4.1, 4.2, 4.2A) under
    the state's profile of that version, or by --profile."""
    import dataclasses
    import datetime as dt
    import json

    from cashcapture.core import profiles
    from cashcapture.core.pmp.asap.codec import file_version
    from cashcapture.core.pmp.rules import code_tables
    from cashcapture.core.pmp.validate import Validator

    state = state.upper()
    if state not in code_tables()[0]:
        raise UserError(f"--state {state}: not a US state or territory code")
    chosen = profiles.load(profile) if profile else None
    if chosen is not None and chosen.state and chosen.state != state:
        state = chosen.state

    def rules_for(data: bytes):  # noqa: ANN202
        rules = (chosen or profiles.for_file(state, file_version(data))).rules(state)
        return dataclasses.replace(rules, po_box=po_box) if po_box else rules

    drug_list = None if no_drug_list else _drug_list(state)
    day = today.date() if today else dt.date.today()
    worst = 0
    out = []
    for name in files:
        try:
            with open(name, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UserError(f"{name}: {exc.strerror or exc}") from None
        report = Validator(rules_for(data), drug_list, today=day).validate(data)
        worst = max(worst, report.exit_code)
        if as_json:
            out.append({"file": name, **report.to_dict()})
        else:
            click.echo(report.to_text(name))
    if as_json:
        click.echo(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return worst


@cli.group("profiles")
def profiles_group() -> None:
    """State profiles: what each PMP collector asks for (version, rules, deadline, delivery)."""


@profiles_group.command("list")
def profiles_list() -> None:
    """One line per shipped profile."""
    from rich.table import Table

    from cashcapture.core import profiles

    table = Table("Profile", "State", "ASAP", "Deadline", "Zero reports", "Package", "About")
    for name in profiles.names():
        p = profiles.load(name)
        table.add_row(
            name,
            p.state or "(any)",
            p.asap_version,
            f"{p.deadline_days} {p.deadline_count} day{'s' if p.deadline_days > 1 else ''}",
            p.zero_reports,
            p.package,
            p.description,
        )
    _console().print(table)


@profiles_group.command("show")
@click.argument("name")
def profiles_show(name) -> None:
    """The profile's file as shipped, with the sources and what is not known."""
    from cashcapture.core import profiles

    click.echo(profiles.text(name), nl=False)


@cli.group("asap")
def asap_group() -> None:
    """ASAP file tools."""


@asap_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
def asap_show(file) -> None:
    """Print a readable view of an ASAP file, every element named."""
    from cashcapture.core.pmp.asap.codec import AsapError
    from cashcapture.core.pmp.asap.show import describe

    try:
        with open(file, "rb") as fh:
            click.echo(describe(fh.read()))
    except OSError as exc:
        raise UserError(f"{file}: {exc.strerror or exc}") from None
    except AsapError as exc:
        raise UserError(f"{file}: {exc}") from None


# --- daily extract, submit, status, recap (issue 7) -------------------------

_DATE = click.DateTime(formats=["%Y-%m-%d"])
_date_option = click.option(
    "--date",
    "date",
    type=_DATE,
    default=None,
    help="Day to extract, YYYY-MM-DD (default: yesterday in the configured time zone).",
)
_workers_option = click.option(
    "--workers", type=click.IntRange(1, 64), default=None, help="Processes building files."
)
_zero_option = click.option(
    "--zero-reports",
    type=click.Choice(["daily", "weekly", "off"]),
    default=None,
    help="Zero report cadence (overrides [extract] zero_reports).",
)


class _Busy(click.ClickException):
    """Another extract/submit run holds the lock: nothing done, try later."""

    exit_code = 75


def _extract_env(db: str | None, config: str | None, read_directory: bool = True, **overrides):
    """(engine, sessions, settings) for the extract commands; config errors -> UserError.

    The database is chosen as `serve` chooses it (`configfile.database_url`).
    """
    from cashcapture.core.configfile import database_url
    from cashcapture.core.store import session_factory

    settings = _extract_settings(config, read_directory, **overrides)
    engine = _open_store(database_url(db, settings.db))
    return engine, session_factory(engine), settings


def _extract_settings(config: str | None, read_directory: bool = True, **overrides):
    """The extract's settings of the config file (defaults without one); errors -> UserError."""
    from extract.settings import SettingsError, check, load

    try:
        settings = check(load(config, read_directory=read_directory).with_overrides(**overrides))
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    if config is not None:  # one file for every part: a bad value anywhere is refused
        from cashcapture.adapter import config as adapter_config

        adapter_config.load(config)
    return settings


class _Locked:
    """The run lock for the block, then the engine disposed; busy -> exit 75."""

    def __init__(self, engine, settings) -> None:
        from extract.runlock import run_lock

        self.engine = engine
        self.lock = run_lock(engine, settings.extract.lock_file or None)

    def __enter__(self) -> None:
        from extract.runlock import AlreadyRunning

        try:
            self.lock.__enter__()
        except AlreadyRunning as exc:
            self.engine.dispose()
            raise _Busy(str(exc)) from None

    def __exit__(self, *exc) -> None:
        try:
            self.lock.__exit__(*exc)
        finally:
            self.engine.dispose()


def _run_extract(sessions, settings, date) -> int:
    """Extract the day for every state this switch reports to ([extract] profile's, then
    [states]); one state's failure is reported and the others still run."""
    from extract.selection import unserved
    from extract.settings import SettingsError

    # fills of NDCs a directory imported since now knows join this run
    _reclassify(sessions, settings, always=False)
    states = settings.state_names()
    worst = 0
    with sessions() as s:
        for dea, home, n in unserved(s, states):
            click.echo(
                f"cashcapture: pharmacy {dea} ({home}): {n} fills queued, no profile reports "
                f"to {home} (add it under [states]); they stay queued",
                err=True,
            )
            worst = 1
    for state in states:
        label = f" {state}" if len(states) > 1 else ""
        try:
            worst = max(worst, _extract_state(sessions, settings.for_state(state), date, label))
        except SettingsError as exc:
            if len(states) == 1:
                raise UserError(str(exc)) from None
            click.echo(f"cashcapture: extract{label} not run: {exc}", err=True)
            worst = 1
    return worst


def _extract_state(sessions, settings, date, label: str) -> int:
    from extract.daily import extract as run_extract
    from extract.reports import progress

    with progress(f"extract{label}") as update:
        result = run_extract(sessions, settings, date.date() if date else None, progress=update)
    for f in result.files:
        kind = "zero report" if f.zero_report else f"records={f.records} held_back={f.held_back}"
        click.echo(f"{f.status:<11} {f.name} pharmacies={f.pharmacies} {kind}")
        for err in f.errors[:5]:
            click.echo(f"    {err}")
    for problem in result.problems:
        click.echo(f"not extracted{label}: {problem}", err=True)
    click.echo(
        f"extract{label} {result.day}: {len(result.files)} files, {result.records} records, "
        f"{result.rejected} held back (see `cashcapture rejects`), {result.dropped} reversed "
        f"before reporting, {len(result.failed)} failed"
    )
    return 1 if result.failed or result.problems or result.rejected else 0


def _run_submit(sessions, settings) -> int:
    from extract.reports import progress
    from extract.settings import SettingsError
    from extract.submit import Refused, pending_ids, submit

    with sessions() as s:
        total = len(pending_ids(s))
    with progress("submit") as update:
        done = [0]

        def step(_name: str) -> None:
            done[0] += 1
            update(done[0], total)

        try:
            result = submit(sessions, settings, progress=step)
        except (SettingsError, Refused) as exc:
            raise UserError(str(exc)) from None
    for name in result.uploaded:
        click.echo(f"uploaded    {name}")
    for name in result.recovered:
        click.echo(f"uploaded    {name} (found on the server after an interrupted run)")
    for name, why in result.failed.items():
        click.echo(f"not sent    {name}: {why}", err=True)
    click.echo(
        f"submit: {len(result.uploaded) + len(result.recovered)} delivered, "
        f"{len(result.failed)} not sent, {result.retries} retries"
    )
    return 0 if result.ok else 1


@cli.command("extract")
@_date_option
@_workers_option
@_zero_option
@db_option
@_config_option
def extract_cmd(date, workers, zero_reports, db, config) -> int:
    """Write the day's ASAP files (one per pharmacy or chain submitter), validated."""
    engine, sessions, settings = _extract_env(
        db, config, extract_workers=workers, extract_zero_reports=zero_reports
    )
    with _Locked(engine, settings):
        return _run_extract(sessions, settings, date)


@cli.command("submit")
@db_option
@_config_option
def submit_cmd(db, config) -> int:
    """Deliver written files by SFTP, exactly once; safe to re-run after any crash."""
    engine, sessions, settings = _extract_env(db, config)
    with _Locked(engine, settings):
        return _run_submit(sessions, settings)


@cli.command("run-daily")
@_date_option
@_workers_option
@_zero_option
@db_option
@_config_option
def run_daily_cmd(date, workers, zero_reports, db, config) -> int:
    """Extract then submit, under one lock: what cron or a systemd timer runs."""
    engine, sessions, settings = _extract_env(
        db, config, extract_workers=workers, extract_zero_reports=zero_reports
    )
    with _Locked(engine, settings):
        extracted = _run_extract(sessions, settings, date)
        submitted = _run_submit(sessions, settings)
        late = _report_late(sessions, settings)
        return max(extracted, submitted, late)


def _report_late(sessions, settings) -> int:
    """After a run: fills past their deadline still not delivered -> one line, exit 1;
    the gauges go to [extract] metrics_file when set."""
    import datetime as dt

    from extract import reports

    today = dt.datetime.now(settings.extract.zone()).date()
    with sessions() as s:
        late = reports.late_everywhere(s, settings, today)
        queued = reports.queued(s) if settings.extract.metrics_file else 0
        waiting = reports.unknown_drugs(s, settings.directory)
    if settings.extract.metrics_file:
        path = settings.base_dir / settings.extract.metrics_file
        try:
            reports.write_metrics(str(path), reports.late_count(late), queued, waiting)
        except OSError as exc:
            click.echo(f"cashcapture: metrics file {path}: {exc.strerror}", err=True)
    if waiting.fills:
        click.echo(f"cashcapture: {waiting.line()}", err=True)
    if late.rows:
        click.echo(f"cashcapture: {reports.late_line(late)}", err=True)
        return 1
    return 0


@cli.command("status")
@click.option("--from", "first", type=_DATE, default=None, help="First day (default: 7 days ago).")
@click.option("--to", "last", type=_DATE, default=None, help="Last day (default: today).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
@db_option
@_config_option
def status_cmd(first, last, as_csv, db, config) -> None:
    """Submission status: dates, file, fill-date range, records, valid records, status."""
    import datetime as dt

    from extract import reports

    engine, sessions, settings = _extract_env(db, config)
    zone = settings.extract.zone()
    last_day = last.date() if last else dt.datetime.now(zone).date()
    first_day = first.date() if first else last_day - dt.timedelta(days=7)
    if first_day > last_day:
        raise UserError("--from is after --to")
    today = dt.datetime.now(zone).date()
    with sessions() as s:
        report = reports.status(s, first_day, last_day, zone)
        unclassified = reports.unclassified_payers(s, first_day, last_day)
        late = reports.late_everywhere(s, settings, today)
        waiting = reports.unknown_drugs(s, settings.directory)
    engine.dispose()
    if as_csv:
        click.echo(reports.to_csv(report), nl=False)
        for bin_, pcn, n, _, _ in unclassified.rows:  # stdout stays one CSV table
            click.echo(f"payment type 99 (other): BIN {bin_} PCN {pcn}: {n} fills", err=True)
        if late.rows:
            click.echo(f"late: {reports.late_line(late)}", err=True)
    else:
        reports.render(report)
        if unclassified.rows:
            reports.render(unclassified)
        if late.rows:
            reports.render(late)
    if waiting.fills:  # after the tables; beside the CSV, on stderr
        click.echo(waiting.line(), err=as_csv)


@cli.command("recap")
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
@db_option
@_config_option
def recap_cmd(month, as_csv, db, config) -> None:
    """Monthly submission recap per pharmacy, with the KASPER report's columns."""
    from extract import reports

    try:
        reports.month_bounds(month)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    engine, sessions, settings = _extract_env(db, config)
    with sessions() as s:
        report = reports.recap(s, month, settings.extract.zone())
    engine.dispose()
    click.echo(reports.to_csv(report), nl=False) if as_csv else reports.render(report)


@cli.command("rejects")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved rejects.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
@click.option("--pharmacy", default=None, help="Only this pharmacy (DEA number).")
@click.option("--date", "day", type=_DATE, default=None, help="Only records held back that day.")
@db_option
@_config_option
def rejects_cmd(include_resolved, as_csv, pharmacy, day, db, config) -> None:
    """Records held back by the validator, waiting for a corrected claim.

    `rejects --pharmacy DEA --date D --csv` is the day's list to send to one pharmacy.
    """
    from extract import reports

    engine, sessions, settings = _extract_env(db, config)
    with sessions() as s:
        report = reports.rejects(
            s,
            settings.extract.zone(),
            include_resolved,
            pharmacy=pharmacy,
            day=day.date() if day else None,
        )
    engine.dispose()
    click.echo(reports.to_csv(report), nl=False) if as_csv else reports.render(report)


# --- the state's collector: its verdicts, a local stand-in (issue 14) -------


@cli.group("collector")
def collector_group() -> None:
    """The state's collector: record what it said of our files; run a local one."""


@collector_group.command("record")
@click.argument("file_name")
@click.option(
    "--status",
    "verdict",
    required=True,
    type=click.Choice(["accepted", "failed"]),
    help="What the collector said of the whole file.",
)
@click.option(
    "--rejects",
    "rejects_csv",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of records it rejected: Rx Number, Fill Date, Reason.",
)
@db_option
@_config_option
def collector_record(file_name, verdict, rejects_csv, db, config) -> None:
    """Record the state's verdict on a delivered file (failed: sent again next run)."""
    from extract import verdicts

    rejects = verdicts.read_rejects(_read_text(rejects_csv)) if rejects_csv else []
    engine, sessions, _settings = _extract_env(db, config)
    try:
        with sessions() as s:
            done = verdicts.record(s, file_name, verdict, rejects)
            s.commit()
    finally:
        engine.dispose()
    what = f"{done.file_name}: state verdict {done.verdict} recorded"
    if done.requeued:
        what += f"; {done.requeued} records queued to be sent again"
    if done.rejects:
        what += f"; {done.rejects} records rejected by the state (see `cashcapture rejects`)"
    click.echo(what if done.changed else f"{done.file_name}: already recorded as {done.verdict}")


@collector_group.command("import")
@click.argument("report_csv", metavar="FILE", type=click.Path(dir_okay=False))
@db_option
@_config_option
def collector_import(report_csv, db, config) -> None:
    """Record a file status report (README: the CSV layout), all rows or none."""
    from extract import verdicts

    lines = verdicts.read_status(_read_text(report_csv))
    engine, sessions, _settings = _extract_env(db, config)
    try:
        with sessions() as s:
            done = verdicts.import_status(s, lines)
            s.commit()
    finally:
        engine.dispose()
    for d in done:
        c = d.counts
        click.echo(
            f"{d.file_name}: state verdict {d.verdict} ({c['imported']} of {c['total']} "
            f"imported, {c['errors']} errors, {c['in_process']} in process)"
        )


@collector_group.command("serve")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=2222, show_default=True)
def collector_serve(folder, host, port) -> None:
    """Run a local SFTP collector on DIR/inbox (keys in DIR/keys) until Ctrl-C or SIGTERM.

    Prints the [sftp] section to paste into the config, then serves.
    """
    import signal
    import threading
    from pathlib import Path

    from extract.sftp_server import LoopbackSftpServer

    root = Path(folder)
    server = LoopbackSftpServer(root / "inbox", root / "keys", host=host, port=port)
    try:
        info = server.start()
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"# files arrive in {info.root}; paste this into your config:")
    click.echo(info.toml(), nl=False)
    sys.stdout.flush()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# --- demo, certify (issue 8) ------------------------------------------------


def _console():
    """A rich console on stdout; wide when piped, so paths and file names stay on one line."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


@cli.command("demo")
@click.option(
    "--dir",
    "folder",
    default="demo-run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the database, configs, files and collector (emptied on each run).",
)
@click.option(
    "--profile",
    default="KY",
    show_default=True,
    help="The state profile the files are made for (KY: ASAP 4.2; KY-2011: ASAP 4.1).",
)
@click.option(
    "--package",
    type=click.Choice(["none", "zip", "pgp"]),
    default=None,
    help="How files travel (default: the profile's); pgp makes a collector key pair.",
)
def demo_cmd(folder: str, profile: str, package: str | None) -> int:
    """Run the whole pipeline on loopback: adapter, payer, claims, extract, SFTP, report."""
    from pathlib import Path

    from sqlalchemy.exc import SQLAlchemyError

    from cashcapture.app import demo
    from cashcapture.core import profiles

    profiles.load(profile)  # a wrong name: one line before anything starts
    console = _console()
    try:
        with console.status("starting") as status:

            def step(message: str) -> None:
                console.print(f"[green]✓[/] {message}")
                status.update("working")

            result = demo.run(Path(folder), profile=profile, package=package or "", step=step)
    except demo.DemoError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"demo: {exc.strerror or exc}") from None
    except (ValueError, RuntimeError, SQLAlchemyError) as exc:  # a part failed to start or run
        raise UserError(f"demo failed: {type(exc).__name__}: {exc}") from None
    demo.render(result, console)
    return 0 if result.ok else 1


@cli.command("certify")
@click.argument("claims", nargs=-1, required=True, metavar="CLAIM...")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), help="Also write one HTML file."
)
@click.option("--json", "as_json", is_flag=True, help="JSON findings, not the terminal report.")
@click.option("--state", default="KY", show_default=True, help="State whose drug list applies.")
@click.option("--insured", is_flag=True, help="Records as insured (DSP16 04), not cash (01).")
@click.option(
    "--show-patient",
    is_flag=True,
    help="Show patient names, birth dates, addresses and IDs in the HTML file.",
)
def certify_cmd(claims, html_file, as_json, state, insured, show_patient) -> int:
    """Offline certification of raw D.0 claims (or JSON): exit 0 all ready for the PMP, 1 not."""
    import datetime as dt

    from cashcapture.adapter.config import Config
    from cashcapture.adapter.server import schedule_factory
    from cashcapture.app import certify
    from cashcapture.core import drugs

    try:
        drug_list = drugs.load(state.upper())
        schedule_of = schedule_factory(Config(state=state.upper()))
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise UserError(f"--state {state}: {exc}") from None

    findings = []
    for name in claims:
        try:
            findings.append(
                certify.certify(
                    _read_claim(name),
                    name,
                    schedule_of=schedule_of,
                    today=dt.date.today(),
                    state=state.upper(),
                    drug_list=drug_list,
                    payment_type="04" if insured else "01",
                )  # fmt: skip
            )
        except KeyError as exc:
            raise UserError(f"--state {state}: {exc.args[0]}") from None
    if html_file:
        from pathlib import Path

        from cashcapture.core.private import write_private

        page = certify.to_html(findings, show_patient=show_patient)
        try:
            write_private(Path(html_file), page.encode("utf-8"))
        except OSError as exc:
            raise UserError(f"cannot write {html_file}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(certify.to_json(findings))
    else:
        certify.render(findings, _console())
        if html_file:
            click.echo(f"HTML report written to {html_file}")
    return 0 if all(f.ready for f in findings) else 1


def _database_error(exc) -> str:
    """The cause of a database failure in one line, with what to do when we know it."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    if isinstance(exc, ArgumentError):
        return f"bad database URL: {exc}"
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        text += " (run `cashcapture db upgrade` first)"
    return f"database: {text}"


#: The one place user errors become one line: (module, class, message). The module
#: is looked up only if already imported, as it must be for its error to be raised.
USER_ERRORS: tuple[tuple[str, str, object], ...] = (
    ("sqlalchemy.exc", "SQLAlchemyError", _database_error),
    ("cashcapture.core.csvfile", "CsvError", str),
    ("cashcapture.core.pharmacies", "RegistryError", str),
    ("extract.verdicts", "VerdictError", str),
    ("cashcapture.core.configfile", "ConfigError", str),  # settings of every section
    ("cashcapture.core.drugs", "DirectoryError", str),  # a drug directory file
)


def _user_error(exc: BaseException) -> str | None:
    for module, name, message in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return message(exc)  # type: ignore[operator]
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every user error becomes one stderr line and exit status 2.

    Files are created private (umask 077) whatever the caller's umask: the
    database, the outbox, keys and reports hold patient data.
    """
    import os

    umask = os.umask(0o077)
    try:
        rv = cli.main(args=argv, prog_name="cashcapture", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("cashcapture: aborted", err=True)
        return 1
    except click.ClickException as exc:
        # UsageError, BadParameter, UserError, ...: exactly one line.
        msg = " ".join(exc.format_message().split())
        click.echo(f"cashcapture: error: {msg}", err=True)
        return 2 if exc.exit_code in (1, 2) else exc.exit_code
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        click.echo(f"cashcapture: error: {' '.join(str(message).split())}", err=True)
        return 2
    finally:
        os.umask(umask)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
