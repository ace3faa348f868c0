"""What the purchase flow needs from a payment provider, whichever it is.

A provider answers every call with a ``ProviderOutcome`` — where the payment stands at the
provider — and the flow applies it to the purchase under a row lock. Providers never touch
the database, so the exactly-once rules live in one place (``purchases.apply_outcome``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

# Where a payment stands at the provider, as far as crediting minutes is concerned:
#   pending            asked, outcome not known yet (e.g. a PayPal capture still pending)
#   awaiting_approval  the payer must approve at the provider (PayPal redirect)
#   approved           approved by the payer, not yet captured (PayPal)
#   confirmed          the provider took the payment: credit the minutes
#   failed             it will not be paid: nothing to credit
#   reversed           paid, then taken back (charge-back, refund): reverse the credit
OutcomeKind = Literal["pending", "awaiting_approval", "approved", "confirmed", "failed", "reversed"]


@dataclass(frozen=True)
class PaymentRequest:
    """One purchase as a provider sees it. ``idempotency_key`` is stable per purchase."""

    purchase_id: uuid.UUID
    idempotency_key: str
    gross_pence: int
    net_pence: int
    vat_pence: int
    description: str
    currency: str = "GBP"
    mandate_id: str | None = None  # Direct Debit: the practice's mandate
    return_url: str = ""  # PayPal: where the payer comes back after approving
    cancel_url: str = ""
    payment_id: str | None = None  # the provider's reference, once known


@dataclass(frozen=True)
class ProviderOutcome:
    kind: OutcomeKind
    provider_status: str  # the provider's own word, kept for the purchase history
    payment_id: str | None = None
    capture_id: str | None = None
    approve_url: str | None = None
    amount_pence: int | None = None  # what the provider says it took, when it says
    reason: str | None = None


class ProviderUnavailable(Exception):
    """No usable answer (timeout, connection error, 5xx, 429): the outcome is unknown.

    The purchase stays as it was and is resolved later by asking again (reconcile).
    """


class ProviderRejected(Exception):
    """The provider refused the request for good (e.g. a cancelled mandate)."""


class ProviderNotConfigured(Exception):
    """This server has no credentials for the practice's payment method."""


class PaymentProvider(Protocol):
    name: str  # "sandbox" | "gocardless" | "paypal": stored on the purchase

    async def create_payment(self, request: PaymentRequest) -> ProviderOutcome:
        """Start the payment; safe to repeat with the same request (idempotency key)."""
        ...

    async def capture_payment(self, request: PaymentRequest) -> ProviderOutcome:
        """Take an approved payment (PayPal capture); others report the current status."""
        ...

    async def current_status(self, request: PaymentRequest) -> ProviderOutcome:
        """Ask where the payment stands (reconcile); creates it if it never reached them."""
        ...
