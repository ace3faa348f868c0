"""Every setting of a node, each declared once: type, default, bounds, help and environment name.

A field whose default is ``setting(...)`` is a setting; its environment variable is the
declared ``env`` and its CLI flag the same name with dashes (``--database-url``). Parsing,
validation, ``--help``, the README's table and ``videoconsult config`` all come from these
declarations (server/settings.py). A bad value raises ``ConfigError`` naming the variable and
what is wrong, before anything is started. Checks that tie several settings together are the
``check_*`` functions at the end.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from server.settings import ConfigError, Setting, build, check_url, setting, settings_of

__all__ = ["SETTINGS", "Config", "ConfigError", "load_config"]

SMS_PROVIDERS = ("log", "twilio")
EMAIL_PROVIDERS = ("smtp", "log")


def _ice_urls(env: str, raw: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
    urls = tuple(url.strip() for url in raw.split(",") if url.strip())
    for url in urls:
        scheme, _, rest = url.partition(":")
        host = rest.split("?", 1)[0]
        if scheme not in schemes or not host or "/" in host or " " in host:
            wanted = " or ".join(f"{s}:host[:port]" for s in schemes)
            raise ConfigError(f"{env}: expected {wanted}, got {url!r}")
    return urls


def _networks(env: str, raw: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks, each normalised (``127.0.0.1/32``)."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{env}: expected addresses or networks, got {item!r}") from None
    return tuple(networks)


def _stun_urls(env: str, raw: str) -> tuple[str, ...]:
    return _ice_urls(env, raw, ("stun", "stuns"))


def _turn_urls(env: str, raw: str) -> tuple[str, ...]:
    return _ice_urls(env, raw, ("turn", "turns"))


def _public_ipv4(env: str, raw: str) -> str:
    try:
        address = ipaddress.IPv4Address(raw.strip())
    except ValueError:
        raise ConfigError(f"{env}: expected an IPv4 address, got {raw!r}") from None
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        raise ConfigError(f"{env}: {address} cannot be reached by browsers")
    return str(address)


def _public_ipv6(env: str, raw: str) -> str:
    try:
        address = ipaddress.IPv6Address(raw.strip())
    except ValueError:
        raise ConfigError(f"{env}: expected an IPv6 address, got {raw!r}") from None
    if not address.is_global:
        raise ConfigError(f"{env}: {address} is not a global address")
    return str(address)


def _api_base_url(env: str, raw: str) -> str:
    return check_url(env, raw, ("http", "https")).rstrip("/")


@dataclass(frozen=True)
class SmtpConfig:
    host: str = setting("127.0.0.1", env="SMTP_HOST", help="SMTP server host")
    port: int = setting(25, env="SMTP_PORT", help="SMTP server port", minimum=1, maximum=65535)
    use_tls: bool = setting(False, env="SMTP_USE_TLS", help="connect with implicit TLS")
    start_tls: bool = setting(False, env="SMTP_START_TLS", help="upgrade with STARTTLS")
    username: str | None = setting(None, env="SMTP_USERNAME", help="SMTP user")
    password: str | None = setting(None, env="SMTP_PASSWORD", help="SMTP password", secret=True)
    sender: str = setting(
        "videoconsult@localhost", env="SMTP_SENDER", help="From address of outgoing mail"
    )


@dataclass(frozen=True)
class OutboxConfig:
    """The worker that sends queued client messages (one runs in every node)."""

    enabled: bool = setting(
        True,
        env="OUTBOX_WORKER",
        help="run the outbox worker (messages) and the webhook worker on this node",
    )
    poll_seconds: float = setting(
        2.0,
        env="OUTBOX_POLL_SECONDS",
        help="how often the outbox worker looks for due messages",
        minimum=0.05,
    )
    max_attempts: int = setting(
        8,
        env="OUTBOX_MAX_ATTEMPTS",
        help="delivery attempts before a message is marked failed",
        minimum=1,
        maximum=100,
    )
    # Back-off before retry n is retry_base_seconds * 2**(n-1), capped at an hour.
    retry_base_seconds: float = setting(
        30.0,
        env="OUTBOX_RETRY_BASE_SECONDS",
        help="first retry delay; doubles each attempt (max one hour)",
        minimum=0,
    )
    # How long a claimed message is a worker's own; longer than one send can take.
    lease_seconds: float = setting(
        120.0,
        env="OUTBOX_LEASE_SECONDS",
        help="how long a worker holds a claimed message before others retry it",
        minimum=1,
    )


def _country_code(env: str, raw: str) -> str:
    digits = raw.strip().removeprefix("+")
    if not digits.isdigit() or not 1 <= len(digits) <= 3:
        raise ConfigError(f"{env}: expected a country calling code such as 44, got {raw!r}")
    return digits


@dataclass(frozen=True)
class TwilioConfig:
    """The Twilio SMS adapter (server/sms/twilio.py): Messages API with status callbacks."""

    account_sid: str | None = setting(
        None, env="TWILIO_ACCOUNT_SID", help="Twilio account SID (AC...)"
    )
    auth_token: str | None = setting(
        None,
        env="TWILIO_AUTH_TOKEN",
        help="Twilio auth token (basic auth, and signs status callbacks)",
        secret=True,
    )
    sender: str | None = setting(
        None,
        env="TWILIO_FROM",
        help="the sending number (+447700900123) or a Messaging Service SID (MG...)",
    )
    base_url: str = setting(
        "https://api.twilio.com",
        env="TWILIO_BASE_URL",
        help="Twilio API URL",
        parse=_api_base_url,
    )
    # Clients' numbers are often stored as dialled at home (07700 900123).
    default_country_code: str = setting(
        "44",
        env="SMS_DEFAULT_COUNTRY_CODE",
        help="country calling code for numbers stored without one (leading 0)",
        parse=_country_code,
    )

    @property
    def configured(self) -> bool:
        return bool(self.account_sid and self.auth_token and self.sender)


@dataclass(frozen=True)
class AccountsConfig:
    """Accounts by email (server/accounts): invitations and password resets."""

    invite_ttl_hours: int = setting(
        72,
        env="INVITE_TTL_HOURS",
        help="how long an invitation's set-password link works",
        minimum=1,
        maximum=24 * 30,
    )
    reset_ttl_minutes: int = setting(
        60,
        env="PASSWORD_RESET_TTL_MINUTES",
        help="how long a password-reset link works",
        minimum=5,
        maximum=24 * 60,
    )
    resets_per_hour: int = setting(
        3,
        env="PASSWORD_RESETS_PER_HOUR",
        help="reset links sent per account per hour (more are refused with 429)",
        minimum=1,
        maximum=100,
    )
    resets_per_address_per_hour: int = setting(
        20,
        env="PASSWORD_RESETS_PER_ADDRESS_PER_HOUR",
        help="reset links asked for per client address per hour",
        minimum=1,
        maximum=10000,
    )


@dataclass(frozen=True)
class WebhooksConfig:
    """Outgoing webhooks (server/webhooks); retries follow the OUTBOX_* settings."""

    timeout_seconds: float = setting(
        10.0,
        env="WEBHOOK_TIMEOUT_SECONDS",
        help="seconds a webhook receiver has to answer before the attempt counts as failed",
        minimum=0.1,
        maximum=60,
    )
    # A site admin names the URL; without this, addresses of the server's own networks
    # (loopback, private, link-local) are refused so webhooks cannot probe them.
    allow_private_urls: bool = setting(
        False,
        env="WEBHOOK_ALLOW_PRIVATE_URLS",
        help="let webhook URLs name loopback or private addresses (tests, closed networks)",
    )


@dataclass(frozen=True)
class CallsConfig:
    """The call engine (server/calls): node heartbeats, metering, client call tokens."""

    # A node renews its heartbeat key this often; the key lives node_ttl_seconds, so a node
    # that stops (crash, kill -9) is known dead, and its calls taken over, within that time.
    # The defaults give media back within 5 s of a kill -9 (README, Performance), while a
    # live node is judged dead only after 2.5 s without one renewal (five missed in a row:
    # its event loop stalled, or Redis out of reach); a renewal is one Redis round trip.
    heartbeat_seconds: float = setting(
        0.5,
        env="CALL_HEARTBEAT_SECONDS",
        help="how often a node renews its heartbeat (calls are taken over from nodes whose "
        "heartbeat lapses)",
        minimum=0.05,
        maximum=60,
    )
    node_ttl_seconds: float = setting(
        2.5,
        env="CALL_NODE_TTL_SECONDS",
        help="how long a node's heartbeat lasts without renewal (at least twice "
        "CALL_HEARTBEAT_SECONDS)",
        minimum=0.1,
    )
    # At most 2 s: R-M10 loses at most this much on a crash.
    meter_flush_seconds: float = setting(
        1.0,
        env="METER_FLUSH_SECONDS",
        help="how often metered call seconds are written to the ledger",
        minimum=0.01,
        maximum=2,
    )
    # Reconnecting after the token's lifetime goes through the link again.
    call_token_ttl_seconds: int = setting(
        900,
        env="CALL_TOKEN_TTL_SECONDS",
        help="lifetime of the call token a client's link buys",
        minimum=30,
        maximum=86400,
    )
    # Open calls nobody came back to stop holding minutes (R-M7) once closed.
    unattended_sweep_seconds: float = setting(
        45.0,
        env="CALL_UNATTENDED_SWEEP_SECONDS",
        help="how often open calls nobody attends, whose appointment ended more than "
        "LINK_GRACE_MINUTES ago, are closed",
        minimum=1,
        maximum=3600,
    )


@dataclass(frozen=True)
class MediaConfig:
    """ICE for the call's media legs (server/calls/media_control.py, media/ice.py)."""

    stun_urls: tuple[str, ...] = setting(
        (),
        env="STUN_URLS",
        help="comma-separated STUN URLs for browsers and media legs (stun:host:3478)",
        parse=_stun_urls,
    )
    # TURN credentials are time-limited in coturn's use-auth-secret scheme.
    turn_urls: tuple[str, ...] = setting(
        (),
        env="TURN_URLS",
        help="comma-separated TURN URLs for browsers (turn:host:3478?transport=udp, "
        "turns:host:5349); needs TURN_SECRET",
        parse=_turn_urls,
    )
    turn_secret: str | None = setting(
        None,
        env="TURN_SECRET",
        help="coturn's static-auth-secret: signs time-limited TURN credentials",
        min_length=16,
        secret=True,
    )
    # TURN checks the credential on every allocation refresh, so it must outlive the call.
    turn_credential_ttl_seconds: int = setting(
        6 * 3600,
        env="TURN_CREDENTIAL_TTL_SECONDS",
        help="lifetime of a TURN credential (must outlast a call)",
        minimum=600,
        maximum=7 * 86400,
    )
    public_ip: str | None = setting(
        None,
        env="MEDIA_PUBLIC_IP",
        help="this node's public IPv4 address, advertised in media answers when behind a 1:1 NAT",
        parse=_public_ipv4,
    )
    # Its IPv6 counterpart, advertised instead of a unique-local (non-global) IPv6 address.
    public_ipv6: str | None = setting(
        None,
        env="MEDIA_PUBLIC_IPV6",
        help="this node's public IPv6 address, advertised instead of a unique-local IPv6 "
        "address in media answers",
        parse=_public_ipv6,
    )
    # The UDP ports the server's media legs bind to (both set or neither); None: any port.
    port_min: int | None = setting(
        None,
        env="MEDIA_PORT_MIN",
        help="first UDP port of the media legs' range (with MEDIA_PORT_MAX; open this range "
        "in the firewall)",
        minimum=1024,
        maximum=65535,
    )
    port_max: int | None = setting(
        None,
        env="MEDIA_PORT_MAX",
        help="last UDP port of the media legs' range (with MEDIA_PORT_MIN)",
        minimum=1024,
        maximum=65535,
    )
    # media/cadence.py: while media flows, the event loop polls its sockets at most this
    # often, reading everything that arrived meanwhile in one go (less CPU per packet, at
    # most this much added latency); 0 wakes the loop for every datagram. 12 ms: a poll
    # after a pause pays the cache misses of a cold wake-up, so the larger batch halves
    # that share (README, Performance: 8 ms measured 0.84x Janus at 4 calls, 12 ms 0.72x)
    # for +7 ms p50 of video latency, inside the +10 ms budget.
    poll_interval_ms: float = setting(
        12.0,
        env="MEDIA_POLL_INTERVAL_MS",
        help="while media flows, poll the media sockets at most every this many ms (batches "
        "datagrams: less CPU, at most this much added latency; 0 = wake for every datagram)",
        minimum=0,
        maximum=20,
    )


