"""The FDA NDC Directory as data: every NDC is controlled, not controlled, or unknown.

The shipped directory (``data/ndc_directory.csv``) is built from the FDA NDC
Directory's product and package files by `build` (``cashcapture drugs import``):
every package NDC, with the DEA schedule of its product (CII to CV) or none,
plus per-state additions found by substance name from the rules in
``data/state_schedules.csv`` (Kentucky: gabapentin, schedule V). Rows with a
blank state are federal; a state row applies only to that state.

An NDC the directory does not hold is *unknown*, never "not controlled": a
product newer than the file may well be a controlled substance, so the counter
captures its fill as unclassified until a newer directory says what it is.

Schedules are kept as the FDA writes them: "CII", "CIII", "CIV", "CV"; a product
the FDA lists without one has schedule "" (and no product name: the file keeps
names only where a report or an operator needs them).
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cashcapture.core.ids import ascii_digits

SCHEDULES = ("CII", "CIII", "CIV", "CV")
NOT_CONTROLLED = ""  # a Drug's schedule when the FDA lists the product without one
UNKNOWN = "?"  # `Directory.schedule_of` for an NDC the directory does not hold
LIST_FILE = "ndc_directory.csv"
RULES_FILE = "state_schedules.csv"
LIST_COLUMNS = ("ndc11", "schedule", "state", "product")
FDA_ENCODING = "latin-1"  # the FDA text files are not UTF-8
_PLAIN_ROW_END = ",,,"  # a federal row without schedule or name: the file's bulk, read fast

# Dashed layouts and how each pads to 5-4-2.
_DASHED = re.compile(r"^(\d{4,5})-(\d{3,4})-(\d{1,2})$")
_PADDINGS: dict[tuple[int, ...], tuple[int, int, int]] = {
    (4, 4, 2): (1, 0, 0),
    (5, 3, 2): (0, 1, 0),
    (5, 4, 1): (0, 0, 1),
    (5, 4, 2): (0, 0, 0),
}


@dataclass(frozen=True, slots=True)
class Drug:
    ndc11: str
    schedule: str  # CII, CIII, CIV, CV, or "" (listed by the FDA, not controlled)
    product: str
    state: str = ""  # "" = federal, else the state that schedules it

    @property
    def controlled(self) -> bool:
        return self.schedule != NOT_CONTROLLED

    @property
    def schedule_number(self) -> str:
        """The schedule as a digit, "2".."5"."""
        return str(SCHEDULES.index(self.schedule) + 2)


def normalize_ndc(text: str) -> str:
    """An NDC as 11 digits (5-4-2). Raises ValueError on anything else.

    Dashed 4-4-2, 5-3-2, 5-4-1 and 5-4-2 forms are padded; 11 digits are taken
    as they are. Ten digits without dashes are ambiguous (see `ndc_candidates`).
    """
    s = text.strip()
    if m := _DASHED.match(s):
        parts = m.groups()
        pads = _PADDINGS.get(tuple(len(p) for p in parts))
        if pads is not None:
            return "".join("0" * pad + part for pad, part in zip(pads, parts, strict=True))
    elif ascii_digits(s) and len(s) == 11:
        return s
    elif ascii_digits(s) and len(s) == 10:
        raise ValueError(f"NDC {s!r}: 10 digits without dashes is ambiguous; use dashes")
    raise ValueError(f"not an NDC: {s!r} (want 11 digits or 4-4-2, 5-3-2, 5-4-1 with dashes)")


def ndc_candidates(text: str) -> list[str]:
    """Every 11-digit reading of ``text``: one, or three for 10 undashed digits."""
    s = text.strip()
    if ascii_digits(s) and len(s) == 10:
        return ["0" + s, s[:5] + "0" + s[5:], s[:9] + "0" + s[9:]]
    return [normalize_ndc(s)]


class Directory:
    """One state's view of the directory: an NDC's Drug when controlled there, whether
    the directory holds it at all, and `schedule_of` for the counter. Iterating (and
    len) covers the controlled drugs only; the rest is a sorted array of NDCs as
    integers (a quarter of a million strings would cost every process ~20 MB)."""

    def __init__(self, drugs: Iterable[Drug], plain: Iterable[int] = ()) -> None:
        self._by_ndc: dict[str, Drug] = {}
        ints = list(plain)
        for d in drugs:
            if d.controlled:
                self._by_ndc[d.ndc11] = d
            else:
                ints.append(int(d.ndc11))
        ints.sort()  # linear on the file's sorted rows; a repeat does not upset bisect
        self._plain = array("q", ints)

    def __len__(self) -> int:
        return len(self._by_ndc)

    def __iter__(self) -> Iterator[Drug]:
        return iter(self._by_ndc.values())

    @property
    def known_count(self) -> int:
        """NDCs the directory holds, controlled or not."""
        plain = len(set(self._plain))
        return plain + sum(1 for n in self._by_ndc if not self._listed_plain(n))

    def _listed_plain(self, ndc11: str) -> bool:
        n = int(ndc11)
        i = bisect_left(self._plain, n)
        return i < len(self._plain) and self._plain[i] == n

    def _controlled(self, candidates: list[str]) -> Drug | None:
        return next((d for c in candidates if (d := self._by_ndc.get(c)) is not None), None)

    def lookup(self, ndc: str) -> Drug | None:
        """The drug for an NDC in any accepted form, when controlled here; else None."""
        return self._controlled(_readings(ndc))

    def is_reportable(self, ndc: str) -> bool:
        return self.lookup(ndc) is not None

    def knows(self, ndc: str) -> bool:
        """Whether the directory holds the NDC (controlled or not)."""
        return any(c in self._by_ndc or self._listed_plain(c) for c in _readings(ndc))

    def schedule_of(self, ndc: str) -> str | None:
        """CII..CV when controlled here, None when listed and not controlled, UNKNOWN
        when the directory does not hold it (something that is no NDC at all: None,
        it names no product to classify)."""
        candidates = _readings(ndc)
        if (drug := self._controlled(candidates)) is not None:
            return drug.schedule
        if not candidates or any(self._listed_plain(c) for c in candidates):
            return None
        return UNKNOWN


def _readings(ndc: str) -> list[str]:
    """`ndc_candidates`, none for what is no NDC at all."""
    try:
        return ndc_candidates(ndc)
    except ValueError:
        return []


_RANK = {**{s: n for n, s in enumerate(SCHEDULES)}, UNKNOWN: len(SCHEDULES)}


def most_controlled(schedules: Iterable[str | None]) -> str | None:
    """Of a fill's drugs' answers (`Directory.schedule_of`), the one its class follows:
    the most controlled schedule (CII first), else UNKNOWN if any drug is unknown, else
    None (nothing controlled)."""
    found = [s for s in schedules if s]
    return min(found, key=lambda s: _RANK.get(s, len(_RANK))) if found else None


def controlled_by(schedule_of: Callable[[str], str | None]) -> Callable[[str], bool]:
    """`schedule_of` as the yes/no a record's drug-list rule and a compound's reported
    ingredient need: scheduled, neither not controlled nor unknown."""
    return lambda ndc: schedule_of(ndc) not in (None, UNKNOWN)


class DirectoryError(ValueError):
    """A directory file that cannot be read; the message names the file and line."""


def _header(lines: list[str], name: str) -> None:
    if not lines or lines[0].split(",") != list(LIST_COLUMNS):
        want = ",".join(LIST_COLUMNS)
        raise DirectoryError(f"{name}: not a drug directory (want the header {want})")


def _drug(cells: list[str], where: str) -> Drug:
    """One row, checked: a bad one would silently turn a controlled NDC into another."""
    if len(cells) != len(LIST_COLUMNS):
        raise DirectoryError(f"{where}: {len(cells)} columns, want {len(LIST_COLUMNS)}")
    ndc, schedule, state, product = cells
    if len(ndc) != 11 or not ascii_digits(ndc):
        raise DirectoryError(f"{where}: {ndc!r} is not an 11-digit NDC")
    if schedule and schedule not in SCHEDULES:
        raise DirectoryError(f"{where}: schedule {schedule!r}, want {', '.join(SCHEDULES)} or none")
    if state and not (len(state) == 2 and state.isascii() and state.isalpha() and state.isupper()):
        raise DirectoryError(f"{where}: state {state!r} is not a two-letter code")
    if state and not schedule:
        raise DirectoryError(f"{where}: a state's addition needs its schedule")
    return Drug(ndc, schedule, product, state)


def read_list(text: str, state: str | None = None, name: str = LIST_FILE) -> list[Drug]:
    """Rows of a directory file; with ``state``, federal rows plus that state's additions."""
    lines = text.splitlines()
    _header(lines, name)
    wanted = {"", state.upper()} if state is not None else None
    out = []
    for n, cells in enumerate(csv.reader(lines[1:]), start=2):
        if cells:
            drug = _drug(cells, f"{name} line {n}")
            if wanted is None or drug.state in wanted:
                out.append(drug)
    return out


