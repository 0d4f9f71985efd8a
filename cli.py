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


# --- store, drugs, pharmacies (issue 4) -------------------------------------


# --- adapter: serve, send, fills (issue 5) ----------------------------------


# --- ASAP: validate, asap show (issue 6) ------------------------------------


# --- daily extract, submit, status, recap (issue 7) -------------------------


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
