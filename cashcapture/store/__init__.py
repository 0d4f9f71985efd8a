"""The capture store: models, engines, migrations, repository functions, group commit."""

from .engine import DEFAULT_URL, ENV_VAR, make_engine, resolve_url, session_factory, writer_engine
from .groupcommit import GroupCommitter
from .migrate import upgrade
from .models import (
    Base,
    Claim,
    Fill,
    FillIngredient,
    Pharmacy,
    RecordReject,
    Submission,
    SubmissionRecord,
)
from .repo import (
    DuplicateFill,
    add_record,
    answer_claim,
    claim_hash,
    fills_to_report,
    find_claim_by_hash,
    find_fill,
    find_pharmacy,
    insert_fill,
    is_duplicate_fill_error,
    mark_fills_reported,
    record_claim,
    revise_fill,
    void_fill,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "Base",
    "Claim",
    "DuplicateFill",
    "Fill",
    "FillIngredient",
    "GroupCommitter",
    "Pharmacy",
    "RecordReject",
    "Submission",
    "SubmissionRecord",
    "add_record",
    "answer_claim",
    "claim_hash",
    "fills_to_report",
    "find_claim_by_hash",
    "find_fill",
    "find_pharmacy",
    "insert_fill",
    "is_duplicate_fill_error",
    "make_engine",
    "mark_fills_reported",
    "record_claim",
    "resolve_url",
    "revise_fill",
    "session_factory",
    "upgrade",
    "void_fill",
    "writer_engine",
]