def parse_directory(text: str, state: str, name: str = LIST_FILE) -> Directory:
    """A directory file as `state` sees it. The plain federal rows (most of the file)
    are read without the csv module: an adapter starts in a tenth of a second."""
    lines = text.splitlines()
    _header(lines, name)
    wanted = {"", state.upper()}
    plain: list[int] = []
    drugs: list[Drug] = []
    for n, line in enumerate(lines[1:], start=2):
        if len(line) == 14 and line.endswith(_PLAIN_ROW_END) and ascii_digits(line[:11]):
            plain.append(int(line[:11]))
        elif line:
            drug = _drug(next(csv.reader([line])), f"{name} line {n}")
            if drug.state in wanted:
                drugs.append(drug)
    return Directory(drugs, plain)


def load_file(path: str | Path, state: str) -> Directory:
    """A directory file, cached while it is unchanged: read again once `drugs import`
    rewrote it (so SIGHUP and every command see the new one)."""
    path = Path(path).resolve()
    return _load_file(path, path.stat().st_mtime_ns, state.upper())


@functools.lru_cache(maxsize=16)
def _load_file(path: Path, mtime_ns: int, state: str) -> Directory:
    return parse_directory(read_text(path), state, path.name)


def read_text(path: Path) -> str:
    """A directory file's text; one that is not UTF-8 is a DirectoryError, like a bad row."""
    try:
        return Path(path).read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise DirectoryError(f"{Path(path).name}: not UTF-8 text (byte {exc.start})") from None


