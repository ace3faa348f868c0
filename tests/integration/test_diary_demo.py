"""The demo practice comes with a week of video appointments, booked once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from server.demo import seed_demo


async def test_demo_books_a_single_appointment_and_a_weekly_series_once(
    db: asyncpg.Pool,
) -> None:
    await seed_demo(db)
    await seed_demo(db)
    rows = await db.fetch(
        """SELECT a.clinician_id, a.series_id, a.status, a.starts_at, l.state
           FROM appointments a JOIN video_links l ON l.appointment_id = a.id"""
    )
    # Each of the two demo clinicians: one appointment within minutes (its waiting room may
    # open at once, R-C9), one tomorrow + a six-week series.
    assert len(rows) == 16
    assert len({r["clinician_id"] for r in rows}) == 2
    assert sum(1 for r in rows if r["series_id"] is None) == 4
    soon = [r for r in rows if r["starts_at"] <= datetime.now(UTC) + timedelta(minutes=15)]
    assert len(soon) == 2
    assert {(r["status"], r["state"]) for r in rows} == {("booked", "active")}
    triggers = {r["trigger"] for r in await db.fetch("SELECT trigger FROM outbox_messages")}
    assert {"video_appointment_booked", "recurring_video_appointment_booked"} <= triggers
