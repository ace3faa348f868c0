"""The screens each side sees when its call session closes (R-C4, R-C6, R-C7, R-C9).

Pure text: the machine puts them in its ``Send`` effects.
"""

from __future__ import annotations

from signalling.model import CALL_UNAVAILABLE_FOR_CLIENT, CallState, Role
from signalling.protocol import CallEnded, EndReason


def ended_screen(state: CallState, role: Role, reason: EndReason) -> CallEnded:
    """R-C4: the clinician's "appointment has ended"; the client's, with the practice phone."""
    if role is Role.CLINICIAN:
        title, message = _CLINICIAN_SCREENS[reason]
        return CallEnded(reason=reason, your_role=role, title=title, message=message)
    title = _CLIENT_TITLES[reason]
    phone = (state.practice_phone or "").strip()
    if reason == "closed":
        # R-C9: nothing ended; the same link works at the next opening.
        return CallEnded(
            reason=reason,
            your_role=role,
            title=title,
            message="Your clinician has closed the waiting room for now. Your link still "
            "works: open it again at your appointment time.",
        )
    if phone:
        return CallEnded(
            reason=reason,
            your_role=role,
            title=title,
            message="If you have any issues, please phone the practice.",
            practice_phone=phone,
        )
    # No phone number in the practice settings: no phone line at all (R-C4).
    return CallEnded(
        reason=reason,
        your_role=role,
        title=title,
        message="If you have any issues, please contact the practice.",
    )


_CLINICIAN_SCREENS: dict[EndReason, tuple[str, str]] = {
    "ended": ("Appointment has ended", "The video consultation has ended."),
    "abandoned": (
        "Appointment abandoned",
        "The link is no longer active. Rebook the appointment to issue a new link.",
    ),
    "closed": (
        "Waiting room closed",
        "No call took place. The client's link still works: Switch to Video again when "
        "you are ready.",
    ),
}
_CLIENT_TITLES: dict[EndReason, str] = {
    "ended": "Your appointment has ended",
    "abandoned": CALL_UNAVAILABLE_FOR_CLIENT,
    "closed": "The waiting room is closed",
}
