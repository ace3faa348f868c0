"""Message templates: placeholders, validation and the two-step rendering (R-B3, R-B5)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.diary.templates import (
    DEFAULTS,
    PLACEHOLDERS,
    AppointmentFacts,
    Channel,
    Template,
    TemplateError,
    Trigger,
    default_template,
    fill_video_link,
    placeholder_values,
    prepare,
    validate,
)

FACTS = AppointmentFacts(
    client_name="Casey {Client}",
    practitioner="Dr Cole",
    starts_at=datetime(2026, 3, 30, 9, 0, tzinfo=UTC),  # 10:00 in London (summer time)
    practice_name="Northside Therapy",
    practice_phone="01632 960000",
    timezone="Europe/London",
)


def test_every_shipped_default_is_valid_and_covers_every_trigger_and_channel() -> None:
    assert set(DEFAULTS) == {(t, c) for t in Trigger for c in Channel}
    for (trigger, channel), (subject, body) in DEFAULTS.items():
        validate(trigger, channel, subject, body)


def test_link_triggers_offer_video_link_and_cancellation_does_not() -> None:
    assert "video_link" in PLACEHOLDERS[Trigger.VIDEO_APPOINTMENT_BOOKED]
    assert "video_link" in PLACEHOLDERS[Trigger.RECURRING_VIDEO_APPOINTMENT_BOOKED]
    assert "video_link" in PLACEHOLDERS[Trigger.APPOINTMENT_REMINDER]
    assert "video_link" not in PLACEHOLDERS[Trigger.APPOINTMENT_CANCELLED]


def test_date_and_time_are_in_the_practice_time_zone() -> None:
    # R-B5
    values = placeholder_values(FACTS)
    assert values["date"] == "Monday 30 March 2026"
    assert values["time"] == "10:00"


def test_two_step_rendering_fills_the_link_last_and_keeps_user_braces() -> None:
    template = Template(
        Trigger.APPOINTMENT_REMINDER,
        Channel.EMAIL,
        "Hi {client_name}",
        "{client_name} sees {practitioner} at {time}: {video_link} {{literal}}",
    )
    stored = prepare(template, placeholder_values(FACTS))
    # What the outbox stores has no link yet, only its placeholder.
    assert "{video_link}" in stored.body and "https://" not in stored.body
    final = fill_video_link(stored.body, "https://x.test/v/TOKEN")
    assert final == "Casey {Client} sees Dr Cole at 10:00: https://x.test/v/TOKEN {literal}"
    assert fill_video_link(stored.subject, "unused") == "Hi Casey {Client}"


def test_a_client_name_that_looks_like_a_placeholder_stays_text() -> None:
    facts = AppointmentFacts("{video_link}", "Dr Cole", FACTS.starts_at, "P", None, "Europe/London")
    stored = prepare(
        default_template(Trigger.APPOINTMENT_REMINDER, Channel.EMAIL), placeholder_values(facts)
    )
    final = fill_video_link(stored.body, "LINK")
    assert final.startswith("Dear {video_link},")
    assert final.count("LINK") == 1


def test_unknown_placeholder_is_rejected_naming_it() -> None:
    # R-B5
    with pytest.raises(TemplateError) as raised:
        validate(Trigger.APPOINTMENT_REMINDER, Channel.EMAIL, "Hi", "Dear {first_name}")
    assert raised.value.placeholder == "first_name"
    assert raised.value.field == "body"
    assert "{first_name}" in str(raised.value)


def test_video_link_is_not_offered_in_a_cancellation() -> None:
    with pytest.raises(TemplateError) as raised:
        validate(Trigger.APPOINTMENT_CANCELLED, Channel.SMS, "", "Rejoin at {video_link}")
    assert raised.value.placeholder == "video_link"


@pytest.mark.parametrize(
    ("subject", "body", "field"),
    [
        ("", "body", "subject"),  # email needs a subject
        ("Line\nbreak", "body", "subject"),
        ("x" * 201, "body", "subject"),
        ("Subject", "   ", "body"),
        ("Subject", "Dear {client_name", "body"),  # unclosed brace
        ("Subject", "Dear {client_name!r}", "body"),  # conversions are not allowed
        ("Subject", "Dear {client_name:>20}", "body"),  # nor format specs
        ("Subject", "Dear {client_name.__class__}", "body"),  # nor attribute access
        ("Subject", "Dear {0}", "body"),
        ("Hi {nope}", "body", "subject"),
        ("Subject", "x" * 5001, "body"),
    ],
)
def test_malformed_templates_are_rejected(subject: str, body: str, field: str) -> None:
    with pytest.raises(TemplateError) as raised:
        validate(Trigger.APPOINTMENT_REMINDER, Channel.EMAIL, subject, body)
    assert raised.value.field == field


def test_sms_bodies_are_short() -> None:
    with pytest.raises(TemplateError):
        validate(Trigger.APPOINTMENT_REMINDER, Channel.SMS, "", "x" * 641)
    validate(Trigger.APPOINTMENT_REMINDER, Channel.SMS, "", "x" * 640)
