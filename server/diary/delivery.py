"""Delivery of one message: email over SMTP (aiosmtplib), SMS through a provider adapter.

A sender raises ``DeliveryError`` when the message did not go; ``permanent`` marks the
failures that trying again cannot mend (an SMTP 5xx reply). 4xx replies, timeouts and lost
connections are temporary: the worker retries them with back-off.
"""

from __future__ import annotations

import logging
import uuid
from email import errors as email_errors
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiosmtplib

from server.config import Config, SmtpConfig

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, bounced: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        # The mail server refused the recipient for good (a bounce, recorded as such).
        self.bounced = bounced


class EmailSender(Protocol):
    async def send_email(self, message_id: uuid.UUID, to: str, subject: str, body: str) -> None: ...


class SmsSender(Protocol):
    async def send_sms(self, message_id: uuid.UUID, to: str, body: str) -> None: ...


class SmtpEmailSender:
    """One SMTP connection per message: messages are few and spread out over time."""

    def __init__(self, smtp: SmtpConfig, timeout_seconds: float) -> None:
        self._smtp = smtp
        self._timeout = timeout_seconds

    async def send_email(self, message_id: uuid.UUID, to: str, subject: str, body: str) -> None:
        email = EmailMessage()
        email["From"] = self._smtp.sender
        try:
            email["To"] = to
        except (ValueError, email_errors.HeaderParseError, AttributeError, IndexError) as exc:
            # The standard library's address parser fails on some malformed addresses
            # ("x@[") with AttributeError or IndexError rather than a parse error.
            raise ValueError(f"no email can be sent to {to!r}") from exc
        email["Subject"] = subject
        email["Date"] = formatdate(localtime=False, usegmt=True)
        # The outbox row id: a repeat after a crash between send and record is recognisable.
        domain = self._smtp.sender.rpartition("@")[2] or "videoconsult"
        email["Message-ID"] = f"<{message_id}@{domain}>"
        email.set_content(body)
        try:
            await aiosmtplib.send(
                email,
                hostname=self._smtp.host,
                port=self._smtp.port,
                username=self._smtp.username,
                password=self._smtp.password,
                use_tls=self._smtp.use_tls,
                start_tls=self._smtp.start_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            permanent = all(code >= 500 for code in codes)
            raise DeliveryError(
                f"recipient refused: {exc}", permanent=permanent, bounced=permanent
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}",
                permanent=exc.code >= 500,
                bounced=exc.code >= 500,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from None


class LogEmailSender:
    """Development adapter: writes the email to the log instead of sending it."""

    async def send_email(self, message_id: uuid.UUID, to: str, subject: str, body: str) -> None:
        log.info("email %s to %s: %s\n%s", message_id, to, subject, body)


def email_sender_for(config: Config, timeout_seconds: float) -> EmailSender:
    if config.email_provider == "log":
        return LogEmailSender()
    return SmtpEmailSender(config.smtp, timeout_seconds)


class LogSmsSender:
    """Development adapter: writes the SMS to the log instead of sending it."""

    async def send_sms(self, message_id: uuid.UUID, to: str, body: str) -> None:
        log.info("SMS %s to %s: %s", message_id, to, body)


def sms_sender_for(config: Config, timeout_seconds: float = 10.0) -> SmsSender:
    if config.sms_provider == "log":
        return LogSmsSender()
    if config.sms_provider == "twilio":
        from server.sms.twilio import TwilioSmsSender  # the adapter imports DeliveryError

        return TwilioSmsSender(config.twilio, config.base_url, timeout_seconds)
    raise ValueError(f"unknown SMS provider {config.sms_provider!r}")
