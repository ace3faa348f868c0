"""An outbox worker in its own OS process, for the race test.

``python -m tests.diary_worker_main DATABASE_URL SMTP_PORT SECRET_KEY`` sends due messages
until none is left scheduled, then prints how many passes it made and exits.
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg

from server.config import Config, OutboxConfig, SmtpConfig
from server.diary.worker import OutboxWorker


async def _main(database_url: str, smtp_port: int, secret_key: str) -> int:
    config = Config(
        database_url=database_url,
        secret_key=secret_key,
        public_url="http://127.0.0.1:8080",
        smtp=SmtpConfig(host="127.0.0.1", port=smtp_port, sender="practice@videoconsult.test"),
        outbox=OutboxConfig(poll_seconds=0.05, lease_seconds=10.0, retry_base_seconds=0.2),
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    handled = 0
    deadline = time.monotonic() + 30
    try:
        worker = OutboxWorker.from_config(pool, config)
        while time.monotonic() < deadline:
            handled += await worker.send_due()
            left = await pool.fetchval(
                "SELECT count(*) FROM outbox_messages WHERE status = 'scheduled'"
                " AND next_attempt_at <= now()"
            )
            if left == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await pool.close()
    print(handled)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
