"""Hypothesis drives long random conversations through the call machine.

The exhaustive test covers every short sequence; this one reaches long ones (many dialogs,
rejoins, stale answers) and checks the same rules across the whole history.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from signalling.effects import DeactivateLink, Effect, FinalMeterReading, StartMeter
from signalling.events import (
    AbandonCall,
    AdmitClient,
    CloseWaitingRoom,
    ConfirmHangup,
    DecideEndRequest,
    Event,
    Join,
    Leave,
    MediaLiveness,
    OpenWaitingRoom,
    RefreshMedia,
    RequestHangup,
)
from signalling.machine import new_call, transition
from signalling.model import IllegalTransition, Phase, Role

roles = st.sampled_from([Role.CLINICIAN, Role.CLIENT])
choices = st.sampled_from(["end", "cancel", "refresh"])
decisions = st.sampled_from(["end", "cancel"])


class CallConversation(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.state = new_call("c")
        self.now = datetime(2024, 1, 1, tzinfo=UTC)
        self.issued = 0
        self.answered: set[str] = set()
        self.deactivations = 0
        self.meter_starts = 0
        self.final_readings = 0
        self.was_admitted = False

    def step(self, event: Event) -> list[Effect] | None:
        self.now += timedelta(milliseconds=250)
        before = self.state
        try:
            self.state, effects = transition(self.state, event, self.now)
        except IllegalTransition:
            assert self.state is before  # refused: nothing changed
            return None
        assert not before.phase.terminal  # R-C5: terminal states accept nothing
        self.deactivations += sum(isinstance(e, DeactivateLink) for e in effects)
        self.meter_starts += sum(isinstance(e, StartMeter) for e in effects)
        self.final_readings += sum(isinstance(e, FinalMeterReading) for e in effects)
        if self.state.phase is Phase.IN_PROGRESS:
            self.was_admitted = True
        if self.state.phase.terminal:
            assert event.actor is Role.CLINICIAN  # R-C2, R-C3: only the clinician ends
        if self.state.phase is Phase.ABANDONED:
            assert not self.was_admitted  # R-C7: abandon only before admission
        return effects

    @rule(actor=roles)
    def open_waiting_room(self, actor: Role) -> None:
        self.step(OpenWaitingRoom(actor))

    @rule(actor=roles)
    def join(self, actor: Role) -> None:
        self.step(Join(actor))

    @rule(actor=roles)
    def leave(self, actor: Role) -> None:  # R-C8
        phase = self.state.phase
        if self.step(Leave(actor)) is not None:
            assert self.state.phase is phase

    @rule(actor=roles, live=st.booleans())
    def media_liveness(self, actor: Role, live: bool) -> None:  # R-M8
        phase = self.state.phase
        if self.step(MediaLiveness(actor, live)) is not None:
            assert self.state.phase is phase

    @rule(actor=roles)
    def admit(self, actor: Role) -> None:
        self.step(AdmitClient(actor))

    @rule(actor=roles)
    def abandon(self, actor: Role) -> None:
        self.step(AbandonCall(actor))

    @rule(actor=roles)
    def close_waiting_room(self, actor: Role) -> None:  # R-C9
        if self.step(CloseWaitingRoom(actor)) is not None:
            assert not self.was_admitted and self.state.phase is Phase.CLOSED

    @rule(actor=roles)
    def refresh(self, actor: Role) -> None:
        phase = self.state.phase
        if self.step(RefreshMedia(actor)) is not None:
            assert self.state.phase is phase

    @rule(target=ids, actor=roles, reuse=st.booleans())
    def request_hangup(self, actor: Role, reuse: bool) -> str:
        confirm_id = "id0" if reuse else f"id{self.issued}"
        self.issued += 1
        was_spent = confirm_id in self.state.spent_ids
        effects = self.step(RequestHangup(actor, confirm_id))
        if was_spent:
            assert effects is None  # R-C1: an id is never issued twice
        return confirm_id

    @rule(actor=roles, confirm_id=st.one_of(ids, st.just("forged")), choice=choices)
    def confirm(self, actor: Role, confirm_id: str, choice: str) -> None:
        effects = self.step(ConfirmHangup(actor, confirm_id, choice))  # type: ignore[arg-type]
        if effects is not None:
            assert confirm_id not in self.answered  # R-C1: a confirm id works once
            self.answered.add(confirm_id)

    @rule(actor=roles, request_id=st.one_of(ids, st.just("forged")), decision=decisions)
    def decide(self, actor: Role, request_id: str, decision: str) -> None:
        key = "decision:" + request_id
        effects = self.step(DecideEndRequest(actor, request_id, decision))  # type: ignore[arg-type]
        if effects is not None:
            assert actor is Role.CLINICIAN
            assert key not in self.answered
            self.answered.add(key)

    @invariant()
    def link_deactivated_once_when_closed(self) -> None:  # R-C5, R-C7, R-C9
        kills_link = self.state.phase in (Phase.ENDED, Phase.ABANDONED)
        assert self.deactivations == (1 if kills_link else 0)

    @invariant()
    def metering_brackets_the_call(self) -> None:  # R-M8
        assert self.meter_starts == (1 if self.was_admitted else 0)
        assert self.final_readings == (1 if self.state.phase is Phase.ENDED else 0)

    @invariant()
    def billable_only_when_live_with_both(self) -> None:  # R-M8
        if self.state.billable:
            assert self.state.phase is Phase.IN_PROGRESS
            assert self.state.live == {Role.CLINICIAN, Role.CLIENT}


CallConversation.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestCallConversation = CallConversation.TestCase


class ClientOnly(RuleBasedStateMachine):
    """R-C3: after the clinician set the call up, nothing the client sends ever ends it."""

    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2024, 1, 1, tzinfo=UTC)
        self.state = new_call("c")
        for event in (OpenWaitingRoom(Role.CLINICIAN), Join(Role.CLIENT), Join(Role.CLINICIAN)):
            self.state, _ = transition(self.state, event, self.now)
        self.issued = 0

    def send(self, event: Event) -> None:
        with contextlib.suppress(IllegalTransition):
            self.state, _ = transition(self.state, event, self.now)

    @rule()
    def clinician_admits(self) -> None:  # the only clinician move: start the call
        self.send(AdmitClient(Role.CLINICIAN))

    @rule(target=ids)
    def hangup(self) -> str:
        self.issued += 1
        self.send(RequestHangup(Role.CLIENT, f"id{self.issued}"))
        return f"id{self.issued}"

    @rule(confirm_id=ids, choice=choices)
    def confirm(self, confirm_id: str, choice: str) -> None:
        self.send(ConfirmHangup(Role.CLIENT, confirm_id, choice))  # type: ignore[arg-type]

    @rule(request_id=ids, decision=decisions)
    def decide(self, request_id: str, decision: str) -> None:
        self.send(DecideEndRequest(Role.CLIENT, request_id, decision))  # type: ignore[arg-type]

    @rule(event=st.sampled_from([Join, Leave, AbandonCall, AdmitClient, RefreshMedia]))
    def other(self, event: type[Join | Leave | AbandonCall | AdmitClient | RefreshMedia]) -> None:
        self.send(event(Role.CLIENT))

    @invariant()
    def never_over(self) -> None:
        assert not self.state.phase.terminal


ClientOnly.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestClientOnly = ClientOnly.TestCase
