"""Configuration from the environment and CLI flags, validated once at start-up.

Every setting has one name; the environment variable is that name upper-cased and the CLI
flag is that name with dashes (``--database-url``). A bad value raises ``ConfigError`` naming
the variable and what is wrong, before anything is started.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    use_tls: bool = False
    start_tls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "videoconsult@localhost"


@dataclass(frozen=True)
class OutboxConfig:
    """The worker that sends queued client messages (one runs in every node)."""

    enabled: bool = True
    poll_seconds: float = 2.0
    max_attempts: int = 8
    # Back-off before retry n is retry_base_seconds * 2**(n-1), capped at an hour.
    retry_base_seconds: float = 30.0
    # How long a claimed message is a worker's own; longer than one send can take.
    lease_seconds: float = 120.0


SMS_PROVIDERS = ("log",)
EMAIL_PROVIDERS = ("smtp", "log")


@dataclass(frozen=True)
class CallsConfig:
    """The call engine (server/calls): node heartbeats, metering, client call tokens."""

    # A node renews its heartbeat key this often; the key lives node_ttl_seconds, so a node
    # that stops (crash, kill -9) is known dead, and its calls taken over, within that time.
    heartbeat_seconds: float = 3.0
    node_ttl_seconds: float = 10.0
    # How often metered seconds are written to the ledger (at most 2 s: R-M10 loses at most
    # this much on a crash).
    meter_flush_seconds: float = 1.0
    # Lifetime of the JWT a client's link buys; reconnecting later goes through the link.
    call_token_ttl_seconds: int = 900
    # How often open calls nobody came back to (appointment ended more than
    # link_grace_minutes ago) are closed, so they stop holding minutes (R-M7).
    unattended_sweep_seconds: float = 45.0


@dataclass(frozen=True)
class MediaConfig:
    """ICE for the call's media legs (server/calls/media_control.py, media/ice.py)."""

    # STUN servers given to browsers (and used by the server's own legs to learn their
    # public address); e.g. ("stun:stun.example.org:3478",).
    stun_urls: tuple[str, ...] = ()
    # TURN servers for browsers behind restrictive networks, with time-limited credentials
    # in coturn's use-auth-secret scheme (turn_secret = coturn's static-auth-secret).
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    # TURN checks the credential on every allocation refresh, so it must outlive the call.
    turn_credential_ttl_seconds: int = 6 * 3600
    # The node's public IPv4 address when it sits behind a 1:1 NAT (e.g. a cloud VM):
    # advertised in our answers instead of the private host address.
    public_ip: str | None = None


@dataclass(frozen=True)
class PaymentsConfig:
    """Payment providers for buying video minutes (server/wallet/payments)."""

    # "sandbox" confirms every purchase at once (demo); "live" uses GoCardless and PayPal.
    mode: str = "sandbox"
    gocardless_base_url: str = "https://api.gocardless.com"
    gocardless_access_token: str | None = None
    gocardless_webhook_secret: str | None = None
    paypal_base_url: str = "https://api-m.paypal.com"
    paypal_client_id: str | None = None
    paypal_client_secret: str | None = None
    paypal_webhook_id: str | None = None
    timeout_seconds: float = 10.0
    reconcile_interval_seconds: float = 60.0

    @property
    def gocardless_configured(self) -> bool:
        return bool(self.gocardless_access_token and self.gocardless_webhook_secret)

    @property
    def paypal_configured(self) -> bool:
        return bool(self.paypal_client_id and self.paypal_client_secret and self.paypal_webhook_id)


