"""The one TOML config file every part reads: its sections, how it is read, the database.

It sits apart from the adapter's `config` (which pulls in framing) so that the
extract checks the file against the same `SECTIONS` table and resolves the
database URL in the same order as `serve`, without importing the adapter.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

#: The one default store and the environment variable that overrides it.
DEFAULT_URL = "sqlite:///cashcapture.db"
ENV_VAR = "CASHCAPTURE_DB"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it, on one line."""


# Every top-level key of the config file -> the part that reads and checks it.
SECTIONS: dict[str, str] = {
    "adapter": "adapter",  # cashcapture/config.py
    "listeners": "adapter",
    "routes": "adapter",
    "payers": "adapter",
    "extract": "extract",  # extract/settings.py: the daily extract
    "sftp": "extract",  # extract/settings.py: the SFTP submitter
    "states": "extract",  # extract/settings.py: other states' PMPs (profile, own [sftp] keys)
}


def check_sections(data: dict[str, Any]) -> None:
    """Refuse a section no part owns, so a misspelt one is never silently ignored."""
    extra = sorted(set(data) - set(SECTIONS))
    if extra:
        known = ", ".join(SECTIONS)
        raise ConfigError(f"unknown section(s) in config: {', '.join(extra)} (known: {known})")


def read(path: str | Path) -> dict[str, Any]:
    """The parsed file, its sections checked; ConfigError with one line otherwise."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    check_sections(data)
    return data


def state_profiles(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """[states] as state -> its table: `OH = "ASAP-4.2A"` or a table holding `profile`
    (and, for the extract, that collector's own [sftp] keys). The counter judges a fill
    by the same profiles the extract reports it under."""
    out = {}
    for state, value in raw.items():
        where = f"[states] {state}"
        if not (len(state) == 2 and state.isascii() and state.isupper() and state.isalpha()):
            raise ConfigError(f"{where}: a state is two capital letters, e.g. OH")
        table = {"profile": value} if isinstance(value, str) else value
        if not isinstance(table, dict) or not isinstance(table.get("profile"), str):
            raise ConfigError(f"{where}: give a profile name (cashcapture profiles list)")
        out[state] = table
    return out


def database_url(given: str | None, configured: str | None = None) -> str:
    """--db, then $CASHCAPTURE_DB, then the file's `[adapter] db`, then the default SQLite file."""

    return given or os.environ.get(ENV_VAR) or configured or DEFAULT_URL
