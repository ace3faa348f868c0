"""A client flooding hang-up requests cannot grow the call's state without bound."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from signalling.events import AdmitClient, ConfirmHangup, Join, OpenWaitingRoom, RequestHangup
from signalling.machine import new_call, transition
from signalling.model import MAX_SPENT_IDS, IllegalTransition, Phase, Role

NOW = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def test_the_spent_ids_stay_bounded_and_only_the_pending_one_is_accepted() -> None:  # R-C1
    state = new_call("call-1", None)
    for event in (
        OpenWaitingRoom(Role.CLINICIAN),
        Join(Role.CLIENT),
        Join(Role.CLINICIAN),
        AdmitClient(Role.CLINICIAN),
    ):
        state, _ = transition(state, event, NOW)
    for n in range(5000):
        state, _ = transition(state, RequestHangup(Role.CLIENT, f"id{n}"), NOW)
    assert len(state.spent_ids) == MAX_SPENT_IDS
    # An old dialog's id stays refused, also once it has left the window.
    for stale in ("id0", "id4998"):
        with pytest.raises(IllegalTransition):
            transition(state, ConfirmHangup(Role.CLIENT, stale, "end"), NOW)
    state, _ = transition(state, ConfirmHangup(Role.CLIENT, "id4999", "cancel"), NOW)
    assert state.phase is Phase.IN_PROGRESS
