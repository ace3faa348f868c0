"""Payment providers behind one interface, chosen by the practice's payment method."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from server.config import PaymentsConfig
from server.wallet.payments.gocardless import GoCardlessProvider
from server.wallet.payments.paypal import PayPalProvider
from server.wallet.payments.provider import PaymentProvider, ProviderNotConfigured
from server.wallet.payments.sandbox import SandboxProvider

_METHOD_NAMES = {"direct_debit": "Direct Debit", "paypal": "PayPal"}


@dataclass(frozen=True)
class PaymentProviders:
    """The providers this server can use; ``for_method`` picks one for a practice."""

    mode: str
    sandbox: SandboxProvider
    gocardless: GoCardlessProvider | None
    paypal: PayPalProvider | None
    gocardless_webhook_secret: str | None

    def for_method(self, method: str) -> PaymentProvider:
        if self.mode == "sandbox":
            return self.sandbox
        provider: PaymentProvider | None = {
            "direct_debit": self.gocardless,
            "paypal": self.paypal,
        }.get(method)
        if provider is None:
            name = _METHOD_NAMES.get(method, method)
            raise ProviderNotConfigured(f"{name} payments are not configured on this server")
        return provider

    def by_name(self, name: str) -> PaymentProvider | None:
        """The provider that handled a stored purchase (``purchase.provider``)."""
        found: dict[str, PaymentProvider | None] = {
            "sandbox": self.sandbox,
            "gocardless": self.gocardless,
            "paypal": self.paypal,
        }
        return found.get(name)


def build_providers(config: PaymentsConfig, session: aiohttp.ClientSession) -> PaymentProviders:
    gocardless = None
    if config.gocardless_access_token:
        gocardless = GoCardlessProvider(
            session,
            config.gocardless_base_url,
            config.gocardless_access_token,
            config.timeout_seconds,
        )
    paypal = None
    if config.paypal_client_id and config.paypal_client_secret and config.paypal_webhook_id:
        paypal = PayPalProvider(
            session,
            config.paypal_base_url,
            config.paypal_client_id,
            config.paypal_client_secret,
            config.paypal_webhook_id,
            config.timeout_seconds,
        )
    return PaymentProviders(
        config.mode, SandboxProvider(), gocardless, paypal, config.gocardless_webhook_secret
    )
