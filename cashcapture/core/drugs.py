"""Which NDCs are reportable controlled substances.

The shipped list (``data/controlled_ndcs.csv``) is built from the FDA NDC
Directory's product and package files by `build` (``cashcapture drugs import``):
every package of a product whose DEASCHEDULE is CII to CV, keyed by its
11-digit NDC, plus per-state additions found by substance name from the rules
in ``data/state_schedules.csv`` (Kentucky: gabapentin, schedule V). Rows with a
blank state are federal; a state row applies only to that state.

Schedules are kept as the FDA writes them: "CII", "CIII", "CIV", "CV".
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cashcapture.core.ids import ascii_digits

SCHEDULES = ("CII", "CIII", "CIV", "CV")
LIST_FILE = "controlled_ndcs.csv"
RULES_FILE = "state_schedules.csv"
LIST_COLUMNS = ("ndc11", "schedule", "state", "product")
FDA_ENCODING = "latin-1"  # the FDA text files are not UTF-8

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
    schedule: str  # CII, CIII, CIV or CV
    product: str
    state: str = ""  # "" = federally scheduled, else the state that schedules it

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


class DrugList:
    """Look-up of reportable controlled substances by NDC."""

    def __init__(self, drugs: Iterable[Drug]) -> None:
        self._by_ndc = {d.ndc11: d for d in drugs}

    def __len__(self) -> int:
        return len(self._by_ndc)

    def __iter__(self) -> Iterator[Drug]:
        return iter(self._by_ndc.values())

    def lookup(self, ndc: str) -> Drug | None:
        """The drug for an NDC in any accepted form; None when not reportable or not an NDC."""
        try:
            candidates = ndc_candidates(ndc)
        except ValueError:
            return None
        for candidate in candidates:
            if (drug := self._by_ndc.get(candidate)) is not None:
                return drug
        return None

    def is_reportable(self, ndc: str) -> bool:
        return self.lookup(ndc) is not None


def read_list(text: str, state: str | None = None) -> list[Drug]:
    """Rows of a list file; with ``state``, federal rows plus that state's additions."""
    rows = csv.DictReader(io.StringIO(text))
    wanted = {"", state.upper()} if state is not None else None
    return [
        Drug(r["ndc11"], r["schedule"], r["product"], r["state"])
        for r in rows
        if wanted is None or r["state"] in wanted
    ]


@functools.cache
def load(state: str = "KY") -> DrugList:
    """The shipped list for ``state`` (federal schedules plus the state's additions)."""
    text = resources.files("cashcapture.core.data").joinpath(LIST_FILE).read_text("utf-8")
    return DrugList(read_list(text, state))


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


def _fda_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding=FDA_ENCODING, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{path.name} line {n}: wrong number of columns")
            yield row


def _require(path: Path, columns: set[str]) -> None:
    with open(path, encoding=FDA_ENCODING, newline="") as f:
        header = set(f.readline().rstrip("\r\n").split("\t"))
    if missing := columns - header:
        raise ValueError(f"{path.name}: not an FDA NDC file, missing {', '.join(sorted(missing))}")


def build(
    product_file: Path, package_file: Path, rules: list[tuple[str, str, str]] | None = None
) -> list[Drug]:
    """The list from FDA ``product.txt`` and ``package.txt``, sorted by state and NDC."""
    product_file, package_file = Path(product_file), Path(package_file)
    _require(product_file, {"PRODUCTID", "DEASCHEDULE", "SUBSTANCENAME", "PROPRIETARYNAME"})
    _require(package_file, {"PRODUCTID", "NDCPACKAGECODE"})
    rules = state_rules() if rules is None else rules
    by_substance: dict[str, list[tuple[str, str]]] = {}
    for state, substance, schedule in rules:
        by_substance.setdefault(substance, []).append((state, schedule))

    # PRODUCTID -> [(state, schedule, product name)]
    scheduled: dict[str, list[tuple[str, str, str]]] = {}
    for row in _fda_rows(product_file):
        name = (
            " ".join(
                p
                for p in (row["PROPRIETARYNAME"].strip(), row["PROPRIETARYNAMESUFFIX"].strip())
                if p
            )
            or row["NONPROPRIETARYNAME"].strip()
        )
        federal = row["DEASCHEDULE"].strip()
        if federal in SCHEDULES:
            scheduled[row["PRODUCTID"]] = [("", federal, name)]
            continue
        substances = {s.strip().upper() for s in row["SUBSTANCENAME"].split(";")}
        for substance in substances & by_substance.keys():
            for state, schedule in by_substance[substance]:
                scheduled.setdefault(row["PRODUCTID"], []).append((state, schedule, name))

    drugs: dict[tuple[str, str], Drug] = {}
    for row in _fda_rows(package_file):
        for state, schedule, name in scheduled.get(row["PRODUCTID"], ()):
            ndc = normalize_ndc(row["NDCPACKAGECODE"])
            drugs.setdefault((state, ndc), Drug(ndc, schedule, name, state))
    return sorted(drugs.values(), key=lambda d: (d.state, d.ndc11))


#: How much smaller a new list may be than the one it replaces before import refuses it.
MAX_SHRINK = 0.05


class ListRefused(ValueError):
    """A new list that would lose reportable NDCs; one line, the old list untouched."""


def check_replacement(old: list[Drug], new: list[Drug], max_shrink: float = MAX_SHRINK) -> None:
    """Refuse a list with no federally controlled product (a truncated or wrong file) or
    one that would drop more than `max_shrink` of the NDCs the current list holds: every
    NDC dropped is a controlled cash fill no longer reported."""
    if not any(not d.state for d in new):
        raise ListRefused(
            "the new list holds no controlled product (a truncated or wrong FDA file?); "
            "the list is unchanged (--force to accept it)"
        )
    if old and len(new) < len(old) * (1 - max_shrink):
        drop = 1 - len(new) / len(old)
        raise ListRefused(
            f"the new list would shrink from {len(old)} to {len(new)} NDCs ({drop:.0%}, more "
            f"than {max_shrink:.0%}); the list is unchanged (--force, or --max-shrink)"
        )


def write_list(drugs: Iterable[Drug], path: Path) -> int:
    """Write a list file (atomically); returns the number of rows."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(LIST_COLUMNS)
        for d in drugs:
            writer.writerow((d.ndc11, d.schedule, d.state, d.product))
            count += 1
    tmp.replace(path)
    load.cache_clear()
    return count


def shipped_list_path() -> Path:
    """Where the shipped list lives in this installation (what `drugs import` refreshes)."""
    return Path(str(resources.files("cashcapture.core.data").joinpath(LIST_FILE)))
