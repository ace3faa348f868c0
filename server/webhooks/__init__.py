"""Outgoing webhooks: events a practice's systems subscribe to, signed as Standard Webhooks.

``events.emit_event`` is the one way to raise an event (inside the transaction of the change
it reports); ``worker`` delivers it through a retrying outbox; ``signing`` makes and checks
the ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers.
"""
