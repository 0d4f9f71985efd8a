"""The life of a fill and of a submission: states as types, moves as a table.

A move outside the table raises `IllegalTransition`: a bug, never a user error.
Both enums are `StrEnum`s, so the database keeps plain short strings (the CHECK
constraints list the same values) and comparisons with stored strings hold.
"""

from __future__ import annotations

from enum import StrEnum


class FillState(StrEnum):
    NEW = "new"  # captured, as first billed
    REVISED = "revised"  # rebilled (B3), corrected, or billed again after its reversal
    VOIDED = "voided"  # reversed (B2)


class SubmissionState(StrEnum):
    WRITTEN = "written"  # a file in the outbox, checked, not yet sent
    UPLOADING = "uploading"  # sent under the temporary name; the rename may not have happened
    UPLOADED = "uploaded"  # on the collector's server under its final name
    PROCESSED = "processed"  # kept for databases written before the state's verdict column
    FAILED = "failed"  # a file-level error of our own validator: never sent


class IllegalTransition(RuntimeError):
    """A state change the table does not allow."""


FILL_MOVES: dict[FillState, frozenset[FillState]] = {
    FillState.NEW: frozenset({FillState.REVISED, FillState.VOIDED}),
    FillState.REVISED: frozenset({FillState.REVISED, FillState.VOIDED}),
    FillState.VOIDED: frozenset({FillState.REVISED}),  # a B1 of the same key after its B2
}

SUBMISSION_MOVES: dict[SubmissionState, frozenset[SubmissionState]] = {
    SubmissionState.WRITTEN: frozenset({SubmissionState.UPLOADING, SubmissionState.UPLOADED}),
    SubmissionState.UPLOADING: frozenset({SubmissionState.UPLOADED}),
    SubmissionState.UPLOADED: frozenset({SubmissionState.PROCESSED}),
    SubmissionState.PROCESSED: frozenset(),
    SubmissionState.FAILED: frozenset(),
}


def fill_move(old: str, new: FillState) -> FillState:
    """``new`` if a fill in state ``old`` may move there, else IllegalTransition."""
    if new not in FILL_MOVES.get(old, ()):  # type: ignore[call-overload]  # str keys
        raise IllegalTransition(f"fill: {old} -> {new} is not allowed")
    return new


def submission_move(old: str, new: SubmissionState) -> SubmissionState:
    """``new`` if a submission in state ``old`` may move there, else IllegalTransition."""
    if new not in SUBMISSION_MOVES.get(old, ()):  # type: ignore[call-overload]  # str keys
        raise IllegalTransition(f"submission: {old} -> {new} is not allowed")
    return new