def load(state: str = "KY") -> Directory:
    """The shipped directory for ``state`` (federal schedules plus the state's additions)."""
    return load_file(shipped_list_path(), state)


def directory(drug_list: str | None, state: str) -> Directory:
    """The directory every part reads: the `[adapter] drug_list` file when one is set,
    else the shipped one."""
    return load_file(drug_list, state) if drug_list else load(state)


# --- building the list from the FDA NDC Directory ---------------------------------


def state_rules(text: str | None = None) -> list[tuple[str, str, str]]:
    """(state, SUBSTANCE, schedule) rules; the shipped ones by default."""
    if text is None:
        text = resources.files("cashcapture.core.data").joinpath(RULES_FILE).read_text("utf-8")
    rules = []
    for row in csv.DictReader(io.StringIO(text)):
        if row["schedule"] not in SCHEDULES:
            raise ValueError(f"{RULES_FILE}: bad schedule {row['schedule']!r}")
        rules.append((row["state"].upper(), row["substance"].upper(), row["schedule"]))
    return rules


def _fda_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, row) of an FDA tab-separated file; `where` names its file and line."""
    with open(path, encoding=FDA_ENCODING, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, row in enumerate(reader, start=2):
            where = f"{path.name} line {n}"
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{where}: wrong number of columns")
            yield where, row


def _require(path: Path, columns: set[str]) -> None:
    with open(path, encoding=FDA_ENCODING, newline="") as f:
        header = set(f.readline().rstrip("\r\n").split("\t"))
    if missing := columns - header:
        raise ValueError(f"{path.name}: not an FDA NDC file, missing {', '.join(sorted(missing))}")


FdaPair = tuple[Path, Path]  # an FDA product file and its package file


def build(
    product_file: Path,
    package_file: Path,
    rules: list[tuple[str, str, str]] | None = None,
    *,
    more: Iterable[FdaPair] = (),
) -> list[Drug]:
    """The directory from FDA ``product.txt`` and ``package.txt`` (and `more` pairs, such
    as the unfinished drugs' files, whose bulk ingredients compounds are made of): every
    package NDC, federal rows first, then each state's additions, each sorted by NDC."""
    rules = state_rules() if rules is None else rules
    by_substance: dict[str, list[tuple[str, str]]] = {}
    for state, substance, schedule in rules:
        by_substance.setdefault(substance, []).append((state, schedule))
    drugs: dict[tuple[str, str], Drug] = {}
    for product, package in ((product_file, package_file), *more):
        _add_pair(Path(product), Path(package), by_substance, drugs)
    return sorted(drugs.values(), key=lambda d: (d.state, d.ndc11))


def _add_pair(
    product_file: Path,
    package_file: Path,
    by_substance: dict[str, list[tuple[str, str]]],
    drugs: dict[tuple[str, str], Drug],
) -> None:
    _require(product_file, {"PRODUCTID", "DEASCHEDULE", "SUBSTANCENAME"})
    _require(package_file, {"PRODUCTID", "NDCPACKAGECODE"})
    # PRODUCTID -> [(state, schedule, product name)]; a federal "" schedule: not controlled
    classes: dict[str, list[tuple[str, str, str]]] = {}
    for _, row in _fda_rows(product_file):
        federal = row["DEASCHEDULE"].strip()
        if federal not in SCHEDULES:
            federal = NOT_CONTROLLED
        substances = {s.strip().upper() for s in row["SUBSTANCENAME"].split(";")}
        found = [("", federal)]
        if federal == NOT_CONTROLLED:
            found += [pair for s in substances & by_substance.keys() for pair in by_substance[s]]
        classes[row["PRODUCTID"]] = [
            (state, schedule, _product_name(row) if schedule else "") for state, schedule in found
        ]
    for where, row in _fda_rows(package_file):
        try:
            ndc = normalize_ndc(row["NDCPACKAGECODE"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for state, schedule, name in classes.get(row["PRODUCTID"], ()):
            held = drugs.get((state, ndc))
            if held is None or (schedule and not held.schedule):  # a schedule wins
                drugs[(state, ndc)] = Drug(ndc, schedule, name, state)


def _product_name(row: dict[str, str]) -> str:
    """The proprietary name and suffix, else the non-proprietary (the unfinished drugs'
    files have only that one)."""
    parts = (row.get(k, "").strip() for k in ("PROPRIETARYNAME", "PROPRIETARYNAMESUFFIX"))
    return " ".join(p for p in parts if p) or row.get("NONPROPRIETARYNAME", "").strip()


#: How much smaller a new directory may be than the one it replaces before import refuses it.
MAX_SHRINK = 0.05


class ListRefused(ValueError):
    """A new directory that would lose NDCs; one line, the old directory untouched."""


def check_replacement(old: list[Drug], new: list[Drug], max_shrink: float = MAX_SHRINK) -> None:
    """Refuse a directory with no federally controlled product (a truncated or wrong
    file), or one holding more than `max_shrink` fewer controlled NDCs, or fewer NDCs
    at all, than the current one: a controlled NDC dropped is a cash fill no longer
    reported, and any NDC dropped turns its fills from "not controlled" to unknown."""
    if not any(d.controlled and not d.state for d in new):
        raise ListRefused(
            "the new directory holds no controlled product (a truncated or wrong FDA file?); "
            "the directory is unchanged (--force to accept it)"
        )
    for what, count in (("controlled NDCs", _controlled_ndcs), ("NDCs", _ndcs)):
        before, after = count(old), count(new)
        if before and after < before * (1 - max_shrink):
            raise ListRefused(
                f"the new directory would shrink from {before} to {after} {what} "
                f"({1 - after / before:.0%}, more than {max_shrink:.0%}); the directory is "
                "unchanged (--force, or --max-shrink)"
            )


def _controlled_ndcs(drugs: list[Drug]) -> int:
    return len({d.ndc11 for d in drugs if d.controlled})


def _ndcs(drugs: list[Drug]) -> int:
    return len({d.ndc11 for d in drugs})


def write_list(drugs: Iterable[Drug], path: Path) -> int:
    """Write a directory file (atomically); returns the number of rows."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(LIST_COLUMNS)
        for d in drugs:
            writer.writerow((d.ndc11, d.schedule, d.state, d.product))
            count += 1
        f.flush()
        os.fsync(f.fileno())  # on disk before it replaces the directory in use
    tmp.replace(path)
    _load_file.cache_clear()
    return count


def shipped_list_path() -> Path:
    """Where the shipped directory lives in this installation (what `drugs import`
    refreshes)."""
    return Path(str(resources.files("cashcapture.core.data").joinpath(LIST_FILE)))
