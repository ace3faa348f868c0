"""Bundle prices, VAT and how a balance is shown: integer arithmetic only (R-M1, R-M2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.wallet.bundles import (
    BUNDLE_MINUTES,
    bundle_price,
    decimal_amount,
    format_balance,
    parse_decimal_amount,
    price_list,
    vat_pence,
)


def test_the_seed_bundles_at_one_penny_a_minute_plus_twenty_percent_vat() -> None:
    # R-M2: 300, 600, 1000, 2000, 5000 minutes: £3, £6, £10, £20, £50 + VAT
    prices = price_list(2000)
    assert [p.minutes for p in prices] == [300, 600, 1000, 2000, 5000]
    assert [(p.net_pence, p.vat_pence, p.gross_pence) for p in prices] == [
        (300, 60, 360),
        (600, 120, 720),
        (1000, 200, 1200),
        (2000, 400, 2400),
        (5000, 1000, 6000),
    ]
    assert prices[0].label == "300 minutes — £3.00 + VAT £0.60 = £3.60"
    assert prices[0].seconds == 300 * 60


@pytest.mark.parametrize(
    ("net", "rate_bp", "vat"),
    [
        (300, 2000, 60),
        (25, 2000, 5),  # exactly 5p
        (5, 1000, 1),  # 0.5p rounds half up
        (4, 1000, 0),  # 0.4p rounds down
        (300, 1750, 53),  # 52.5p rounds half up
        (600, 1750, 105),
        (1000, 0, 0),
        (1000, 10000, 1000),
    ],
)
def test_vat_rounds_half_up_to_the_penny(net: int, rate_bp: int, vat: int) -> None:
    # R-M2 (VAT configurable per practice)
    assert vat_pence(net, rate_bp) == vat


@given(st.integers(0, 10**9), st.integers(0, 10_000))
def test_vat_is_within_half_a_penny_of_exact(net: int, rate_bp: int) -> None:
    vat = vat_pence(net, rate_bp)
    exact_times_2 = 2 * net * rate_bp  # exact VAT * 20000
    assert abs(vat * 20_000 - exact_times_2) <= 10_000  # |vat - exact| <= 0.5p


def test_no_other_bundle_and_no_bad_vat_rate() -> None:
    with pytest.raises(ValueError):
        bundle_price(301, 2000)
    with pytest.raises(ValueError):
        vat_pence(100, 10_001)
    assert BUNDLE_MINUTES == (300, 600, 1000, 2000, 5000)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (264 * 60, "264 min"),
        (-36 * 60, "-36 min"),
        (59, "59 s"),
        (-59, "-59 s"),
        (0, "0 s"),
        (60, "1 min"),
        (119, "1 min"),
        (-90, "-1 min"),
    ],
)
def test_balance_is_shown_in_minutes_or_seconds_under_a_minute(seconds: int, shown: str) -> None:
    # R-M1
    assert format_balance(seconds) == shown


@given(st.integers(0, 10**8))
def test_decimal_amounts_round_trip(pence: int) -> None:
    assert parse_decimal_amount(decimal_amount(pence)) == pence


@pytest.mark.parametrize("text", ["", "1.234", "-1.00", "1,00", "abc", "1."])
def test_malformed_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal_amount(text)
