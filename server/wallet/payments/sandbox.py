"""The demo provider: every payment is confirmed at once, no money moves."""

from __future__ import annotations

from server.wallet.payments.provider import PaymentRequest, ProviderOutcome


class SandboxProvider:
    name = "sandbox"

    async def create_payment(self, request: PaymentRequest) -> ProviderOutcome:
        return self._confirmed(request)

    async def capture_payment(self, request: PaymentRequest) -> ProviderOutcome:
        return self._confirmed(request)

    async def current_status(self, request: PaymentRequest) -> ProviderOutcome:
        return self._confirmed(request)

    @staticmethod
    def _confirmed(request: PaymentRequest) -> ProviderOutcome:
        return ProviderOutcome(
            kind="confirmed",
            provider_status="sandbox_confirmed",
            payment_id=f"sandbox_{request.purchase_id.hex}",
            amount_pence=request.gross_pence,
        )
