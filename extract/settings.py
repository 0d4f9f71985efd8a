"""Settings of the daily extract and the SFTP submitter.

They come from the `[extract]` and `[sftp]` sections of the TOML config file
(the same file `serve --config` reads, read and its sections checked by
`cashcapture.core.configfile`) and can be overridden by command-line options. Every
setting has a default here, and the README lists them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cashcapture.core import configfile, drugs, profiles
from cashcapture.core.pmp.rules import StateRules
from extract.packaging import PACKAGES

ZERO_CADENCES = ("daily", "weekly", "off")
PO_BOX_POLICIES = ("warning", "reject", "off")  # the guide shows the collector doing both
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SettingsError(configfile.ConfigError):
    """A config value the operator must fix; the message is one line."""


@dataclass(frozen=True)
class ExtractSettings:
    """The extract's settings. `profile` names the state's collector (cashcapture
    profiles list); `state`, `asap_version`, `timezone`, `zero_reports` and
    `file_name` default to the profile's ("" = the profile's) and, where given,
    override it (a generic profile needs `state`, and `timezone` if it has none)."""

    profile: str = profiles.DEFAULT
    state: str = ""
    timezone: str = ""
    zero_reports: str = ""  # daily | weekly | off
    week_ends: str = "saturday"  # weekly zero reports cover the week ending this day
    submitter_id: str = ""  # fallback when a pharmacy has none (default: its DEA)
    reg_key: str = ""  # fallback when a pharmacy has none
    outbox: str = "outbox"  # local folder for written files, relative to the config file
    file_type: str = "P"  # TH07: P production, T test
    asap_version: str = ""  # must be the profile's when given
    file_name: str = ""  # the file-name pattern, when the collector asks for another
    lock_file: str = ""  # run lock for SQLite / other; default: next to the database
    workers: int = 1  # processes building files in parallel (2+ for a national day)
    po_box: str = "warning"  # PO Box street: warning (sent) | reject (held back) | off
    metrics_file: str = ""  # run-daily writes Prometheus gauges here (node_exporter textfile)

    @cached_property
    def pmp(self) -> profiles.Profile:
        """The chosen profile (ProfileError, one line, when unknown)."""
        return profiles.load(self.profile)

    @property
    def report_state(self) -> str:
        """The state whose PMP the files go to."""
        return self.state or self.pmp.state

    @property
    def version(self) -> str:
        return self.pmp.asap_version

    @property
    def cadence(self) -> str:
        return self.zero_reports or self.pmp.zero_reports

    @property
    def name_pattern(self) -> str:
        return self.file_name or self.pmp.file_name

    def rules(self) -> StateRules:
        return self.pmp.rules(self.report_state)

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone or self.pmp.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(f"[extract] timezone: unknown time zone {self.timezone!r}") from exc

    def deadline(self, dispensed: dt.date) -> dt.date:
        """The last day a fill dispensed on that day may reach the collector."""
        return self.pmp.deadline(dispensed, self.report_state)


@dataclass(frozen=True)
class SftpSettings:
    host: str = ""
    port: int = 22
    user: str = ""
    key: str = ""  # private key file for key authentication
    host_key: str = ""  # pinned server public key, "ssh-ed25519 AAAA..."
    known_hosts: str = ""  # or a known_hosts file holding the server's key
    remote_dir: str = "/"
    temp_suffix: str = ".part"
    retries: int = 5  # attempts per file after a network fault
    backoff: float = 2.0  # first wait in seconds, doubled after each fault
    timeout: float = 30.0  # connect timeout in seconds
    package: str = ""  # none | zip | pgp; "" = the profile's
    pgp_public_key: str = ""  # the collector's OpenPGP public key file (package pgp)


@dataclass(frozen=True)
class Settings:
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    sftp: SftpSettings = field(default_factory=SftpSettings)
    base_dir: Path = field(default_factory=Path.cwd)
    db: str = ""  # [adapter] db of the file: the store; `configfile.database_url` ranks it
    # [adapter] drug_list of the file: the drug directory the counter classifies by, so
    # the extract, its re-classifying and the drugs commands read the same one
    drug_list: str = ""
    # [states]: other states' PMPs this switch reports to, state -> (profile, [sftp] overrides)
    states: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = ()

    def directory(self, state: str) -> drugs.Directory:
        """The drug directory every part reads: `[adapter] drug_list` (a path as `serve`
        takes it, from the working directory) when set, else the shipped one."""
        return drugs.directory(self.drug_list, state)

    def state_names(self) -> list[str]:
        """Every state this switch reports to: the configured profile's, then [states]."""
        return [self.extract.report_state, *(name for name, _, _ in self.states)]

    def for_state(self, state: str) -> Settings:
        """The settings of the run for one state: its profile, its collector."""
        if state == self.extract.report_state:
            return self
        for name, profile, sftp in self.states:
            if name == state:
                zone = self.extract.timezone or self.extract.pmp.timezone
                extract = replace(
                    self.extract, profile=profile, state=state, asap_version="", file_name=""
                )
                if not extract.pmp.timezone:  # a generic collector: this switch's zone
                    extract = replace(extract, timezone=zone)
                sftp_settings = replace(self.sftp, **dict(sftp))
                return check(replace(self, extract=extract, sftp=sftp_settings, states=()))
        raise SettingsError(f"no profile for state {state}: add it under [states] (profiles list)")

    def package(self) -> str:
        """How files travel: [sftp] package, else the profile's."""
        return self.sftp.package or self.extract.pmp.package

    def remote_folder(self) -> str:
        """Where files go: [sftp] remote_dir, plus the state's subfolder where the
        profile's collector keeps one per state."""
        return self.extract.pmp.folder(self.sftp.remote_dir, self.extract.report_state)

    def outbox_dir(self) -> Path:
        return (self.base_dir / self.extract.outbox).resolve()

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply command-line options named `section_key` (None = not given)."""
        ex = {k[8:]: v for k, v in overrides.items() if k.startswith("extract_") and v is not None}
        sf = {k[5:]: v for k, v in overrides.items() if k.startswith("sftp_") and v is not None}
        return replace(self, extract=replace(self.extract, **ex), sftp=replace(self.sftp, **sf))


def _section(cls: type, raw: dict[str, Any], name: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise SettingsError(f"[{name}] unknown setting {key!r}")
        default = known[key].default
        if isinstance(default, bool) or not isinstance(value, type(default)):
            if not (isinstance(default, float) and isinstance(value, int)):
                raise SettingsError(
                    f"[{name}] {key}: expected {type(default).__name__}, got {value!r}"
                )
            value = float(value)
        values[key] = value
    return cls(**values)


def check_profile(ex: ExtractSettings) -> None:
    """The profile exists and the [extract] keys that override it fit it."""
    try:
        pmp = ex.pmp
    except profiles.ProfileError as exc:
        raise SettingsError(f"[extract] profile: {exc}") from None
    if pmp.state and ex.state and ex.state != pmp.state:
        raise SettingsError(
            f"[extract] state {ex.state}: profile {pmp.name} reports to {pmp.state}; "
            "choose another profile (cashcapture profiles list)"
        )
    if not ex.report_state:
        raise SettingsError(f"[extract] state: profile {pmp.name} serves any state; name one")
    if pmp.revisions != "01":
        raise SettingsError(
            f"[extract] profile {pmp.name}: revisions {pmp.revisions!r} (a void and a new "
            "record for each change) is not built yet; only 01 revisions are"
        )
    if not (ex.report_state.isascii() and ex.report_state.isalpha() and len(ex.report_state) == 2):
        raise SettingsError(f"[extract] state: {ex.report_state!r} is not a two-letter state code")
    if ex.asap_version and ex.asap_version != pmp.asap_version:
        raise SettingsError(
            f"[extract] asap_version {ex.asap_version}: profile {pmp.name} reports ASAP "
            f"{pmp.asap_version}; choose the profile of that version (cashcapture profiles list)"
        )
    if not (ex.timezone or pmp.timezone):
        raise SettingsError(f"[extract] timezone: profile {pmp.name} has none; name the state's")
    if ex.file_name:
        try:
            profiles.check_file_name(ex.file_name, "[extract] file_name")
        except profiles.ProfileError as exc:
            raise SettingsError(str(exc)) from None
    try:
        ex.rules()
        pmp.calendar(ex.report_state)
    except profiles.ProfileError as exc:
        raise SettingsError(f"[extract] profile {pmp.name} for {ex.report_state}: {exc}") from None


def check(settings: Settings) -> Settings:
    ex = settings.extract
    check_profile(ex)
    if ex.cadence not in ZERO_CADENCES:
        raise SettingsError(f"[extract] zero_reports must be one of {', '.join(ZERO_CADENCES)}")
    if ex.week_ends not in WEEKDAYS:
        raise SettingsError("[extract] week_ends must be a weekday name, e.g. saturday")
    if ex.po_box not in PO_BOX_POLICIES:
        raise SettingsError(f"[extract] po_box must be one of {', '.join(PO_BOX_POLICIES)}")
    if ex.file_type not in ("P", "T"):
        raise SettingsError("[extract] file_type must be P or T")
    ex.zone()
    if not 1 <= ex.workers <= 64:
        raise SettingsError("[extract] workers must be between 1 and 64")
    if settings.sftp.package not in ("", *PACKAGES):
        raise SettingsError(f"[sftp] package must be one of {', '.join(PACKAGES)}")
    if settings.package() == "pgp" and not settings.sftp.pgp_public_key:
        raise SettingsError("[sftp] pgp_public_key: package pgp needs the collector's public key")
    seen = {settings.extract.report_state}
    for state, profile, _ in settings.states:
        if state in seen:
            raise SettingsError(f"[states] {state}: already reported to by [extract] profile")
        seen.add(state)
        try:
            pmp = profiles.load(profile)
        except profiles.ProfileError as exc:
            raise SettingsError(f"[states] {state}: {exc}") from None
        if pmp.state and pmp.state != state:
            raise SettingsError(f"[states] {state}: profile {profile} reports to {pmp.state}")
    if settings.sftp.retries < 1:
        raise SettingsError("[sftp] retries must be at least 1")
    return settings


def _states(raw: dict[str, Any]) -> tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]:
    """[states]: `OH = "ASAP-4.2A"`, or a table with `profile` and [sftp] keys of its own
    (another collector's host, user, key, folder, package...)."""
    try:
        tables = configfile.state_profiles(raw)
    except configfile.ConfigError as exc:
        raise SettingsError(str(exc)) from None
    out = []
    for state, table in tables.items():
        sftp = {k: v for k, v in table.items() if k != "profile"}
        checked = _section(SftpSettings, sftp, f"states.{state}")
        out.append((state, table["profile"], tuple((k, getattr(checked, k)) for k in sftp)))
    return tuple(out)


def load(path: str | Path | None, *, read_directory: bool = True) -> Settings:
    """Read the config file (None: all defaults, relative paths from the cwd).

    `read_directory` False leaves `[adapter] drug_list` unread: `drugs import` is how a
    missing or broken directory file is made whole again."""
    if path is None:
        return check(Settings())
    path = Path(path)
    try:
        raw = configfile.read(path)
    except configfile.ConfigError as exc:
        raise SettingsError(str(exc)) from None
    # the rest of [adapter] is the adapter's to check
    db, drug_list = (raw.get("adapter", {}).get(key, "") for key in ("db", "drug_list"))
    for key, value in (("db", db), ("drug_list", drug_list)):
        if not isinstance(value, str):
            raise SettingsError(f"[adapter] {key}: expected str, got {value!r}")
    if drug_list and read_directory:
        try:
            drugs.load_file(drug_list, "")  # read (and cached) once: a bad row is said now
        except OSError:
            raise SettingsError(f"[adapter] drug_list: no file {drug_list}") from None
        except drugs.DirectoryError as exc:
            raise SettingsError(f"[adapter] drug_list: {exc}") from None
    return check(
        Settings(
            extract=_section(ExtractSettings, raw.get("extract", {}), "extract"),
            sftp=_section(SftpSettings, raw.get("sftp", {}), "sftp"),
            base_dir=path.parent.resolve(),
            db=db,
            drug_list=drug_list,
            states=_states(raw.get("states", {})),
        )
    )
