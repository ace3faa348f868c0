"""The demo practice comes with a week of video appointments, booked once."""

from __future__ import annotations

import asyncpg

from server.demo import seed_demo


async def test_demo_books_a_single_appointment_and_a_weekly_series_once(
    db: asyncpg.Pool,
) -> None:
    await seed_demo(db)
    await seed_demo(db)
    rows = await db.fetch(
        """SELECT a.series_id, a.status, l.state FROM appointments a
           JOIN video_links l ON l.appointment_id = a.id"""
    )
    assert len(rows) == 7  # one single appointment + a six-week series
    assert sum(1 for r in rows if r["series_id"] is None) == 1
    assert {(r["status"], r["state"]) for r in rows} == {("booked", "active")}
    triggers = {r["trigger"] for r in await db.fetch("SELECT trigger FROM outbox_messages")}
    assert {"video_appointment_booked", "recurring_video_appointment_booked"} <= triggers
