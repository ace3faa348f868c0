"""scripts/deploy as installed: nginx in front of real nodes, coturn, systemd units, check.

The nginx site and coturn config are the kit's own files rendered with test ports, run by
Debian's nginx and coturn; `videoconsult check` is the real command line.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest

from server.config import SETTINGS, Config, load_config
from signalling.protocol import Hello, Snapshot, decode_server_message
from tests.calls_fixtures import book_video
from tests.conftest import TEST_SECRET, ServiceUrls
from tests.deploy_fixtures import (
    CLI,
    DEPLOY,
    node_env,
    running_coturn,
    running_nginx,
    running_nodes,
)
from tests.diary_fixtures import free_port, running_smtp_server
from tests.providers import gocardless_fake, paypal_fake, twilio_fake
from tests.providers.gocardless_fake import FakeGoCardless
from tests.providers.paypal_fake import FakePayPal
from tests.providers.twilio_fake import FakeTwilio
from tests.support import PASSWORD, PracticeFixture

TURN_SECRET = "turn-static-auth-secret-for-tests"
NO_VERIFY = ssl.create_default_context()
NO_VERIFY.check_hostname = False
NO_VERIFY.verify_mode = ssl.CERT_NONE


def test_render_stops_on_a_missing_placeholder() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "render.py"), "nginx-videoconsult.conf"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no value for" in result.stderr and "TLS_CERT" in result.stderr


def test_systemd_units_verify_and_run_real_commands(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("videoconsult")
    units = ["videoconsult@.service", "videoconsult-migrate.service", "videoconsult.target"]
    for unit in units:
        text = (DEPLOY / unit).read_text()
        for command in re.findall(r"^ExecStart=(\S+) (\S+)", text, re.MULTILINE):
            assert command[0] == "/opt/videoconsult/.venv/bin/videoconsult"
            assert command[1] in ("serve", "migrate")
        (tmp_path / unit).write_text(text.replace(
            "/opt/videoconsult/.venv/bin/videoconsult", str(cli)))  # fmt: skip
    shutil.copy(tmp_path / "videoconsult@.service", tmp_path / "videoconsult@8081.service")
    verified = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u) for u in (
            "videoconsult@8081.service", "videoconsult-migrate.service", "videoconsult.target"))],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr


def test_the_example_environment_file_is_a_valid_configuration() -> None:
    lines = (DEPLOY / "videoconsult.env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(env) <= {spec.env for spec in SETTINGS}
    config = load_config(env)
    assert config.cookie_secure and config.base_url == "https://video.example.org"


async def test_nginx_site_serves_real_nodes_over_tls_with_websockets(
    tmp_path: Path,
    services: ServiceUrls,
    database_url: str,
    redis_prefix: str,
    db: asyncpg.Pool,
    practice: PracticeFixture,
) -> None:
    env = node_env(database_url, services.redis, redis_prefix)
    async with running_nodes(2, env) as nodes:
        with running_nginx(tmp_path, nodes) as nginx:
            base = f"https://127.0.0.1:{nginx.https_port}"
            connector = aiohttp.TCPConnector(ssl=NO_VERIFY)
            async with aiohttp.ClientSession(connector=connector) as session:
                await _until_nginx_answers(session, base + "/readyz")
                # Plain HTTP is sent to HTTPS.
                async with session.get(
                    f"http://127.0.0.1:{nginx.http_port}/readyz", allow_redirects=False
                ) as plain:
                    assert plain.status == 301
                    assert plain.headers["Location"].startswith("https://")
                for _ in range(8):
                    async with session.get(base + "/healthz") as alive:
                        assert alive.status == 200
                # Round robin: both nodes answered some of them.
                for node in nodes:
                    async with session.get(node.url + "/metrics") as metrics:
                        text = await metrics.text()
                    assert re.search(
                        r'videoconsult_http_requests_total\{method="GET",route="/healthz",'
                        r'status="200"\} [1-9]',
                        text,
                    ), node.url
                # A client's link and its call socket, through TLS and the upgrade.
                booked = await book_video(db, practice, Config(secret_key=TEST_SECRET))
                async with session.post(f"{base}/api/links/{booked.link_token}/join") as join:
                    assert join.status == 200, await join.text()
                    token = (await join.json())["token"]
                ws_url = f"wss://127.0.0.1:{nginx.https_port}/ws/appointments/"
                async with session.ws_connect(
                    f"{ws_url}{booked.appointment_id}/call", params={"token": token}
                ) as ws:
                    await ws.send_str(msgspec.json.encode(Hello(v=1)).decode())
                    first = decode_server_message((await ws.receive(timeout=10)).data)
                    assert isinstance(first, Snapshot) and first.phase == "scheduled"


async def test_behind_the_kits_nginx_the_login_throttle_counts_each_clients_address(
    tmp_path: Path,
    services: ServiceUrls,
    database_url: str,
    redis_prefix: str,
    practice: PracticeFixture,
) -> None:
    # The kit's environment file trusts the nginx on the same machine (TRUSTED_PROXIES).
    env = node_env(database_url, services.redis, redis_prefix)
    env.update(TRUSTED_PROXIES="127.0.0.1", LOGIN_FAILURES_PER_ADDRESS="2")
    async with running_nodes(1, env) as nodes:
        with running_nginx(tmp_path, nodes) as nginx:
            base = f"https://127.0.0.1:{nginx.https_port}"

            async def log_in_from(address: str, email: str, password: str, spoof: str) -> int:
                # Each client from a loopback address of its own; nginx connects to the
                # node from 127.0.0.1. The client also writes an X-Forwarded-For of its own.
                connector = aiohttp.TCPConnector(ssl=NO_VERIFY, local_addr=(address, 0))
                async with aiohttp.ClientSession(connector=connector) as session:
                    await _until_nginx_answers(session, base + "/readyz")
                    async with session.post(
                        base + "/api/login",
                        json={"email": email, "password": password},
                        headers={"X-Forwarded-For": spoof},
                    ) as reply:
                        return reply.status

            # A guesser at 127.0.0.2 uses up its address's failures, whatever it claims to be.
            for n in range(2):
                status = await log_in_from(
                    "127.0.0.2", f"nobody{n}@example.test", "wrong-guess", f"198.51.100.{n}"
                )
                assert status == 401
            refused = await log_in_from(
                "127.0.0.2", "nobody9@example.test", "wrong-guess", "198.51.100.9"
            )
            assert refused == 429
            # A clinician at another address is not refused for the guesser's failures.
            clinician = practice.user("clinician").email
            assert await log_in_from("127.0.0.3", clinician, PASSWORD, "127.0.0.2") == 200


async def _until_nginx_answers(session: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                async with session.get(url) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_check_reports_every_service_in_one_line_each(
    tmp_path: Path, services: ServiceUrls, database_url: str
) -> None:
    gocardless, paypal, twilio = FakeGoCardless(), FakePayPal(), FakeTwilio()
    await gocardless.start()
    await paypal.start()
    await twilio.start()
    try:
        with running_smtp_server() as smtp, running_coturn(tmp_path, TURN_SECRET) as turn:
            port, _tls_port = turn
            env = {
                "PATH": "/usr/bin:/bin",
                "DATABASE_URL": database_url,
                "REDIS_URL": services.redis,
                "SMTP_HOST": smtp.host,
                "SMTP_PORT": str(smtp.port),
                "TURN_URLS": f"turn:127.0.0.1:{port}?transport=udp,"
                f"turn:127.0.0.1:{port}?transport=tcp",
                "TURN_SECRET": TURN_SECRET,
                "PAYMENTS_PROVIDER": "live",
                "GOCARDLESS_BASE_URL": gocardless.url,
                "GOCARDLESS_ACCESS_TOKEN": gocardless_fake.ACCESS_TOKEN,
                "GOCARDLESS_WEBHOOK_SECRET": gocardless_fake.WEBHOOK_SECRET,
                "PAYPAL_BASE_URL": paypal.url,
                "PAYPAL_CLIENT_ID": paypal_fake.CLIENT_ID,
                "PAYPAL_CLIENT_SECRET": paypal_fake.CLIENT_SECRET,
                "PAYPAL_WEBHOOK_ID": paypal_fake.WEBHOOK_ID,
                "SMS_PROVIDER": "twilio",
                "TWILIO_BASE_URL": twilio.url,
                "TWILIO_ACCOUNT_SID": twilio_fake.ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": twilio_fake.AUTH_TOKEN,
                "TWILIO_FROM": twilio_fake.SENDER,
            }
            await _until_turn_listens(port)
            good = await _check(env)
            assert good.returncode == 0, good.stdout
            lines = good.stdout.splitlines()
            assert [line.split()[0] for line in lines] == [
                "postgresql", "redis", "smtp", "turn", "payments", "sms"]  # fmt: skip
            assert all(line.split()[1] == "ok" for line in lines), good.stdout
            assert "GoCardless and PayPal" in lines[-2]
            assert "Twilio accepted" in lines[-1]
            # Now everything wrong at once: each says what, in its own line.
            bad = await _check(
                {
                    **env,
                    "DATABASE_URL": database_url.replace("/vc_test_", "/no_such_db_"),
                    "SMTP_PORT": str(_closed_port()),
                    "TURN_URLS": f"turn:127.0.0.1:{_closed_port()}?transport=tcp",
                    "PAYPAL_CLIENT_SECRET": "wrong-secret",
                    "TWILIO_AUTH_TOKEN": "wrong-token",
                }
            )
            assert bad.returncode == 1
            status = {line.split()[0]: line for line in bad.stdout.splitlines()}
            assert "FAILED" in status["postgresql"] and "no_such_db_" in status["postgresql"]
            assert "ok" in status["redis"].split()[1]
            assert "FAILED" in status["smtp"]
            assert "FAILED" in status["turn"]
            assert "FAILED" in status["payments"] and "PayPal" in status["payments"]
            assert "FAILED" in status["sms"] and "TWILIO_AUTH_TOKEN" in status["sms"]
            assert len(bad.stdout.splitlines()) == 6
    finally:
        await gocardless.close()
        await paypal.close()
        await twilio.close()


async def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [*CLI, "check"], capture_output=True, text=True, env=env, timeout=60
    )


def _closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


async def _until_turn_listens(port: int) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
def _tools_installed() -> None:
    for tool in ("nginx", "turnserver", "openssl", "systemd-analyze"):
        assert shutil.which(tool), f"{tool} is installed by .ci/run (Debian package)"
