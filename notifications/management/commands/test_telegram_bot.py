"""Send a test message at once (not through the queue) and explain the outcome."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.channels import ChannelError, ConfigurationError, OutgoingMessage
from notifications.models import ChannelType, MessageLog, MessageStatus, UserChannelPreference
from notifications.redaction import redact
from workers import channels


def explain(exc):
    """The seed's troubleshooting, attached to the error it is about."""
    text = str(exc).lower()
    if isinstance(exc, ConfigurationError) and exc.code not in (401, 404):
        return _("The Telegram API URL did not answer as the Bot API: check TELEGRAM_API_URL.")
    if isinstance(exc, ConfigurationError):
        return _("Unauthorized: the bot token is wrong, expired or was revoked. Get a new one from @BotFather and "
                 "set TELEGRAM_BOT_TOKEN (or run setup_telegram_bot --token).")
    if "chat not found" in text:
        return _("Chat not found: the user has not started a chat with the bot (send /start to it), the chat_id "
                 "is wrong, or the bot was blocked.")
    if "blocked" in text:
        return _("The user blocked the bot: they must unblock it and send /start again.")
    if "deactivated" in text:
        return _("The Telegram account was deleted or deactivated.")
    if "kicked" in text:
        return _("The bot was removed from the group: add it again.")
    if exc.retry_after:
        return _("Telegram asked us to slow down: retry in %(n)s s.") % {"n": exc.retry_after}
    if exc.code is None:
        return _("Telegram could not be reached (no connection, or no answer in time): check the network, a proxy, "
                 "or TELEGRAM_API_URL.")
    return _("Telegram failed; try again later.")


def provider_answer(exc):
    """What Telegram said, quoted as it said it (the Bot API speaks English)."""
    if exc.code is None:
        return ""
    text = str(exc)
    head = f"Telegram {exc.code}: "
    text = text[len(head):] if text.startswith(head) else text
    return _("Telegram answered (HTTP %(code)s): «%(text)s»") % {"code": exc.code, "text": text.split(" — ")[0]}


class Command(BaseCommand):
    help = _("Send a test Telegram message to a user or chat id, at once, and explain the result.")

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--username", help=_("User whose Telegram preference holds the chat id."))
        target.add_argument("--chat-id", help=_("Telegram chat id to send to directly."))
        parser.add_argument("--message", default=None, help=_("Text to send."))

    def handle(self, *args, username=None, chat_id=None, message=None, **opts):
        user = None
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise CommandError(_("Unknown user %(username)r.") % {"username": username})
            pref = UserChannelPreference.objects.filter(user=user, channel_type=ChannelType.TELEGRAM).first()
            if pref is None or not pref.channel_user_id:
                raise CommandError(_("User %(username)r has no Telegram chat id: add a Telegram preference in "
                                     "admin (Omnichannel Bot > User channel preferences).") % {"username": username})
            chat_id = pref.channel_user_id
        try:
            if not channels.telegram_token():
                raise CommandError(_("No Telegram token configured: set TELEGRAM_BOT_TOKEN (in the environment or "
                                     ".env) or run setup_telegram_bot --token <token>. Under make run the sandbox's "
                                     "token is in var/run.env."))
        except ValueError:
            raise CommandError(_("The stored token cannot be decrypted (FIELD_ENCRYPTION_KEY or DJANGO_SECRET_KEY "
                                 "changed): store it again with setup_telegram_bot --token.")) from None
        outgoing = OutgoingMessage(
            title=_("CMMS test message"),
            body=message or _("If you can read this, the CMMS bot can reach this chat. Sent at %(time)s.") % {
                "time": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")},
            emoji="✅",
        )
        log = MessageLog.objects.create(
            user=user, channel_type=ChannelType.TELEGRAM, recipient=str(chat_id), message_type="test_message",
            title=outgoing.title, body=outgoing.body, status=MessageStatus.SENDING, attempts=1,
        )
        try:
            message_id = channels.get(ChannelType.TELEGRAM).send(str(chat_id), outgoing)
        except ChannelError as exc:
            error = redact(str(exc))
            MessageLog.objects.filter(pk=log.pk).update(status=MessageStatus.FAILED, last_error=error,
                                                        failed_at=timezone.now())
            answer = provider_answer(exc)
            raise CommandError(f"{answer}\n{explain(exc)}" if answer else explain(exc)) from None
        MessageLog.objects.filter(pk=log.pk).update(status=MessageStatus.SENT, provider_message_id=message_id,
                                                    sent_at=timezone.now())
        self.stdout.write(self.style.SUCCESS(
            _("Sent to chat %(chat)s (Telegram message id %(id)s).") % {"chat": chat_id, "id": message_id}))