@dataclass(frozen=True)
class PaymentsConfig:
    """Payment providers for buying video minutes (server/wallet/payments)."""

    mode: str = setting(
        "sandbox",
        env="PAYMENTS_PROVIDER",
        help="sandbox (purchases confirm at once, for demos) or live (GoCardless, PayPal)",
        choices=("sandbox", "live"),
    )
    gocardless_base_url: str = setting(
        "https://api.gocardless.com",
        env="GOCARDLESS_BASE_URL",
        help="GoCardless API URL (Direct Debit purchases)",
        parse=_api_base_url,
    )
    gocardless_access_token: str | None = setting(
        None, env="GOCARDLESS_ACCESS_TOKEN", help="GoCardless access token", secret=True
    )
    gocardless_webhook_secret: str | None = setting(
        None,
        env="GOCARDLESS_WEBHOOK_SECRET",
        help="GoCardless webhook endpoint secret (signs callbacks)",
        secret=True,
    )
    paypal_base_url: str = setting(
        "https://api-m.paypal.com",
        env="PAYPAL_BASE_URL",
        help="PayPal REST API URL",
        parse=_api_base_url,
    )
    paypal_client_id: str | None = setting(
        None, env="PAYPAL_CLIENT_ID", help="PayPal REST app client id"
    )
    paypal_client_secret: str | None = setting(
        None, env="PAYPAL_CLIENT_SECRET", help="PayPal REST app secret", secret=True
    )
    paypal_webhook_id: str | None = setting(
        None, env="PAYPAL_WEBHOOK_ID", help="PayPal webhook id (for verifying callbacks)"
    )
    timeout_seconds: float = setting(
        10.0,
        env="PAYMENTS_TIMEOUT_SECONDS",
        help="seconds to wait for a payment provider's answer",
        minimum=0.01,
        maximum=120,
    )
    reconcile_interval_seconds: float = setting(
        60.0,
        env="PAYMENTS_RECONCILE_SECONDS",
        help="how often unsettled purchases are checked with the provider (0: never)",
        minimum=0,
    )

    @property
    def gocardless_configured(self) -> bool:
        return bool(self.gocardless_access_token and self.gocardless_webhook_secret)

    @property
    def paypal_configured(self) -> bool:
        return bool(self.paypal_client_id and self.paypal_client_secret and self.paypal_webhook_id)


