"""Minute bundles, their prices, and how a balance is shown (R-M1, R-M2).

Money is integer pence and VAT is in basis points (2000 = 20%), so every figure is exact:
no floats anywhere between the price list and the payment provider.
"""

from __future__ import annotations

import msgspec

BUNDLE_MINUTES: tuple[int, ...] = (300, 600, 1000, 2000, 5000)
PENCE_PER_MINUTE = 1
BASIS_POINTS = 10_000


class BundlePrice(msgspec.Struct, frozen=True):
    minutes: int
    seconds: int
    vat_rate_bp: int
    net_pence: int
    vat_pence: int
    gross_pence: int
    label: str  # e.g. "300 minutes — £3.00 + VAT £0.60 = £3.60"


def vat_pence(net_pence: int, vat_rate_bp: int) -> int:
    """VAT rounded half-up to the penny, in integers only: 5p of VAT on 25p at 20%."""
    if net_pence < 0 or not 0 <= vat_rate_bp <= BASIS_POINTS:
        raise ValueError("net must be >= 0 and the VAT rate within 0..10000 basis points")
    return (net_pence * vat_rate_bp + BASIS_POINTS // 2) // BASIS_POINTS


def bundle_price(minutes: int, vat_rate_bp: int) -> BundlePrice:
    if minutes not in BUNDLE_MINUTES:
        raise ValueError(f"no bundle of {minutes} minutes; bundles are {BUNDLE_MINUTES}")
    net = minutes * PENCE_PER_MINUTE
    vat = vat_pence(net, vat_rate_bp)
    gross = net + vat
    label = f"{minutes} minutes — {pounds(net)} + VAT {pounds(vat)} = {pounds(gross)}"
    return BundlePrice(minutes, minutes * 60, vat_rate_bp, net, vat, gross, label)


def price_list(vat_rate_bp: int) -> list[BundlePrice]:
    return [bundle_price(minutes, vat_rate_bp) for minutes in BUNDLE_MINUTES]


def pounds(pence: int) -> str:
    """1234 -> '£12.34' (negative amounts keep their sign in front)."""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(pence), 100)
    return f"{sign}£{whole}.{part:02d}"


def decimal_amount(pence: int) -> str:
    """1234 -> '12.34', the form payment APIs take amounts in (PayPal)."""
    if pence < 0:
        raise ValueError("amount must not be negative")
    whole, part = divmod(pence, 100)
    return f"{whole}.{part:02d}"


def parse_decimal_amount(text: str) -> int:
    """'12.34' -> 1234; raises ValueError for anything that is not a plain 2-place amount."""
    whole, dot, part = text.partition(".")
    if not whole.isdigit() or (dot and (not part.isdigit() or len(part) > 2)):
        raise ValueError(f"not an amount: {text!r}")
    return int(whole) * 100 + int((part or "0").ljust(2, "0"))


def format_balance(seconds: int) -> str:
    """Minutes, or seconds where less than a minute (R-M1): '264 min', '45 s', '-36 min'.

    Whole minutes are counted toward zero, so a balance is never shown as more (or as less
    owed) than it is by a whole minute: 119 s is '1 min', -90 s is '-1 min'.
    """
    sign = "-" if seconds < 0 else ""
    magnitude = abs(seconds)
    if magnitude < 60:
        return f"{sign}{magnitude} s"
    return f"{sign}{magnitude // 60} min"
