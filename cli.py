"""Command line of cashcapture: wires the parts together, holds no logic.

Every command lives in the section of the part it drives. Errors the user can
fix end as one line on stderr and exit status 2 (see `main`).
"""

from __future__ import annotations

import sys

import click


class UserError(click.ClickException):
    """Bad input from the command line or a file: one line, exit status 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cashcapture")
def cli() -> None:
    """Cash-capture NCPDP D.0 adapter and ASAP PMP extractor."""


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
    out = click.get_binary_stream("stdout")
    out.write(data)
    out.flush()



# --- store, drugs, pharmacies (issue 4) -------------------------------------


# --- adapter: serve, send, fills (issue 5) ----------------------------------


# --- ASAP: validate, asap show (issue 6) ------------------------------------


def _drug_list(state: str):
    """The store's drug list for the state, when that part is installed."""
    try:
        from cashcapture import drugs
    except ImportError:
        return None
    try:
        return drugs.load(state=state)
    except (FileNotFoundError, KeyError, ValueError):
        return None


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--state", default="KY", show_default=True, help="State rules table.")
@click.option("--json", "as_json", is_flag=True, help="JSON report instead of text.")
@click.option(
    "--po-box",
    type=click.Choice(["warning", "reject", "off"]),
    default=None,
    help="PO Box in PAT12: the state's table default (KY: warning).",
)
@click.option("--no-drug-list", is_flag=True, help="Do not check NDCs against the drug list.")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), help="Clock for date rules.")
def validate_cmd(files, state, as_json, po_box, no_drug_list, today) -> int:
    """Validate ASAP files with the state's rules: exit 0 accepted, 1 rejects, 2 failed."""
    import dataclasses
    import datetime as dt
    import json

    from extract.rules import for_state
    from extract.validate import Validator

    try:
        rules = for_state(state)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    if po_box:
        rules = dataclasses.replace(rules, po_box=po_box)
    drug_list = None if no_drug_list else _drug_list(state.upper())
    day = today.date() if today else dt.date.today()
    worst = 0
    out = []
    for name in files:
        try:
            with open(name, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UserError(f"{name}: {exc.strerror or exc}") from None
        report = Validator(rules, drug_list, today=day).validate(data)
        worst = max(worst, report.exit_code)
        if as_json:
            out.append({"file": name, **report.to_dict()})
        else:
            click.echo(report.to_text(name))
    if as_json:
        click.echo(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return worst


@cli.group("asap")
def asap_group() -> None:
    """ASAP file tools."""


@asap_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
def asap_show(file) -> None:
    """Print a readable view of an ASAP file, every element named."""
    from extract.asap.codec import AsapError
    from extract.asap.show import describe

    try:
        with open(file, "rb") as fh:
            click.echo(describe(fh.read()))
    except OSError as exc:
        raise UserError(f"{file}: {exc.strerror or exc}") from None
    except AsapError as exc:
        raise UserError(f"{file}: {exc}") from None


# --- daily extract, submit, status, recap (issue 7) -------------------------

_DATE = click.DateTime(formats=["%Y-%m-%d"])
_db_option = click.option(
    "--db",
    "db",
    default=None,
    help="Database URL (default: $CASHCAPTURE_DB or sqlite:///cashcapture.db).",
)
_config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config ([extract] and [sftp] sections).",
)


class _Busy(click.ClickException):
    """Another extract/submit run holds the lock: nothing done, try later."""

    exit_code = 75


def _extract_env(db: str | None, config: str | None):
    """(engine, sessions, settings) for the extract commands; config errors -> UserError."""
    from cashcapture.store import make_engine, resolve_url, session_factory
    from extract.settings import SettingsError, load

    try:
        settings = load(config)
        settings.extract.zone()
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    engine = make_engine(resolve_url(db))
    return engine, session_factory(engine), settings


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
    from extract.daily import extract as run_extract
    from extract.reports import progress
    from extract.settings import SettingsError

    with progress("extract") as update:
        try:
            result = run_extract(sessions, settings, date.date() if date else None, progress=update)
        except SettingsError as exc:
            raise UserError(str(exc)) from None
    for f in result.files:
        kind = "zero report" if f.zero_report else f"records={f.records} held_back={f.held_back}"
        click.echo(f"{f.status:<11} {f.name} pharmacies={f.pharmacies} {kind}")
        for err in f.errors[:5]:
            click.echo(f"    {err}")
    for problem in result.problems:
        click.echo(f"not extracted: {problem}", err=True)
    click.echo(
        f"extract {result.day}: {len(result.files)} files, {result.records} records, "
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
@click.option(
    "--date",
    "date",
    type=_DATE,
    default=None,
    help="Day to extract, YYYY-MM-DD (default: yesterday in the configured time zone).",
)
@_db_option
@_config_option
def extract_cmd(date, db, config) -> int:
    """Write the day's ASAP files (one per pharmacy or chain submitter), validated."""
    engine, sessions, settings = _extract_env(db, config)
    with _Locked(engine, settings):
        return _run_extract(sessions, settings, date)


@cli.command("submit")
@_db_option
@_config_option
def submit_cmd(db, config) -> int:
    """Deliver written files by SFTP, exactly once; safe to re-run after any crash."""
    engine, sessions, settings = _extract_env(db, config)
    with _Locked(engine, settings):
        return _run_submit(sessions, settings)


@cli.command("run-daily")
@click.option(
    "--date", "date", type=_DATE, default=None, help="Day to extract (default: yesterday)."
)
@_db_option
@_config_option
def run_daily_cmd(date, db, config) -> int:
    """Extract then submit, under one lock: what cron or a systemd timer runs."""
    engine, sessions, settings = _extract_env(db, config)
    with _Locked(engine, settings):
        extracted = _run_extract(sessions, settings, date)
        submitted = _run_submit(sessions, settings)
        return max(extracted, submitted)


@cli.command("status")
@click.option("--from", "first", type=_DATE, default=None, help="First day (default: 7 days ago).")
@click.option("--to", "last", type=_DATE, default=None, help="Last day (default: today).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
@_db_option
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
    with sessions() as s:
        report = reports.status(s, first_day, last_day, zone)
    engine.dispose()
    click.echo(reports.to_csv(report), nl=False) if as_csv else reports.render(report)


@cli.command("recap")
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
@_db_option
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
@_db_option
@_config_option
def rejects_cmd(include_resolved, as_csv, db, config) -> None:
    """Records held back by the validator, waiting for a corrected claim."""
    from extract import reports

    engine, sessions, settings = _extract_env(db, config)
    with sessions() as s:
        report = reports.rejects(s, settings.extract.zone(), include_resolved)
    engine.dispose()
    click.echo(reports.to_csv(report), nl=False) if as_csv else reports.render(report)


# --- demo, certify (issue 8) ------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; usage errors become one stderr line and exit status 2."""
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
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