@dataclass(frozen=True)
class Config:
    # Connections. None means "start embedded servers in data_dir".
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "vc:"
    data_dir: Path = Path(".videoconsult")
    # Connections each node holds open. A request that finds every Redis connection busy
    # waits up to pool_wait_seconds for one, then gets 503 "busy, retry" (never a 500);
    # PostgreSQL requests queue for a connection in order (asyncpg's pool).
    database_pool_size: int = 20
    # Every SQL statement of this node (requests and background work) ends within this.
    database_statement_timeout_seconds: float = 10.0
    redis_max_connections: int = 100
    pool_wait_seconds: float = 5.0

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # empty: http://HOST:PORT
    max_body_bytes: int = 64 * 1024
    # Provider callbacks carry batches (a GoCardless batch of 400 events is ~67 KB).
    webhook_max_body_bytes: int = 1024 * 1024
    drain_seconds: float = 5.0
    node_id: str = field(default_factory=lambda: "node-" + secrets.token_hex(4))

    # Secrets. secret_key signs sessions and derives video links; keep it out of the database.
    secret_key: str = ""
    session_ttl_seconds: int = 12 * 3600
    cookie_secure: bool = False

    # Login throttling: failures allowed per window, per account and per address.
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20
    login_failure_window_seconds: int = 900

    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    sms_provider: str = "log"  # only "log" (development) so far
    email_provider: str = "smtp"  # "log" writes mail to the log (the demo's default)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    # A client's link stays checkable this long after the appointment's end, then is "past".
    link_grace_minutes: int = 120
    log_format: str = "text"  # "text" for people, "json" for production log collectors

    @property
    def base_url(self) -> str:
        """The URL people reach this node at, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def jwt_issuer(self) -> str:
        return self.base_url


# name -> (parser, help). Kept in one table so env, CLI and docs cannot drift apart.
def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name.upper()}: expected true or false, got {raw!r}")


def _parse_int(name: str, raw: str, minimum: int = 0, maximum: int = 2**31) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name.upper()}: expected a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name.upper()}: must be between {minimum} and {maximum}, got {value}")
    return value


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name.upper()}: expected a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name.upper()}: must not be negative, got {value}")
    return value


def _parse_choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        wanted = " or ".join(allowed) if len(allowed) < 3 else "one of " + ", ".join(allowed)
        raise ConfigError(f"{name.upper()}: expected {wanted}, got {raw!r}")
    return raw


def _check_url(name: str, raw: str, schemes: set[str]) -> str:
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{name.upper()}: malformed URL ({exc})") from None
    if parts.scheme not in schemes:
        wanted = " or ".join(sorted(schemes))
        raise ConfigError(
            f"{name.upper()}: scheme must be {wanted}, got {parts.scheme or 'none'!r} in {raw!r}"
        )
    if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        raise ConfigError(f"{name.upper()}: no host in {raw!r}")
    return raw


SETTINGS: dict[str, str] = {
    "database_url": "PostgreSQL URL (postgresql://user:pass@host:5432/db); unset = embedded",
    "redis_url": "Redis URL (redis://host:6379/0 or unix:///path/redis.sock); unset = embedded",
    "redis_prefix": "prefix of every Redis key of this deployment",
    "data_dir": "folder for the embedded PostgreSQL and Redis",
    "database_pool_size": "PostgreSQL connections this node holds at most",
    "database_statement_timeout_seconds": "longest any one SQL statement may run; a request "
    "whose query runs longer is answered 503",
    "redis_max_connections": "Redis connections this node holds at most",
    "pool_wait_seconds": "how long a request waits for a free Redis connection before it is "
    "answered 503 busy, retry",
    "host": "address to listen on",
    "port": "port to listen on",
    "public_url": "the URL people reach this server at (links in messages use it)",
    "max_body_bytes": "largest accepted request body",
    "webhook_max_body_bytes": "largest accepted payment provider callback body",
    "drain_seconds": "after SIGTERM, seconds to report not-ready before stopping",
    "node_id": "this node's name in a cluster (default: random)",
    "secret_key": "signs sessions and derives video links (at least 32 characters)",
    "session_ttl_seconds": "staff session lifetime",
    "cookie_secure": "send cookies over HTTPS only (true behind TLS)",
    "login_failures_per_account": "failed logins allowed per account per window",
    "login_failures_per_address": "failed logins allowed per client address per window",
    "login_failure_window_seconds": "login throttling window",
    "smtp_host": "SMTP server host",
    "smtp_port": "SMTP server port",
    "smtp_use_tls": "connect with implicit TLS",
    "smtp_start_tls": "upgrade with STARTTLS",
    "smtp_username": "SMTP user",
    "smtp_password": "SMTP password",
    "smtp_sender": "From address of outgoing mail",
    "sms_provider": "SMS adapter: log (writes messages to the log; development only)",
    "email_provider": "smtp, or log (writes mail to the log; the demo's default)",
    "outbox_worker": "run the outbox worker (client messages) on this node",
    "outbox_poll_seconds": "how often the outbox worker looks for due messages",
    "outbox_max_attempts": "delivery attempts before a message is marked failed",
    "outbox_retry_base_seconds": "first retry delay; doubles each attempt (max one hour)",
    "outbox_lease_seconds": "how long a worker holds a claimed message before others retry it",
    "link_grace_minutes": "minutes after an appointment's end that its link still opens",
    "log_format": "text or json",
    "payments_provider": "sandbox (purchases confirm at once, for demos) or live",
    "gocardless_base_url": "GoCardless API URL (Direct Debit purchases)",
    "gocardless_access_token": "GoCardless access token",
    "gocardless_webhook_secret": "GoCardless webhook endpoint secret (signs callbacks)",
    "paypal_base_url": "PayPal REST API URL",
    "paypal_client_id": "PayPal REST app client id",
    "paypal_client_secret": "PayPal REST app secret",
    "paypal_webhook_id": "PayPal webhook id (for verifying callbacks)",
    "payments_timeout_seconds": "seconds to wait for a payment provider's answer",
    "payments_reconcile_seconds": "how often unsettled purchases are checked with the provider",
    "call_heartbeat_seconds": "how often a node renews its heartbeat (calls are taken over "
    "from nodes whose heartbeat lapses)",
    "call_node_ttl_seconds": "how long a node's heartbeat lasts without renewal",
    "meter_flush_seconds": "how often metered call seconds are written to the ledger (<= 2)",
    "call_token_ttl_seconds": "lifetime of the call token a client's link buys",
    "call_unattended_sweep_seconds": "how often open calls nobody attends, whose appointment "
    "ended more than LINK_GRACE_MINUTES ago, are closed",
    "stun_urls": "comma-separated STUN URLs for browsers and media legs (stun:host:3478)",
    "turn_urls": "comma-separated TURN URLs for browsers (turn:host:3478?transport=udp, "
    "turns:host:5349); needs TURN_SECRET",
    "turn_secret": "coturn's static-auth-secret: signs time-limited TURN credentials "
    "(at least 16 characters)",
    "turn_credential_ttl_seconds": "lifetime of a TURN credential (must outlast a call)",
    "media_public_ip": "this node's public IPv4 address, advertised in media answers when "
    "behind a 1:1 NAT",
}


def load_config(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Config:
    """Build a Config from environment variables, then CLI overrides (which win)."""
    source = dict(os.environ if env is None else env)
    raw: dict[str, str] = {}
    for name in SETTINGS:
        value = source.get(name.upper())
        if value is not None and value != "":
            raw[name] = value
    for name, value in (overrides or {}).items():
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            raw[name] = value
    return _build(raw)


def _build(raw: dict[str, str]) -> Config:
    kwargs: dict[str, object] = {}
    if "database_url" in raw:
        kwargs["database_url"] = _check_url(
            "database_url", raw["database_url"], {"postgres", "postgresql"}
        )
    if "redis_url" in raw:
        kwargs["redis_url"] = _check_url("redis_url", raw["redis_url"], {"redis", "rediss", "unix"})
    for text_name in ("redis_prefix", "host", "node_id"):
        if text_name in raw:
            kwargs[text_name] = raw[text_name]
    if "data_dir" in raw:
        kwargs["data_dir"] = Path(raw["data_dir"])
    if "public_url" in raw:
        kwargs["public_url"] = _check_url("public_url", raw["public_url"], {"http", "https"})
    if "port" in raw:
        kwargs["port"] = _parse_int("port", raw["port"], 0, 65535)
    if "database_pool_size" in raw:
        kwargs["database_pool_size"] = _parse_int(
            "database_pool_size", raw["database_pool_size"], 2, 1000
        )
    if "database_statement_timeout_seconds" in raw:
        limit = _parse_float(
            "database_statement_timeout_seconds", raw["database_statement_timeout_seconds"]
        )
        if not 0.1 <= limit <= 3600:
            raise ConfigError(
                f"DATABASE_STATEMENT_TIMEOUT_SECONDS: must be between 0.1 and 3600, got {limit}"
            )
        kwargs["database_statement_timeout_seconds"] = limit
    if "redis_max_connections" in raw:
        kwargs["redis_max_connections"] = _parse_int(
            "redis_max_connections", raw["redis_max_connections"], 2, 100000
        )
    if "pool_wait_seconds" in raw:
        wait = _parse_float("pool_wait_seconds", raw["pool_wait_seconds"])
        if not 0.1 <= wait <= 120:
            raise ConfigError(f"POOL_WAIT_SECONDS: must be between 0.1 and 120, got {wait}")
        kwargs["pool_wait_seconds"] = wait
    if "max_body_bytes" in raw:
        kwargs["max_body_bytes"] = _parse_int("max_body_bytes", raw["max_body_bytes"], 1024)
    if "webhook_max_body_bytes" in raw:
        kwargs["webhook_max_body_bytes"] = _parse_int(
            "webhook_max_body_bytes", raw["webhook_max_body_bytes"], 1024, 64 * 1024 * 1024
        )
    if "drain_seconds" in raw:
        kwargs["drain_seconds"] = _parse_float("drain_seconds", raw["drain_seconds"])
    if "session_ttl_seconds" in raw:
        kwargs["session_ttl_seconds"] = _parse_int(
            "session_ttl_seconds", raw["session_ttl_seconds"], 60
        )
    for int_name in (
        "login_failures_per_account",
        "login_failures_per_address",
        "login_failure_window_seconds",
    ):
        if int_name in raw:
            kwargs[int_name] = _parse_int(int_name, raw[int_name], 1)
    if "cookie_secure" in raw:
        kwargs["cookie_secure"] = _parse_bool("cookie_secure", raw["cookie_secure"])
    for choice_name, allowed in (
        ("log_format", ("text", "json")),
        ("sms_provider", SMS_PROVIDERS),
        ("email_provider", EMAIL_PROVIDERS),
    ):
        if choice_name in raw:
            kwargs[choice_name] = _parse_choice(choice_name, raw[choice_name], allowed)
    if "secret_key" in raw:
        if len(raw["secret_key"]) < 32:
            raise ConfigError("SECRET_KEY: must be at least 32 characters")
        kwargs["secret_key"] = raw["secret_key"]
    kwargs["smtp"] = _build_smtp(raw)
    if "link_grace_minutes" in raw:
        kwargs["link_grace_minutes"] = _parse_int(
            "link_grace_minutes", raw["link_grace_minutes"], 0, 7 * 24 * 60
        )
    kwargs["outbox"] = _build_outbox(raw)
    kwargs["payments"] = _build_payments(raw)
    kwargs["calls"] = _build_calls(raw)
    kwargs["media"] = _build_media(raw)
    return Config(**kwargs)  # type: ignore[arg-type]


def _build_smtp(raw: dict[str, str]) -> SmtpConfig:
    smtp = SmtpConfig()
    changes: dict[str, object] = {}
    if "smtp_host" in raw:
        changes["host"] = raw["smtp_host"]
    if "smtp_port" in raw:
        changes["port"] = _parse_int("smtp_port", raw["smtp_port"], 1, 65535)
    if "smtp_use_tls" in raw:
        changes["use_tls"] = _parse_bool("smtp_use_tls", raw["smtp_use_tls"])
    if "smtp_start_tls" in raw:
        changes["start_tls"] = _parse_bool("smtp_start_tls", raw["smtp_start_tls"])
    if "smtp_username" in raw:
        changes["username"] = raw["smtp_username"]
    if "smtp_password" in raw:
        changes["password"] = raw["smtp_password"]
    if "smtp_sender" in raw:
        changes["sender"] = raw["smtp_sender"]
    return dataclasses.replace(smtp, **changes)  # type: ignore[arg-type]


def _build_outbox(raw: dict[str, str]) -> OutboxConfig:
    changes: dict[str, object] = {}
    if "outbox_worker" in raw:
        changes["enabled"] = _parse_bool("outbox_worker", raw["outbox_worker"])
    if "outbox_poll_seconds" in raw:
        poll = _parse_float("outbox_poll_seconds", raw["outbox_poll_seconds"])
        if poll < 0.05:
            raise ConfigError(f"OUTBOX_POLL_SECONDS: must be at least 0.05, got {poll}")
        changes["poll_seconds"] = poll
    if "outbox_max_attempts" in raw:
        changes["max_attempts"] = _parse_int(
            "outbox_max_attempts", raw["outbox_max_attempts"], 1, 100
        )
    if "outbox_retry_base_seconds" in raw:
        changes["retry_base_seconds"] = _parse_float(
            "outbox_retry_base_seconds", raw["outbox_retry_base_seconds"]
        )
    if "outbox_lease_seconds" in raw:
        lease = _parse_float("outbox_lease_seconds", raw["outbox_lease_seconds"])
        if lease < 1:
            raise ConfigError(f"OUTBOX_LEASE_SECONDS: must be at least 1, got {lease}")
        changes["lease_seconds"] = lease
    return dataclasses.replace(OutboxConfig(), **changes)  # type: ignore[arg-type]


def _build_calls(raw: dict[str, str]) -> CallsConfig:
    calls = CallsConfig()
    changes: dict[str, object] = {}
    for name, attribute in (
        ("call_heartbeat_seconds", "heartbeat_seconds"),
        ("call_node_ttl_seconds", "node_ttl_seconds"),
        ("meter_flush_seconds", "meter_flush_seconds"),
        ("call_unattended_sweep_seconds", "unattended_sweep_seconds"),
    ):
        if name in raw:
            changes[attribute] = _parse_float(name, raw[name])
    if "call_token_ttl_seconds" in raw:
        changes["call_token_ttl_seconds"] = _parse_int(
            "call_token_ttl_seconds", raw["call_token_ttl_seconds"], 30, 86400
        )
    calls = dataclasses.replace(calls, **changes)  # type: ignore[arg-type]
    if not 0.05 <= calls.heartbeat_seconds <= 60:
        raise ConfigError("CALL_HEARTBEAT_SECONDS: must be between 0.05 and 60")
    if calls.node_ttl_seconds < 2 * calls.heartbeat_seconds:
        raise ConfigError(
            "CALL_NODE_TTL_SECONDS: must be at least twice CALL_HEARTBEAT_SECONDS, "
            "or one late renewal would declare a live node dead"
        )
    if not 0 < calls.meter_flush_seconds <= 2:
        raise ConfigError("METER_FLUSH_SECONDS: must be more than 0 and at most 2")
    if not 1 <= calls.unattended_sweep_seconds <= 3600:
        raise ConfigError("CALL_UNATTENDED_SWEEP_SECONDS: must be between 1 and 3600")
    return calls


def _ice_urls(name: str, raw: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
    urls = tuple(url.strip() for url in raw.split(",") if url.strip())
    for url in urls:
        scheme, _, rest = url.partition(":")
        host = rest.split("?", 1)[0]
        if scheme not in schemes or not host or "/" in host or " " in host:
            wanted = " or ".join(f"{s}:host[:port]" for s in schemes)
            raise ConfigError(f"{name.upper()}: expected {wanted}, got {url!r}")
    return urls


def _build_media(raw: dict[str, str]) -> MediaConfig:
    changes: dict[str, object] = {}
    if "stun_urls" in raw:
        changes["stun_urls"] = _ice_urls("stun_urls", raw["stun_urls"], ("stun", "stuns"))
    if "turn_urls" in raw:
        changes["turn_urls"] = _ice_urls("turn_urls", raw["turn_urls"], ("turn", "turns"))
    if "turn_secret" in raw:
        if len(raw["turn_secret"]) < 16:
            raise ConfigError("TURN_SECRET: must be at least 16 characters")
        changes["turn_secret"] = raw["turn_secret"]
    if "turn_credential_ttl_seconds" in raw:
        changes["turn_credential_ttl_seconds"] = _parse_int(
            "turn_credential_ttl_seconds", raw["turn_credential_ttl_seconds"], 600, 7 * 86400
        )
    if "media_public_ip" in raw:
        try:
            address = ipaddress.IPv4Address(raw["media_public_ip"].strip())
        except ValueError:
            raise ConfigError(
                f"MEDIA_PUBLIC_IP: expected an IPv4 address, got {raw['media_public_ip']!r}"
            ) from None
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            raise ConfigError(f"MEDIA_PUBLIC_IP: {address} cannot be reached by browsers")
        changes["public_ip"] = str(address)
    media = dataclasses.replace(MediaConfig(), **changes)  # type: ignore[arg-type]
    # TURN URLs without a secret would hand browsers servers they cannot log in to, and a
    # secret without URLs is a typo somewhere: both or neither.
    if media.turn_urls and not media.turn_secret:
        raise ConfigError("TURN_SECRET: required with TURN_URLS")
    if media.turn_secret and not media.turn_urls:
        raise ConfigError("TURN_URLS: required with TURN_SECRET")
    return media


def _build_payments(raw: dict[str, str]) -> PaymentsConfig:
    changes: dict[str, object] = {}
    mode = _parse_choice(
        "payments_provider", raw.get("payments_provider", "sandbox"), ("sandbox", "live")
    )
    changes["mode"] = mode
    for name in ("gocardless_base_url", "paypal_base_url"):
        if name in raw:
            changes[name] = _check_url(name, raw[name], {"http", "https"}).rstrip("/")
    for name in (
        "gocardless_access_token",
        "gocardless_webhook_secret",
        "paypal_client_id",
        "paypal_client_secret",
        "paypal_webhook_id",
    ):
        if name in raw:
            changes[name] = raw[name]
    if "payments_timeout_seconds" in raw:
        timeout = _parse_float("payments_timeout_seconds", raw["payments_timeout_seconds"])
        if not 0 < timeout <= 120:
            raise ConfigError("PAYMENTS_TIMEOUT_SECONDS: must be more than 0 and at most 120")
        changes["timeout_seconds"] = timeout
    if "payments_reconcile_seconds" in raw:
        changes["reconcile_interval_seconds"] = _parse_float(
            "payments_reconcile_seconds", raw["payments_reconcile_seconds"]
        )
    payments = dataclasses.replace(PaymentsConfig(), **changes)  # type: ignore[arg-type]
    # A provider half set up would take money it cannot confirm: all of its settings or none.
    groups = {
        "GoCardless": ("gocardless_access_token", "gocardless_webhook_secret"),
        "PayPal": ("paypal_client_id", "paypal_client_secret", "paypal_webhook_id"),
    }
    for provider, names in groups.items():
        given = [name for name in names if name in raw]
        if given and len(given) != len(names):
            missing = ", ".join(name.upper() for name in names if name not in raw)
            raise ConfigError(f"{missing}: required with the other {provider} settings")
    if mode == "live" and not (payments.gocardless_configured or payments.paypal_configured):
        raise ConfigError(
            "PAYMENTS_PROVIDER: live needs GOCARDLESS_ACCESS_TOKEN and "
            "GOCARDLESS_WEBHOOK_SECRET, or PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET and "
            "PAYPAL_WEBHOOK_ID"
        )
    return payments
