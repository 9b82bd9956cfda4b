"""Delivery mail: the client's report email (under the agency's brand, no operator text), the
agency's held-notice (why, and the operator's steps), and sending them by SMTP.

STRIPE_REPORTS_SMTP_URL is `smtp://[user:password@]host:port[?starttls=true]` or
`smtps://…` (TLS from the first byte). Its password is used here and nowhere else: an SMTP
failure is reported as host, port and what went wrong, never with the URL.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from engine.settings import MailSettings

SMTP_TIMEOUT_SECONDS = 60
TRUE = ("1", "true", "yes", "on")


class MailError(Exception):
    """Mail could not be sent or configured; the message says what to do (no secrets)."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: bool  # smtps: TLS from the start
    starttls: bool
    user: str | None
    password: str | None

    def __repr__(self) -> str:
        return f"SmtpServer({self.host}:{self.port})"  # never the password


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailError("STRIPE_REPORTS_SMTP_URL must look like smtp://user:password@host:587"
                        "?starttls=true or smtps://user:password@host:465.")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise MailError("STRIPE_REPORTS_SMTP_URL has a port that is not a number.") from None
    query = parse_qs(parts.query)
    return SmtpServer(
        host=parts.hostname, port=port, tls=parts.scheme == "smtps",
        starttls=query.get("starttls", ["false"])[0].lower() in TRUE,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _message(settings: MailSettings, to: list[str], subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    sender = settings.mail_from or "reports@localhost"
    message["From"] = f"{settings.brand_name} <{sender}>"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def report_email(settings: MailSettings, to: list[str], client_name: str, period_label: str,
                 pdf: Path) -> EmailMessage:
    """What the client receives: the agency's name, the period and the PDF; nothing else."""
    body = (f"Hello,\n\nAttached is {client_name}'s report for {period_label}: payments, "
            "revenue, subscriptions and balance for the period.\n\n"
            f"Kind regards,\n{settings.brand_name}\n")
    message = _message(settings, to, f"{client_name} report: {period_label}", body)
    message.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf",
                           filename=pdf.name)
    return message


def held_notice(settings: MailSettings, client_name: str, client_id: str, period_label: str,
                to: list[str], reason: str, steps: list[str]) -> EmailMessage:
    """What the agency receives for a held delivery: why, and what to do (operator text)."""
    numbered = "".join(f"  {n}. {step}\n" for n, step in enumerate(steps, 1))
    body = (f"The report of {client_name} ({client_id}) for {period_label} was NOT sent to "
            f"{', '.join(to)}.\n\nWhy: {reason}\n\n"
            + (f"What to do:\n{numbered}\n" if steps else "")
            + "It is sent by itself after the client's next good sync, once per period.\n")
    return _message(settings, [settings.agency_email or ""],
                    f"Held: {client_name} report for {period_label}", body)


def send(settings: MailSettings, message: EmailMessage) -> None:
    """Send by SMTP; MailError (host and port, no credentials) if it cannot."""
    if not settings.smtp_url:
        raise MailError("No SMTP server is set (STRIPE_REPORTS_SMTP_URL).")
    if not settings.mail_from:
        raise MailError("STRIPE_REPORTS_MAIL_FROM is not set: deliveries need a sender "
                        "address beside STRIPE_REPORTS_SMTP_URL.")
    server = parse_smtp_url(settings.smtp_url)
    try:
        _deliver(server, message)
    except (OSError, smtplib.SMTPException) as error:
        detail = getattr(error, "smtp_error", b"") or b""
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        why = text or getattr(error, "strerror", None) or "the connection failed"
        raise MailError(f"The mail server {server.host}:{server.port} did not take the message "
                        f"({why}). Check STRIPE_REPORTS_SMTP_URL and the server.") from None


def _deliver(server: SmtpServer, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    smtp_class = smtplib.SMTP_SSL if server.tls else smtplib.SMTP
    kwargs = {"context": context} if server.tls else {}
    with smtp_class(server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS, **kwargs) as smtp:
        if server.starttls:
            smtp.starttls(context=context)
        if server.user:
            smtp.login(server.user, server.password or "")
        smtp.send_message(message)


def write_eml(message: EmailMessage, path: Path) -> Path:
    """Keep a copy of the message (the outbox): the whole email as the recipient gets it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(message))
    return path
