"""The capture store: models, engines, migrations, repository functions, group commit.

Public here: what callers use, including the `BatchUnit` contract (a unit
gets the `FillRow`s found for its `FillKey`s and notes its rows in a
`Writes`, whose methods return `Ref`s). The machinery behind group commit
(`repo.find_fills`, `repo.write_batch`, `repo.insert_many`, `repo.StaleFill`,
`engine.WriterLock`) is internal on purpose: only the committer calls it, in
the transaction and lock it holds; tests and benchmarks import it from the
submodules.
"""

from cashcapture.core.configfile import DEFAULT_URL, ENV_VAR
from cashcapture.core.store.engine import (
    make_engine,
    resolve_url,
    session_factory,
    writer_engine,
)
from cashcapture.core.store.groupcommit import BatchUnit, GroupCommitter
from cashcapture.core.store.migrate import upgrade
from cashcapture.core.store.models import (
    Base,
    Claim,
    Fill,
    FillIngredient,
    Pharmacy,
    RecordReject,
    StateFileCount,
    Submission,
    SubmissionRecord,
)
from cashcapture.core.store.repo import (
    DuplicateFill,
    FillKey,
    FillRow,
    Ref,
    Writes,
    add_record,
    claim_answered_with,
    claim_hash,
    fills_to_report,
    find_claim_by_hash,
    find_pharmacy,
    is_duplicate_fill_error,
    mark_fills_reported,
    registered_states,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "BatchUnit",
    "Base",
    "Claim",
    "DuplicateFill",
    "Fill",
    "FillIngredient",
    "FillKey",
    "FillRow",
    "GroupCommitter",
    "Pharmacy",
    "RecordReject",
    "Ref",
    "StateFileCount",
    "Submission",
    "SubmissionRecord",
    "Writes",
    "add_record",
    "claim_answered_with",
    "claim_hash",
    "fills_to_report",
    "find_claim_by_hash",
    "find_pharmacy",
    "registered_states",
    "is_duplicate_fill_error",
    "make_engine",
    "mark_fills_reported",
    "resolve_url",
    "session_factory",
    "upgrade",
    "writer_engine",
]
