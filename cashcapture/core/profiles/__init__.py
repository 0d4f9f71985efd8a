"""State profiles: what one PMP collector asks for, as data (data/NAME.toml).

A profile names the ASAP version and rules table, the file name, the zero-report
cadence, how revisions go, the reporting deadline and its calendar, the time zone
and the delivery (SFTP folder, packaging). The extract and the counter read the
same profile, so a second state is a new TOML file, not new code. A fact the
sources do not give is a comment in the file and a setting, never a guess.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cashcapture.core import configfile
from cashcapture.core.pmp import asap, rules
from cashcapture.core.pmp.filenames import file_name

DEFAULT = "KY"

# Closed vocabularies of the profile keys that have one.
CHOICES: dict[str, tuple[str, ...]] = {
    "asap_version": asap.VERSIONS,
    "zero_reports": ("daily", "weekly", "off"),
    "revisions": ("01", "void+new"),
    "deadline_count": ("business", "calendar"),
    "package": ("none", "zip", "pgp"),
}


class ProfileError(configfile.ConfigError):
    """A profile that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    state: str  # "" for a generic collector: the configuration names the state
    asap_version: str
    rules_table: str
    rules_settings: str
    file_name: str
    zero_reports: str
    revisions: str
    deadline_days: int
    deadline_count: str
    holidays: str  # COUNTRY or COUNTRY-SUBDIVISION, "{state}" filled in
    timezone: str  # "" for a generic collector: the configuration names it
    remote_dir: str
    package: str
    subfolder_by_state: bool

    def rules(self, state: str | None = None) -> rules.StateRules:
        """The state's record rules under this profile (one compiled set per key)."""
        return _rules(state or self.state, self.asap_version, self.rules_table, self.rules_settings)

    def calendar(self, state: str | None = None) -> Calendar:
        return _calendar(self.holidays.format(state=state or self.state))

    def deadline(self, dispensed: dt.date, state: str | None = None) -> dt.date:
        """The last day a fill dispensed on `dispensed` may reach the collector."""
        if self.deadline_count == "calendar":
            return dispensed + dt.timedelta(days=self.deadline_days)
        return self.calendar(state).add_business_days(dispensed, self.deadline_days)

    def folder(self, remote_dir: str, state: str) -> str:
        """The SFTP folder of this state's files: the setting's, plus the state's own
        subfolder where the collector keeps one per state."""
        base = remote_dir or self.remote_dir or "/"
        return f"{base.rstrip('/')}/{state}" if self.subfolder_by_state else base


@dataclass(frozen=True)
class Calendar:
    """Weekends and one jurisdiction's public holidays (the `holidays` library)."""

    spec: str
    days: Any  # holidays.HolidayBase: a dict-like of dates

    def is_business_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and day not in self.days

    def add_business_days(self, start: dt.date, count: int) -> dt.date:
        day = start
        while count > 0:
            day += dt.timedelta(days=1)
            if self.is_business_day(day):
                count -= 1
        return day


def names() -> list[str]:
    """The shipped profiles, by name."""
    files = resources.files(__package__).joinpath("data").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


@cache
def load(name: str) -> Profile:
    """One shipped profile, checked; ProfileError (one line) when unknown or wrong."""
    if name not in names():
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(names())}")
    text = resources.files(__package__).joinpath("data", f"{name}.toml").read_text("utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {name}: not valid TOML: {exc}") from None
    return check(Profile(name=name, **_typed(name, raw)))


def for_file(state: str, version: str) -> Profile:
    """The profile a file of this state and ASAP version is judged by (`validate`):
    the state's own profile of that version, else a generic one of that version; a
    version nobody reports (a bad TH01) is judged by the state's default profile,
    whose rules then say what is wrong with it."""
    shipped = [load(n) for n in names()]
    for wanted in (state, ""):
        for p in shipped:
            if p.state == wanted and p.asap_version == version:
                return p
    if version not in asap.VERSIONS and state in names():
        return load(state)
    raise ProfileError(f"no profile judges ASAP {version or '?'} files for {state}")


def text(name: str) -> str:
    """The profile file as shipped, comments and all (what `profiles show` prints)."""
    load(name)
    return resources.files(__package__).joinpath("data", f"{name}.toml").read_text("utf-8")


def _typed(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    expected = {f.name: f.type for f in fields(Profile) if f.name != "name"}
    missing = sorted(set(expected) - set(raw))
    extra = sorted(set(raw) - set(expected))
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
        raise ProfileError(f"profile {name}: {what}")
    for key, value in raw.items():
        kind = {"str": str, "int": int, "bool": bool}[str(expected[key])]
        if type(value) is not kind:
            raise ProfileError(f"profile {name}: {key} must be {kind.__name__}, got {value!r}")
    return raw


def check(p: Profile) -> Profile:
    for key, allowed in CHOICES.items():
        if getattr(p, key) not in allowed:
            raise ProfileError(f"profile {p.name}: {key} must be one of {', '.join(allowed)}")
    if not 0 < p.deadline_days <= 31:
        raise ProfileError(f"profile {p.name}: deadline_days must be 1 to 31")
    if p.timezone:
        zone(p.timezone, f"profile {p.name}: timezone")
    check_file_name(p.file_name, f"profile {p.name}: file_name")
    if p.state:
        p.rules()  # the table exists, matches the version and names known elements
        p.calendar()
    return p


def check_file_name(pattern: str, what: str) -> None:
    """A file-name pattern names only {state} {submitter_id} {reg_key} {when:...}."""
    try:
        name = file_name("S1", "K1", dt.datetime(2001, 2, 3, 4, 5, 6), "XX", pattern)
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise ProfileError(f"{what}: bad pattern {pattern!r} ({exc})") from None
    if "/" in name or not name.strip():
        raise ProfileError(f"{what}: a file name cannot hold '/' or be empty")


def zone(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProfileError(f"{what}: unknown time zone {name!r}") from None


@cache
def _rules(state: str, version: str, table_file: str, settings: str) -> rules.StateRules:
    try:
        return rules.load(state, version, table_file, settings=settings)
    except (OSError, KeyError, ValueError) as exc:
        raise ProfileError(f"rules {table_file} for ASAP {version}: {exc}") from None


@cache
def _calendar(spec: str) -> Calendar:
    import holidays  # the library's country modules load on demand

    country, _, subdiv = spec.partition("-")
    try:
        days = holidays.country_holidays(country, subdiv=subdiv or None)
    except NotImplementedError as exc:
        raise ProfileError(f"holidays {spec!r}: {exc}") from None
    return Calendar(spec, days)
