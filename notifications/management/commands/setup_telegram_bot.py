"""Configure the Telegram bot: validate a token with getMe, store it
encrypted, switch the channel on or off, or show the status."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from notifications import crypto
from notifications.channels import ChannelError
from notifications.channels.telegram import TelegramChannel
from notifications.models import ChannelConfig, ChannelType
from workers import channels


class Command(BaseCommand):
    help = _("Validate and store the Telegram bot token, enable or disable the channel, or show its status.")

    def add_arguments(self, parser):
        parser.add_argument("--token", help=_("Bot token from @BotFather (stored encrypted; TELEGRAM_BOT_TOKEN wins)."))
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true", help=_("Enable the Telegram channel."))
        group.add_argument("--disable", action="store_true", help=_("Disable the Telegram channel."))

    def handle(self, *args, token=None, enable=False, disable=False, **opts):
        config, _created = ChannelConfig.objects.get_or_create(channel_type=ChannelType.TELEGRAM)
        if token:
            bot = self._get_me(token.strip())
            config.secret_encrypted = crypto.encrypt(token.strip())
            config.save(update_fields=["secret_encrypted", "updated_at"])
            self.stdout.write(self.style.SUCCESS(_("Token valid for @%(username)s; stored encrypted.") % bot))
            if settings.TELEGRAM_BOT_TOKEN:
                self.stdout.write(self.style.WARNING(
                    _("Note: TELEGRAM_BOT_TOKEN is set in the environment and takes precedence over the stored token.")))
        if enable or disable:
            config.is_enabled = bool(enable)
            config.save(update_fields=["is_enabled", "updated_at"])
            self.stdout.write(self.style.SUCCESS(_("Telegram channel enabled.") if enable else _("Telegram channel disabled.")))
        if not (token or enable or disable):
            self._status(config)

    def _get_me(self, token):
        try:
            return TelegramChannel(token, settings.TELEGRAM_API_URL, timeout=10).get_me()
        except ChannelError as exc:
            raise CommandError(_("The token was rejected: %(error)s") % {"error": exc}) from None

    def _status(self, config):
        source = _("environment (TELEGRAM_BOT_TOKEN)") if settings.TELEGRAM_BOT_TOKEN else (
            _("database (encrypted)") if config.secret_encrypted else _("none"))
        self.stdout.write(_("Telegram channel: %(state)s") % {
            "state": _("enabled") if config.is_enabled else _("disabled")})
        self.stdout.write(_("API URL: %(url)s") % {"url": settings.TELEGRAM_API_URL})
        self.stdout.write(_("Token source: %(source)s") % {"source": source})
        self.stdout.write(_("Messages sent: %(sent)d, failed: %(failed)d, last used: %(last)s") % {
            "sent": config.messages_sent, "failed": config.messages_failed, "last": config.last_used_at or "-"})
        try:
            token = channels.telegram_token()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not token:
            raise CommandError(_("No token configured: set TELEGRAM_BOT_TOKEN or run setup_telegram_bot --token <token>."))
        bot = self._get_me(token)
        self.stdout.write(self.style.SUCCESS(_("Bot: @%(username)s (id %(id)s)") % bot))
