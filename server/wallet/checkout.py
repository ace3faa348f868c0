"""Buying minutes end to end: start a purchase, PayPal's return, provider callbacks, reconcile.

Each step asks the provider first (no database lock is held across a network call), then
applies the answer with ``purchases.apply_outcome`` in one short transaction. A provider
that does not answer leaves the purchase where it was; ``reconcile_purchase`` (an endpoint,
and a background sweep) asks again later with the same idempotency key, so a payment is
neither lost nor taken twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from server import practices
from server.wallet import mandates
from server.wallet.bundles import bundle_price
from server.wallet.payments import PaymentProviders
from server.wallet.payments.provider import (
    PaymentProvider,
    PaymentRequest,
    ProviderNotConfigured,
    ProviderOutcome,
    ProviderRejected,
    ProviderUnavailable,
)
from server.wallet.purchases import (
    UNSETTLED,
    Purchase,
    PurchaseStatus,
    Transition,
    apply_outcome,
    create_purchase,
    mark_failed,
    read_purchase,
    unsettled_purchases,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalletServices:
    """What the purchase flow needs: the database, the providers, and our public URL."""

    pool: asyncpg.Pool
    providers: PaymentProviders
    base_url: str


@dataclass(frozen=True)
class WebhookEvent:
    """A provider callback, recorded with the change it made (or found already made)."""

    provider: str
    event_id: str
    action: str


class NoMandate(Exception):
    """Direct Debit chosen but no mandate is set for the practice."""


class ReturnTokenMismatch(Exception):
    """PayPal's return names another order than this purchase's."""


@dataclass(frozen=True)
class StartedPurchase:
    purchase: Purchase
    created: bool  # False: the same attempt was made before (double click)
    provider_unavailable: bool  # the provider did not answer: pending, to be reconciled


async def start_purchase(
    services: WalletServices,
    practice_id: uuid.UUID,
    user_id: uuid.UUID,
    bundle_minutes: int,
    idempotency_key: str,
) -> StartedPurchase:
    practice = await practices.get_practice(services.pool, practice_id)
    if practice is None:
        raise LookupError("practice not found")
    provider = services.providers.for_method(practice.payment_method)
    mandate = None
    if provider.name == "gocardless":
        mandate = await mandates.get_mandate(services.pool, practice_id)
        if mandate is None:
            raise NoMandate("set the practice's Direct Debit mandate before buying minutes")
    price = bundle_price(bundle_minutes, practice.vat_rate_bp)
    purchase, created = await create_purchase(
        services.pool,
        practice_id,
        user_id,
        idempotency_key,
        price,
        practice.payment_method,
        provider.name,
    )
    if not created:
        return StartedPurchase(purchase, False, False)
    request = payment_request(purchase, services.base_url, mandate)
    try:
        outcome = await provider.create_payment(request)
    except ProviderUnavailable as exc:
        log.warning("purchase %s left pending: %s", purchase.id, exc)
        return StartedPurchase(purchase, True, True)
    except ProviderRejected as exc:
        return StartedPurchase(await _fail(services.pool, purchase.id, str(exc)), True, False)
    try:
        settled = await _settle(services, provider, purchase, outcome, mandate)
    except ProviderUnavailable as exc:
        log.warning("purchase %s left unsettled: %s", purchase.id, exc)
        return StartedPurchase(purchase, True, True)
    return StartedPurchase(settled.purchase, True, False)


async def paypal_return(services: WalletServices, purchase: Purchase, token: str) -> Purchase:
    """The admin is back from approving at PayPal: capture and credit (once)."""
    if purchase.provider != "paypal":
        raise ReturnTokenMismatch("this purchase is not paid through PayPal")
    if not purchase.provider_payment_id or token != purchase.provider_payment_id:
        raise ReturnTokenMismatch("the PayPal order does not belong to this purchase")
    if purchase.status != PurchaseStatus.AWAITING_APPROVAL:
        return purchase  # a webhook or an earlier return got here first
    provider = _stored_provider(services, purchase)
    request = payment_request(purchase, services.base_url, None)
    outcome = await provider.capture_payment(request)
    return (await _apply(services.pool, purchase.id, outcome)).purchase


async def paypal_cancel(services: WalletServices, purchase: Purchase, token: str) -> Purchase:
    """The admin cancelled at PayPal: the attempt fails, nothing is charged."""
    if purchase.provider != "paypal" or token != purchase.provider_payment_id:
        raise ReturnTokenMismatch("the PayPal order does not belong to this purchase")
    if purchase.status != PurchaseStatus.AWAITING_APPROVAL:
        return purchase
    return await _fail(services.pool, purchase.id, "cancelled at PayPal", "CANCELLED_BY_PAYER")


async def reconcile_purchase(services: WalletServices, purchase: Purchase) -> Purchase:
    """Ask the provider where this purchase's payment stands and apply it (idempotent).

    Raises ``ProviderUnavailable`` if it still does not answer (the purchase is unchanged).
    """
    if purchase.status not in UNSETTLED and purchase.status != PurchaseStatus.CREDITED:
        return purchase  # failed and reversed are final
    provider = _stored_provider(services, purchase)
    mandate = None
    if provider.name == "gocardless":
        mandate = await mandates.get_mandate(services.pool, purchase.practice_id)
    request = payment_request(purchase, services.base_url, mandate)
    try:
        outcome = await provider.current_status(request)
    except ProviderRejected as exc:
        if purchase.provider_payment_id is None and purchase.status in UNSETTLED:
            return await _fail(services.pool, purchase.id, str(exc))
        raise ProviderUnavailable(str(exc)) from None
    return (await _settle(services, provider, purchase, outcome, mandate)).purchase


async def apply_callback(
    services: WalletServices,
    purchase: Purchase,
    outcome: ProviderOutcome,
    event: WebhookEvent,
) -> Transition | None:
    """Apply a verified provider callback once; None if this event was applied before.

    An "approved" PayPal order is captured first (a callback may beat the admin's return).
    """
    if outcome.kind == "approved":
        provider = _stored_provider(services, purchase)
        outcome = await _capture_approved(services, provider, purchase, outcome, None)
    return await _apply(services.pool, purchase.id, outcome, event)


async def reconcile_unsettled(services: WalletServices, older_than_seconds: float) -> int:
    """One sweep over purchases left pending or awaiting approval; returns how many moved."""
    moved = 0
    for purchase in await unsettled_purchases(services.pool, older_than_seconds):
        try:
            after = await reconcile_purchase(services, purchase)
        except (ProviderUnavailable, ProviderNotConfigured) as exc:
            log.info("purchase %s still unsettled: %s", purchase.id, exc)
            continue
        if after.status != purchase.status:
            moved += 1
    return moved


async def run_reconciler(services: WalletServices, interval_seconds: float) -> None:
    """Background sweep; several nodes may run it at once (every step is idempotent)."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await reconcile_unsettled(services, older_than_seconds=interval_seconds)
        except Exception:  # a database blip must not end the sweep for good
            log.warning("reconciling purchases failed", exc_info=True)


def payment_request(
    purchase: Purchase, base_url: str, mandate_id: str | None = None
) -> PaymentRequest:
    back = f"{base_url}/api/minutes/purchases/{purchase.id}"
    return PaymentRequest(
        purchase_id=purchase.id,
        idempotency_key=f"vc-minutes-{purchase.id}",
        gross_pence=purchase.gross_pence,
        net_pence=purchase.net_pence,
        vat_pence=purchase.vat_pence,
        description=f"{purchase.bundle_minutes} video minutes",
        mandate_id=mandate_id,
        return_url=f"{back}/paypal-return",
        cancel_url=f"{back}/paypal-cancel",
        payment_id=purchase.provider_payment_id,
    )


async def _settle(
    services: WalletServices,
    provider: PaymentProvider,
    purchase: Purchase,
    outcome: ProviderOutcome,
    mandate: str | None,
) -> Transition:
    if outcome.kind == "approved":
        # Approved at PayPal but not captured (the return never came): capture now.
        outcome = await _capture_approved(services, provider, purchase, outcome, mandate)
    return await _apply(services.pool, purchase.id, outcome)


async def _capture_approved(
    services: WalletServices,
    provider: PaymentProvider,
    purchase: Purchase,
    approved: ProviderOutcome,
    mandate: str | None,
) -> ProviderOutcome:
    """Capture an approved order; the approval names it when our row does not know it yet
    (its creation's answer was lost)."""
    request = payment_request(purchase, services.base_url, mandate)
    if request.payment_id is None:
        request = dataclasses.replace(request, payment_id=approved.payment_id)
    return await provider.capture_payment(request)


async def _apply(
    pool: asyncpg.Pool,
    purchase_id: uuid.UUID,
    outcome: ProviderOutcome,
    event: WebhookEvent | None = None,
) -> Transition:
    async with pool.acquire() as conn, conn.transaction():
        if event is not None:
            # Lock the purchase before recording the event: the event row's foreign key
            # takes a share lock on it, and two callbacks each holding that share lock while
            # waiting for FOR UPDATE would deadlock.
            await conn.execute(
                "SELECT 1 FROM minute_purchases WHERE id = $1 FOR UPDATE", purchase_id
            )
            fresh = await conn.fetchval(
                """INSERT INTO payment_webhook_events (provider, event_id, purchase_id, action)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
                event.provider,
                event.event_id,
                purchase_id,
                event.action,
            )
            if not fresh:  # a replayed callback: acknowledged, nothing applied again
                return Transition(await read_purchase(conn, purchase_id), False, 0)
        return await apply_outcome(conn, purchase_id, outcome)


async def _fail(
    pool: asyncpg.Pool, purchase_id: uuid.UUID, reason: str, provider_status: str = "refused"
) -> Purchase:
    async with pool.acquire() as conn, conn.transaction():
        return (await mark_failed(conn, purchase_id, reason, provider_status)).purchase


def _stored_provider(services: WalletServices, purchase: Purchase) -> PaymentProvider:
    provider = services.providers.by_name(purchase.provider)
    if provider is None:
        raise ProviderNotConfigured(
            f"this purchase was made through {purchase.provider}, which is not configured"
        )
    return provider
