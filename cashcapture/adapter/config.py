"""Adapter settings from a TOML file; every setting has a default.

One file serves every part (fixtures/cashcapture.toml shows each setting and
its default; a test keeps it complete): the adapter reads the sections of
`configfile.SECTIONS` it owns and leaves the others to the part they belong to
(`[extract]` and `[sftp]`: extract/settings.py checks them), while a section
nobody owns is refused by every part, so a misspelt one is never ignored.

Routes are written ``BIN`` or ``BIN/PCN``: a route without a PCN matches every
PCN of that BIN, and a route with a PCN wins over one without.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from cashcapture.adapter import framing
from cashcapture.core import profiles
from cashcapture.core.configfile import (
    DEFAULT_URL,
    ConfigError,
    check_sections,
    read,
    state_profiles,
)
from cashcapture.core.configfile import SECTIONS as SECTIONS  # re-exported: the adapter's view
from cashcapture.core.ids import ascii_digits
from cashcapture.core.pmp.records import PAYMENT_TYPES
from cashcapture.core.pmp.rules import StateRules

MAX_FRAME = 65535  # the largest message any framing carries (len2: a 2-byte length)
DEFAULT_DB = DEFAULT_URL  # the store's one default
DEFAULT_UPSTREAM_TIMEOUT = 8.0


@dataclass(frozen=True)
class BinPcn:
    bin: str
    pcn: str | None = None

    @classmethod
    def parse(cls, text: str) -> BinPcn:
        bin_, _, pcn = str(text).strip().partition("/")
        if not (ascii_digits(bin_) and len(bin_) == 6):
            raise ConfigError(f"BIN must be 6 digits, got {bin_!r} in {text!r}")
        pcn = pcn.strip()
        if len(pcn) > 10:
            raise ConfigError(f"PCN longer than 10 characters in {text!r}")
        return cls(bin_, pcn or None)

    def __str__(self) -> str:
        return self.bin if self.pcn is None else f"{self.bin}/{self.pcn}"


@dataclass(frozen=True)
class Listener:
    host: str = "127.0.0.1"
    port: int = 5010
    framing: str = framing.DEFAULT_FRAMING


@dataclass(frozen=True)
class PayerRoute:
    route: BinPcn
    host: str
    port: int
    framing: str = framing.DEFAULT_FRAMING
    timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    payment_type: str = "other"  # DSP16 class of its fills (records.PAYMENT_TYPES); other = 99

    @property
    def dsp16(self) -> str:
        return PAYMENT_TYPES[self.payment_type]


@dataclass(frozen=True)
class Config:
    listeners: tuple[Listener, ...] = (Listener(),)
    idle_timeout: float = 120.0
    frame_timeout: float = 10.0
    max_connections: int = 1000
    max_message_size: int = 8192
    cash: tuple[BinPcn, ...] = ()
    certification: tuple[BinPcn, ...] = ()
    payers: tuple[PayerRoute, ...] = ()
    db: str = DEFAULT_DB
    state: str = "KY"
    profile: str = ""  # "" = the [extract] profile of the same file, else the state's own
    drug_list: str | None = None
    metrics_port: int = 0
    workers: int = 1
    shutdown_grace: float = 10.0
    log_level: str = "INFO"
    commit_max_batch: int = 256
    spool: str = ""  # "": beside a SQLite database, else ./cashcapture.spool (spool.spool_path)
    # [extract] profile of the same file (read here, checked by the extract): the counter
    # follows it, so that the counter and the state's file judge a fill by one rule set.
    extract_profile: str = field(default="", metadata={"from": "extract.profile"})
    # [states] of the same file: (state, profile) of each other state's PMP, whose record
    # rules the counter also runs on the fills that state will get
    states: tuple[tuple[str, str], ...] = field(default=(), metadata={"from": "states"})


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_ADAPTER_KEYS = {
    "idle_timeout": float,
    "frame_timeout": float,
    "max_connections": int,
    "max_message_size": int,
    "db": str,
    "state": str,
    "profile": str,
    "drug_list": str,
    "metrics_port": int,
    "workers": int,
    "shutdown_grace": float,
    "log_level": str,
    "commit_max_batch": int,
    "spool": str,
}


def _typed(section: str, key: str, value: object, kind: type) -> object:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{section}.{key} must be {kind.__name__}, got {value!r}")
    return value


def _unknown(section: str, table: dict, known: set[str]) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise ConfigError(f"unknown setting(s) in {section}: {', '.join(extra)}")


def _port(section: str, value: object) -> int:
    port = _typed(section, "port", value, int)
    if not 0 <= port <= 65535:  # type: ignore[operator]
        raise ConfigError(f"{section}.port out of range: {port}")
    return port  # type: ignore[return-value]


def _framing(section: str, value: object) -> str:
    try:
        return framing.check(str(value))
    except ValueError as exc:
        raise ConfigError(f"{section}.framing: {exc}") from None


def from_dict(data: dict) -> Config:
    """Build a Config from parsed TOML, checking every key of the adapter's sections."""
    check_sections(data)
    adapter = data.get("adapter", {})
    _unknown("[adapter]", adapter, set(_ADAPTER_KEYS))
    kw: dict = {k: _typed("adapter", k, v, _ADAPTER_KEYS[k]) for k, v in adapter.items()}
    kw["extract_profile"] = str(data.get("extract", {}).get("profile", ""))
    states = state_profiles(data.get("states", {}))
    kw["states"] = tuple((state, table["profile"]) for state, table in states.items())

    listeners = []
    for i, item in enumerate(data.get("listeners", [])):
        sec = f"listeners[{i}]"
        _unknown(sec, item, {"host", "port", "framing"})
        listeners.append(
            Listener(
                host=str(item.get("host", Listener.host)),
                port=_port(sec, item.get("port", Listener.port)),
                framing=_framing(sec, item.get("framing", framing.DEFAULT_FRAMING)),
            )
        )
    if listeners:
        kw["listeners"] = tuple(listeners)

    routes = data.get("routes", {})
    _unknown("[routes]", routes, {"cash", "certification"})
    for key in ("cash", "certification"):
        if key in routes:
            kw[key] = tuple(BinPcn.parse(r) for r in routes[key])

    payers = []
    for i, item in enumerate(data.get("payers", [])):
        sec = f"payers[{i}]"
        _unknown(sec, item, {"route", "host", "port", "framing", "timeout", "payment_type"})
        for need in ("route", "host", "port"):
            if need not in item:
                raise ConfigError(f"{sec}.{need} is required")
        timeout = _typed(sec, "timeout", item.get("timeout", DEFAULT_UPSTREAM_TIMEOUT), float)
        if timeout <= 0:  # type: ignore[operator]
            raise ConfigError(f"{sec}.timeout must be positive")
        payment = str(item.get("payment_type", "other"))
        if payment not in PAYMENT_TYPES:
            raise ConfigError(f"{sec}.payment_type must be one of {', '.join(PAYMENT_TYPES)}")
        payers.append(
            PayerRoute(
                route=BinPcn.parse(item["route"]),
                host=str(item["host"]),
                port=_port(sec, item["port"]),
                framing=_framing(sec, item.get("framing", framing.DEFAULT_FRAMING)),
                timeout=timeout,  # type: ignore[arg-type]
                payment_type=payment,
            )
        )
    kw["payers"] = tuple(payers)
    cfg = Config(**kw)
    _check(cfg)
    return cfg


