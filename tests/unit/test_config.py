"""Configuration is validated at start with errors that name the variable."""

from __future__ import annotations

import pytest

from server.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "mysql://db.example/x"}, ["DATABASE_URL", "scheme"]),
        ({"DATABASE_URL": "postgresql://host:notaport/db"}, ["DATABASE_URL", "malformed"]),
        ({"DATABASE_URL": "postgresql:///db"}, ["DATABASE_URL", "no host"]),
        ({"REDIS_URL": "http://localhost"}, ["REDIS_URL", "scheme"]),
        ({"PORT": "eighty"}, ["PORT", "whole number"]),
        ({"PORT": "70000"}, ["PORT", "between"]),
        ({"SECRET_KEY": "short"}, ["SECRET_KEY", "32"]),
        ({"COOKIE_SECURE": "perhaps"}, ["COOKIE_SECURE", "true or false"]),
        ({"LOG_FORMAT": "xml"}, ["LOG_FORMAT"]),
        ({"PUBLIC_URL": "ftp://x"}, ["PUBLIC_URL"]),
        ({"SMTP_PORT": "0"}, ["SMTP_PORT"]),
    ],
)
def test_bad_setting_names_the_variable(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    for name in names:
        assert name in str(caught.value)


def test_valid_settings_are_typed() -> None:
    config = load_config(
        {
            "DATABASE_URL": "postgresql://vc:pw@db.internal:5432/videoconsult",
            "REDIS_URL": "unix:///run/redis.sock",
            "PORT": "9000",
            "COOKIE_SECURE": "true",
            "SECRET_KEY": "k" * 40,
            "SMTP_HOST": "mail.internal",
            "SMTP_PORT": "587",
        }
    )
    assert config.port == 9000
    assert config.cookie_secure is True
    assert config.smtp.host == "mail.internal"
    assert config.smtp.port == 587
    assert config.base_url == "http://127.0.0.1:9000"


def test_cli_overrides_win_over_environment() -> None:
    config = load_config({"PORT": "9000"}, overrides={"port": "9100", "host": None})
    assert config.port == 9100


def test_unix_socket_database_url_is_accepted() -> None:
    config = load_config({"DATABASE_URL": "postgresql://postgres:@/postgres?host=/run/pg"})
    assert config.database_url is not None


def test_email_provider_is_checked() -> None:
    assert load_config({"EMAIL_PROVIDER": "log"}).email_provider == "log"
    with pytest.raises(ConfigError, match="EMAIL_PROVIDER"):
        load_config({"EMAIL_PROVIDER": "pigeon"})
