"""The real command line: concurrent migrations, SIGTERM draining, the demo and its restart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from server.db import discover_migrations, dsn_with_database
from server.embedded import postmaster_pid, process_alive
from tests.conftest import TEST_SECRET, ServiceUrls

CLI = [sys.executable, "-m", "server.cli"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["PYTHONUNBUFFERED"] = "1"
    env["WORKERS"] = "1"  # one node process (the default is one per core)
    return env


async def _read_until(stream: asyncio.StreamReader, pattern: str) -> str:
    """Lines read so far, once one of them matches ``pattern`` (within a minute)."""
    seen = ""
    async with asyncio.timeout(60):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"process ended before {pattern!r}; output:\n{seen}")
            seen += line
            if re.search(pattern, line):
                return seen


async def test_two_processes_migrating_at_once_apply_each_migration_once(
    services: ServiceUrls,
) -> None:
    name = "vc_migrate_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(services.postgres_admin)
    await admin.execute(f"CREATE DATABASE {name}")
    url = dsn_with_database(services.postgres_admin, name)
    try:
        procs = [
            await asyncio.create_subprocess_exec(
                *CLI,
                "migrate",
                "--database-url",
                url,
                env=_env(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        outputs = [await proc.communicate() for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        applied = [
            json.loads(out.decode().strip().splitlines()[-1])["applied"] for out, _ in outputs
        ]
        expected = [m.name for m in discover_migrations()]
        # Exactly one process applied everything; the other found nothing left to do.
        assert sorted(applied, key=len) == [[], expected]
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [r["version"] for r in rows] == [m.version for m in discover_migrations()]
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_sigterm_turns_readiness_off_before_stopping(
    database_url: str, services: ServiceUrls, redis_prefix: str
) -> None:
    # R-A2
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--database-url",
        database_url,
        "--redis-url",
        services.redis,
        "--redis-prefix",
        redis_prefix,
        "--secret-key",
        TEST_SECRET,
        "--port",
        "0",
        "--drain-seconds",
        "3",
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        started = await _read_until(proc.stdout, r"listening on http://")
        url = re.findall(r"listening on (http://\S+)", started)[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/readyz") as response:
                assert response.status == 200
            proc.send_signal(signal.SIGTERM)
            for _ in range(100):
                async with session.get(url + "/readyz") as response:
                    if response.status == 503:
                        assert (await response.json())["reasons"] == ["draining"]
                        break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("readiness never turned off after SIGTERM")
            async with session.get(url + "/healthz") as response:
                assert response.status == 200  # still serving while draining
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _start_demo(data_dir: Path) -> tuple[asyncio.subprocess.Process, str, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "demo",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = await _read_until(proc.stdout, r"Ctrl-C stops it")
    url = re.findall(r"demo running at (http://\S+)", output)[0]
    emails = re.findall(r"(\S+@demo\.videoconsult\.test)", output)
    passwords = set(re.findall(r"password: (\S+)", output))
    assert len(emails) == 3 and len(passwords) == 1
    return proc, url, [*emails, passwords.pop()]


async def _demo_logins_work(url: str, emails_and_password: list[str]) -> None:
    *emails, password = emails_and_password
    async with aiohttp.ClientSession() as session:
        for email in emails:
            async with session.post(
                url + "/api/login", json={"email": email, "password": password}
            ) as response:
                assert response.status == 200, await response.text()
                token = (await response.json())["token"]
            async with session.get(
                url + "/api/me", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert (await response.json())["user"]["email"] == email


async def test_demo_runs_logs_in_and_recovers_from_a_killed_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    proc, url, logins = await _start_demo(data_dir)
    try:
        await _demo_logins_work(url, logins)
        owner = json.loads((data_dir / "owner.json").read_text())
        stale_postgres = postmaster_pid(data_dir / "postgres")
        stale_redis = owner["redis_pid"]
        assert stale_postgres and process_alive(stale_postgres) and process_alive(stale_redis)
        # A killed run leaves its servers behind ...
        proc.kill()
        await proc.wait()
        assert process_alive(stale_postgres) and process_alive(stale_redis)
        # ... and the next start stops them and starts afresh, with the same data.
        proc, url, logins = await _start_demo(data_dir)
        assert not process_alive(stale_redis)
        assert postmaster_pid(data_dir / "postgres") != stale_postgres
        await _demo_logins_work(url, logins)
        # Ctrl-C stops everything the demo started.
        postgres_pid = postmaster_pid(data_dir / "postgres")
        redis_pid = json.loads((data_dir / "owner.json").read_text())["redis_pid"]
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        assert postgres_pid is not None and not process_alive(postgres_pid)
        assert not process_alive(redis_pid)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in filter(None, [postmaster_pid(data_dir / "postgres")]):
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
