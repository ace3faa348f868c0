"""Each setting is declared once; parsing, bounds, --help, the README and `config` follow."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import _parser
from server.config import SETTINGS, Config, ConfigError, load_config
from server.settings import markdown_table, value_at

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_one_environment_name_help_and_a_flag() -> None:
    envs = [spec.env for spec in SETTINGS]
    assert len(envs) == len(set(envs))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", env) for env in envs)
    assert all(spec.declared.help for spec in SETTINGS)
    assert _parser().parse_args(["serve", "--smtp-port", "1"]).smtp_port == "1"
    serve_help = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for spec in SETTINGS:
        assert spec.flag in serve_help and f"[{spec.env}]" in serve_help


def test_the_readme_table_is_the_declared_one() -> None:
    # Regenerate with: videoconsult config --markdown
    assert markdown_table(SETTINGS) in README.read_text()


def test_defaults_are_what_an_unset_environment_gives() -> None:
    config = load_config({})
    for spec in SETTINGS:
        if spec.default is not dataclasses.MISSING:
            assert value_at(config, spec) == spec.default, spec.env


def test_every_bound_is_enforced_naming_the_variable() -> None:
    bounded = [spec for spec in SETTINGS if spec.declared.minimum is not None]
    assert len(bounded) > 20
    for spec in bounded:
        assert spec.declared.minimum is not None
        below = spec.declared.minimum - 1
        text = str(int(below)) if spec.kind is int else str(below)
        with pytest.raises(ConfigError, match=spec.env):
            load_config({spec.env: text})
        if spec.declared.maximum is not None:
            above = spec.declared.maximum + 1
            with pytest.raises(ConfigError, match=spec.env):
                load_config({spec.env: str(int(above)) if spec.kind is int else str(above)})


def test_numbers_and_switches_refuse_words() -> None:
    for spec in SETTINGS:
        if spec.kind in (int, float, bool):
            with pytest.raises(ConfigError, match=spec.env):
                load_config({spec.env: "lots"})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({}, overrides={"no_such_setting": "1"})


def test_config_command_prints_every_setting_with_secrets_masked() -> None:
    secret = "s3cret-" + "k" * 40
    env = {
        "SECRET_KEY": secret,
        "DATABASE_URL": "postgresql://vc:dbpass-xyz@db.internal:5432/videoconsult",
        "SMTP_PASSWORD": "mail-pass-xyz",
        "TURN_URLS": "turn:turn.example.org:3478",
        "TURN_SECRET": "turn-secret-" + "t" * 10,
        "PORT": "9123",
        "PATH": "/usr/bin:/bin",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "server.cli", "config"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    lines = dict(line.split("=", 1) for line in shown.splitlines())
    assert set(lines) == {spec.env for spec in SETTINGS}
    assert lines["PORT"] == "9123"
    assert lines["SECRET_KEY"] == "***"
    assert lines["SMTP_PASSWORD"] == "***"
    assert lines["TURN_SECRET"] == "***"
    assert lines["DATABASE_URL"] == "postgresql://vc:***@db.internal:5432/videoconsult"
    for leaked in (secret, "dbpass-xyz", "mail-pass-xyz", "turn-secret-"):
        assert leaked not in shown


def test_config_command_stops_on_a_bad_value() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "config"],
        capture_output=True,
        text=True,
        env={"PORT": "eighty", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "PORT: expected a whole number" in result.stderr


def test_config_can_still_be_built_directly() -> None:
    config = Config(port=1234)
    assert config.port == 1234 and config.smtp.port == 25
    assert dataclasses.replace(config, port=1).port == 1