def state_rules(cfg: Config) -> StateRules:
    """The record rules of the adapter's state under its profile (the extract's): the
    counter pays as captured only what the state's file will take."""
    if cfg.profile and cfg.extract_profile and cfg.profile != cfg.extract_profile:
        raise ConfigError(
            f"adapter.profile {cfg.profile} differs from [extract] profile {cfg.extract_profile}: "
            "the counter would pay what the state's file refuses (leave adapter.profile out)"
        )
    name = cfg.profile or cfg.extract_profile or cfg.state
    try:
        profile = profiles.load(name)
    except profiles.ProfileError as exc:
        key = (
            "adapter.profile"
            if cfg.profile
            else "[extract] profile"
            if cfg.extract_profile
            else "adapter.state"
        )
        raise ConfigError(f"{key}: {exc} (no profile for state {cfg.state})") from None
    if profile.state and profile.state != cfg.state:
        key = "[extract] profile" if not cfg.profile and cfg.extract_profile else "adapter.profile"
        raise ConfigError(f"{key} {name} reports to {profile.state}, not {cfg.state}")
    return profile.rules(cfg.state)


def rules_by_state(cfg: Config) -> dict[str, StateRules]:
    """The record rules of every state this switch reports to: the adapter's state's
    (`state_rules`), then each of [states] under its profile."""
    out = {cfg.state: state_rules(cfg)}
    for state, name in cfg.states:
        try:
            out[state] = profiles.load(name).rules(state)
        except profiles.ProfileError as exc:
            raise ConfigError(f"[states] {state}: {exc}") from None
    return out


def _check(cfg: Config) -> None:
    state_rules(cfg)
    if not 56 <= cfg.max_message_size <= MAX_FRAME:
        raise ConfigError(
            f"adapter.max_message_size must be 56 (one header) to {MAX_FRAME} (a len2 frame)"
        )
    if cfg.workers < 1:
        raise ConfigError("adapter.workers must be at least 1")
    if cfg.idle_timeout <= 0:
        raise ConfigError("adapter.idle_timeout must be positive")
    if cfg.frame_timeout <= 0:
        raise ConfigError("adapter.frame_timeout must be positive")
    if cfg.max_connections < 1:
        raise ConfigError("adapter.max_connections must be at least 1")
    if cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"adapter.log_level must be one of {', '.join(LOG_LEVELS)}, got {cfg.log_level!r}"
        )
    seen: dict[BinPcn, str] = {}
    for kind, routes in (
        ("cash", cfg.cash),
        ("certification", cfg.certification),
        ("payers", tuple(p.route for p in cfg.payers)),
    ):
        for r in routes:
            if r in seen:
                raise ConfigError(f"route {r} listed in both {seen[r]} and {kind}")
            seen[r] = kind


def load(path: str | Path | None) -> Config:
    """Read a TOML file (None: all defaults). Raises ConfigError with one clear line."""
    return from_dict({} if path is None else read(path))


def override(
    cfg: Config,
    *,
    db: str | None = None,
    host: str | None = None,
    port: int | None = None,
    cash_bins: tuple[str, ...] = (),
    workers: int | None = None,
) -> Config:
    """Apply command-line overrides (--host/--port replace the first listener)."""
    changes: dict = {}
    if db:
        changes["db"] = db
    if host is not None or port is not None:
        first = cfg.listeners[0]
        first = replace(
            first,
            host=first.host if host is None else host,
            port=first.port if port is None else port,
        )
        changes["listeners"] = (first, *cfg.listeners[1:])
    if cash_bins:
        changes["cash"] = tuple(BinPcn.parse(b) for b in cash_bins)
    if workers is not None:
        changes["workers"] = workers
    out = replace(cfg, **changes)
    _check(out)
    return out