@dataclass(frozen=True)
class Config:
    # Connections. None means "start embedded servers in data_dir".
    database_url: str | None = setting(
        None,
        env="DATABASE_URL",
        help="PostgreSQL URL (postgresql://user:pass@host:5432/db); unset = embedded",
        url_schemes=("postgres", "postgresql"),
    )
    redis_url: str | None = setting(
        None,
        env="REDIS_URL",
        help="Redis URL (redis://host:6379/0 or unix:///path/redis.sock); unset = embedded",
        url_schemes=("redis", "rediss", "unix"),
    )
    redis_prefix: str = setting(
        "vc:", env="REDIS_PREFIX", help="prefix of every Redis key of this deployment"
    )
    data_dir: Path = setting(
        Path(".videoconsult"), env="DATA_DIR", help="folder for the embedded PostgreSQL and Redis"
    )
    # A request that finds every Redis connection busy waits up to pool_wait_seconds for one,
    # then gets 503 "busy, retry" (never a 500); PostgreSQL requests queue in asyncpg's pool.
    database_pool_size: int = setting(
        20,
        env="DATABASE_POOL_SIZE",
        help="PostgreSQL connections this node holds at most",
        minimum=2,
        maximum=1000,
    )
    # Every SQL statement of this node (requests and background work) ends within this.
    database_statement_timeout_seconds: float = setting(
        10.0,
        env="DATABASE_STATEMENT_TIMEOUT_SECONDS",
        help="longest any one SQL statement may run; a request whose query runs longer is "
        "answered 503",
        minimum=0.1,
        maximum=3600,
    )
    redis_max_connections: int = setting(
        100,
        env="REDIS_MAX_CONNECTIONS",
        help="Redis connections this node holds at most",
        minimum=2,
        maximum=100000,
    )
    pool_wait_seconds: float = setting(
        5.0,
        env="POOL_WAIT_SECONDS",
        help="how long a request waits for a free Redis connection before it is answered "
        "503 busy, retry",
        minimum=0.1,
        maximum=120,
    )

    # HTTP
    host: str = setting("127.0.0.1", env="HOST", help="address to listen on")
    port: int = setting(8080, env="PORT", help="port to listen on", minimum=0, maximum=65535)
    # Media forwarding is bound by one event-loop thread: one node process per core.
    workers: int = setting(
        0,
        env="WORKERS",
        help="node processes 'serve' starts, sharing the port (SO_REUSEPORT); 0: one per core",
        minimum=0,
        maximum=256,
    )
    reuse_port: bool = setting(
        False,
        env="REUSE_PORT",
        help="share the port with other processes (set by WORKERS for its node processes)",
    )
    public_url: str = setting(
        "",
        env="PUBLIC_URL",
        help="the URL people reach this server at (links in messages use it; "
        "default http://HOST:PORT)",
        url_schemes=("http", "https"),
    )
    max_body_bytes: int = setting(
        64 * 1024,
        env="MAX_BODY_BYTES",
        help="largest accepted request body",
        minimum=1024,
        maximum=2**31,
    )
    # Provider callbacks carry batches (a GoCardless batch of 400 events is ~67 KB).
    webhook_max_body_bytes: int = setting(
        1024 * 1024,
        env="WEBHOOK_MAX_BODY_BYTES",
        help="largest accepted payment provider callback body",
        minimum=1024,
        maximum=64 * 1024 * 1024,
    )
    drain_seconds: float = setting(
        5.0,
        env="DRAIN_SECONDS",
        help="after SIGTERM, seconds to report not-ready before stopping",
        minimum=0,
    )
    node_id: str = setting(
        "",
        env="NODE_ID",
        help="this node's name in a cluster (default: random)",
        default_factory=lambda: "node-" + secrets.token_hex(4),
    )

    # secret_key signs sessions and derives video links; keep it out of the database.
    secret_key: str = setting(
        "",
        env="SECRET_KEY",
        help="signs sessions and derives video links (at least 32 characters)",
        min_length=32,
        secret=True,
    )
    session_ttl_seconds: int = setting(
        12 * 3600,
        env="SESSION_TTL_SECONDS",
        help="staff session lifetime",
        minimum=60,
        maximum=2**31,
    )
    cookie_secure: bool = setting(
        False, env="COOKIE_SECURE", help="send cookies over HTTPS only (true behind TLS)"
    )

    # Login throttling: failures allowed per window, per account and per address.
    login_failures_per_account: int = setting(
        5,
        env="LOGIN_FAILURES_PER_ACCOUNT",
        help="failed logins allowed per account per window",
        minimum=1,
        maximum=2**31,
    )
    login_failures_per_address: int = setting(
        20,
        env="LOGIN_FAILURES_PER_ADDRESS",
        help="failed logins allowed per client address per window",
        minimum=1,
        maximum=2**31,
    )
    login_failure_window_seconds: int = setting(
        900,
        env="LOGIN_FAILURE_WINDOW_SECONDS",
        help="login throttling window",
        minimum=1,
        maximum=2**31,
    )

    # Behind a reverse proxy every request comes from the proxy: the client's address (the
    # login throttle's key) is then read from X-Forwarded-For, from these peers only.
    trusted_proxies: tuple[str, ...] = setting(
        (),
        env="TRUSTED_PROXIES",
        help="comma-separated addresses or networks of the reverse proxies in front of the "
        "node (e.g. 127.0.0.1,::1): their X-Forwarded-For names the client",
        parse=_networks,
    )

    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    sms_provider: str = setting(
        "log",
        env="SMS_PROVIDER",
        help="SMS adapter: log (writes messages to the log; development only) or twilio "
        "(needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM)",
        choices=SMS_PROVIDERS,
    )
    twilio: TwilioConfig = field(default_factory=TwilioConfig)
    email_provider: str = setting(
        "smtp",
        env="EMAIL_PROVIDER",
        help="smtp, or log (writes mail to the log; the demo's default)",
        choices=EMAIL_PROVIDERS,
    )
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    link_grace_minutes: int = setting(
        120,
        env="LINK_GRACE_MINUTES",
        help="minutes after an appointment's end that its link still opens",
        minimum=0,
        maximum=7 * 24 * 60,
    )
    # Switch to Video is accepted from this long before an appointment's start (R-C9).
    waiting_room_opens_minutes: int = setting(
        30,
        env="WAITING_ROOM_OPENS_MINUTES",
        help="minutes before an appointment's start from which its waiting room may be "
        "opened (Switch to Video)",
        minimum=0,
        maximum=24 * 60,
    )
    log_format: str = setting(
        "text",
        env="LOG_FORMAT",
        help="text for people, json (one object per line) for log collectors",
        choices=("text", "json"),
    )
    event_loop: str = setting(
        "uvloop",
        env="EVENT_LOOP",
        help="uvloop (the default; plain asyncio where uvloop is not installed) or asyncio",
        choices=("uvloop", "asyncio"),
    )

    @property
    def base_url(self) -> str:
        """The URL people reach this node at, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def jwt_issuer(self) -> str:
        return self.base_url


SETTINGS: tuple[Setting, ...] = tuple(settings_of(Config))


def load_config(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Config:
    """Build a Config from environment variables, then CLI overrides (which win).

    ``overrides`` are keyed by setting name (the environment name lower-cased, as the CLI
    flags' destinations are).
    """
    source = os.environ if env is None else env
    by_name = {spec.name: spec for spec in SETTINGS}
    raw: dict[str, str] = {}
    for spec in SETTINGS:
        value = source.get(spec.env)
        if value is not None and value != "":
            raw[spec.name] = value
    for name, value in (overrides or {}).items():
        if name not in by_name:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            raw[name] = value
    tree: dict[str, object] = {}
    for name, text in raw.items():
        spec = by_name[name]
        *groups, attribute = spec.path
        level = tree
        for group in groups:
            nested = level.setdefault(group, {})
            assert isinstance(nested, dict)
            level = nested
        level[attribute] = spec.parse(text)
    config = build(Config, Config, tree)
    check_calls(config.calls)
    check_media(config.media)
    check_payments(config.payments)
    check_sms(config)
    return config


def check_sms(config: Config) -> None:
    if config.sms_provider == "twilio" and not config.twilio.configured:
        raise ConfigError(
            "SMS_PROVIDER: twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM"
        )


def check_calls(calls: CallsConfig) -> None:
    if calls.node_ttl_seconds < 2 * calls.heartbeat_seconds:
        raise ConfigError(
            "CALL_NODE_TTL_SECONDS: must be at least twice CALL_HEARTBEAT_SECONDS, "
            "or one late renewal would declare a live node dead"
        )


def check_media(media: MediaConfig) -> None:
    # TURN URLs without a secret would hand browsers servers they cannot log in to, and a
    # secret without URLs is a typo somewhere: both or neither.
    if media.turn_urls and not media.turn_secret:
        raise ConfigError("TURN_SECRET: required with TURN_URLS")
    if media.turn_secret and not media.turn_urls:
        raise ConfigError("TURN_URLS: required with TURN_SECRET")
    if (media.port_min is None) != (media.port_max is None):
        raise ConfigError("MEDIA_PORT_MIN and MEDIA_PORT_MAX: set both or neither")
    if (
        media.port_min is not None
        and media.port_max is not None
        and media.port_max < media.port_min
    ):
        raise ConfigError("MEDIA_PORT_MAX: must not be below MEDIA_PORT_MIN")


def check_payments(payments: PaymentsConfig) -> None:
    # A provider half set up would take money it cannot confirm: all of its settings or none.
    groups = {
        "GoCardless": ("GOCARDLESS_ACCESS_TOKEN", "GOCARDLESS_WEBHOOK_SECRET"),
        "PayPal": ("PAYPAL_CLIENT_ID", "PAYPAL_CLIENT_SECRET", "PAYPAL_WEBHOOK_ID"),
    }
    for provider, names in groups.items():
        given = [name for name in names if getattr(payments, name.lower()) is not None]
        if given and len(given) != len(names):
            missing = ", ".join(name for name in names if name not in given)
            raise ConfigError(f"{missing}: required with the other {provider} settings")
    if payments.mode == "live" and not (
        payments.gocardless_configured or payments.paypal_configured
    ):
        raise ConfigError(
            "PAYMENTS_PROVIDER: live needs GOCARDLESS_ACCESS_TOKEN and "
            "GOCARDLESS_WEBHOOK_SECRET, or PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET and "
            "PAYPAL_WEBHOOK_ID"
        )
