"""Fill and submission states: the table of moves is the only way to change one."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from cashcapture.core.states import (
    FILL_MOVES,
    SUBMISSION_MOVES,
    FillState,
    IllegalTransition,
    SubmissionState,
    fill_move,
    submission_move,
)
from cashcapture.core.store import repo
from cashcapture.core.store.models import FILL_STATES, SUBMISSION_STATES


@pytest.mark.parametrize("old,new", list(itertools.product(FillState, FillState)))
def test_fill_moves_follow_the_table(old, new):
    if new in FILL_MOVES[old]:
        assert fill_move(old, new) is new
    else:
        with pytest.raises(IllegalTransition):
            fill_move(old, new)


@pytest.mark.parametrize("old,new", list(itertools.product(SubmissionState, SubmissionState)))
def test_submission_moves_follow_the_table(old, new):
    if new in SUBMISSION_MOVES[old]:
        assert submission_move(old, new) is new
    else:
        with pytest.raises(IllegalTransition):
            submission_move(old, new)


def test_the_database_vocabulary_is_the_enums():
    assert set(FILL_STATES) == {"new", "revised", "voided"}
    assert set(SUBMISSION_STATES) == {s.value for s in SubmissionState}


def test_the_store_refuses_a_second_void_and_revives_a_voided_fill_as_revised():
    now = dt.datetime(2025, 1, 15, tzinfo=dt.UTC)
    with pytest.raises(IllegalTransition):
        repo.void_values("voided", 2, "00", now)
    assert repo.void_values("new", 1, "00", now)["state"] == "voided"
    key = (1, "1234567", 0, dt.date(2025, 1, 14))
    assert repo.revision_values(key, "voided", 2, {}, None, now)["state"] == "revised"
    with pytest.raises(IllegalTransition):
        repo.revision_values(key, "uploaded", 2, {}, None, now)  # not a fill state at all
