"""Send a test e-mail at once (not through the queue) and explain the outcome."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.channels import ChannelError, OutgoingMessage, registry
from notifications.models import ChannelType, MessageLog, MessageStatus
from notifications.redaction import redact
from workers import channels


def explain(exc):
    """What an operator should do about the failure, by what happened."""
    kind = getattr(exc, "kind", "")
    where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    if kind == "auth":
        return _("Authentication failed: the SMTP server refused the user or password. Check the user and password "
                 "in EMAIL_URL (or EMAIL_HOST_USER / EMAIL_HOST_PASSWORD); some providers need an app password.")
    if kind == "tls":
        return _("TLS mismatch: the server and EMAIL_URL disagree on encryption. Port 465 usually means smtps:// "
                 "(implicit TLS), port 587 smtp+tls:// (STARTTLS), port 25 or 1025 smtp:// (plain).")
    if kind == "relay":
        return _("Relay denied: the server does not accept mail for that address from us. Log in (user and "
                 "password in EMAIL_URL) or ask the mail administrator to allow relaying from this host.")
    if kind == "refused":
        return _("Connection refused: nothing listens on %(where)s. Check the host and port in EMAIL_URL and that "
                 "the SMTP server is running (make run starts a local one).") % {"where": where}
    if kind == "timeout":
        return _("The server did not answer in time (EMAIL_TIMEOUT): a firewall may be dropping the connection, "
                 "or the port is wrong.")
    if kind == "recipient":
        return _("The server says this mailbox does not exist: check the address.")
    if kind == "sender":
        return _("The server refused our sender address: set DEFAULT_FROM_EMAIL to an address this server "
                 "may send from.")
    if kind == "temporary":
        return _("The server asked us to try again later (a 4xx reply); the queue would retry on its own.")
    return _("The server or the network failed; the reply is above.")


class Command(BaseCommand):
    help = _("Send a test e-mail to an address, at once, and explain the result.")

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, help=_("Address to send to."))
        parser.add_argument("--message", default=None, help=_("Text to send."))

    def handle(self, *args, to=None, message=None, **opts):
        try:
            address = registry.normalize_address(ChannelType.EMAIL, to)
        except registry.InvalidAddress as exc:
            raise CommandError(str(exc)) from None
        outgoing = OutgoingMessage(
            title=_("CMMS test e-mail"),
            body=message or _("If you can read this, the CMMS can send you e-mail. Sent at %(time)s.") % {
                "time": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")},
            emoji="✅",
            context={"message_type": "test_message"},
        )
        log = MessageLog.objects.create(
            channel_type=ChannelType.EMAIL, recipient=address, message_type="test_message",
            title=outgoing.title, body=outgoing.body, status=MessageStatus.SENDING, attempts=1,
        )
        channel = None
        try:
            channel = channels.get(ChannelType.EMAIL)
            message_id = channel.send(address, outgoing)
        except ChannelError as exc:
            error = redact(str(exc))
            MessageLog.objects.filter(pk=log.pk).update(status=MessageStatus.FAILED, last_error=error,
                                                        failed_at=timezone.now())
            raise CommandError(f"{error}\n{explain(exc)}") from None
        finally:
            if channel is not None:
                channel.close()
        MessageLog.objects.filter(pk=log.pk).update(status=MessageStatus.SENT, provider_message_id=message_id[:128],
                                                    sent_at=timezone.now())
        self.stdout.write(self.style.SUCCESS(
            _("Sent to %(address)s through %(server)s (Message-ID %(id)s).") % {
                "address": address, "server": f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}", "id": message_id}))
