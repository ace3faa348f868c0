"""Whose address a request has behind reverse proxies (server/client_address.py)."""

from __future__ import annotations

import pytest

from server.client_address import address_behind_proxies
from server.config import ConfigError, load_config
from tests.conftest import TEST_SECRET

PROXIES = ("127.0.0.1/32", "10.0.0.0/8", "::1/128")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert address_behind_proxies("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


def test_a_trusted_proxy_names_the_client_at_the_right_of_its_header() -> None:
    assert address_behind_proxies("127.0.0.1", ["203.0.113.9"], PROXIES) == "203.0.113.9"
    # What the client wrote itself lies to the left of what our proxy saw: not believed.
    assert (
        address_behind_proxies("127.0.0.1", ["198.51.100.1, 203.0.113.9"], PROXIES) == "203.0.113.9"
    )


def test_chained_trusted_proxies_are_skipped_and_header_lines_join() -> None:
    forwarded = ["198.51.100.1", "203.0.113.9, 10.1.2.3"]
    assert address_behind_proxies("::1", forwarded, PROXIES) == "203.0.113.9"
    assert address_behind_proxies("::ffff:127.0.0.1", ["2001:db8::5"], PROXIES) == "2001:db8::5"


def test_a_peer_not_trusted_is_the_client_even_with_a_header() -> None:
    assert address_behind_proxies("203.0.113.7", ["127.0.0.1"], PROXIES) == "203.0.113.7"
    assert address_behind_proxies("unknown", ["203.0.113.9"], PROXIES) == "unknown"


@pytest.mark.parametrize(
    "forwarded",
    [[], [""], ["not-an-address"], ["203.0.113.9, garbage"], ["10.0.0.1, 127.0.0.1"]],
    ids=["none", "empty", "garbage", "garbage-at-the-right", "only-proxies"],
)
def test_no_trustworthy_hop_leaves_the_proxys_address(forwarded: list[str]) -> None:
    assert address_behind_proxies("127.0.0.1", forwarded, PROXIES) == "127.0.0.1"


def test_the_setting_takes_addresses_and_networks_and_refuses_anything_else() -> None:
    listed = "127.0.0.1, ::1,10.0.0.0/8"
    config = load_config({"SECRET_KEY": TEST_SECRET, "TRUSTED_PROXIES": listed})
    assert config.trusted_proxies == ("127.0.0.1/32", "::1/128", "10.0.0.0/8")
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES: expected addresses or networks"):
        load_config({"SECRET_KEY": TEST_SECRET, "TRUSTED_PROXIES": "127.0.0.1,nginx"})
