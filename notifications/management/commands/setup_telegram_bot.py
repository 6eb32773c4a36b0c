"""Configure the Telegram bot: validate a token with getMe, store it
encrypted, switch the channel on or off, or show the status.

Exit status: 0 when the command did what was asked. The status view (no
arguments) is a report and exits 0 even when it finds a problem, which it
names; ``--check`` makes a problem exit 1 (for scripts).
"""

import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import channel_stats, crypto
from notifications.channels import ChannelError, ConfigurationError
from notifications.channels.telegram import TelegramChannel
from notifications.models import ChannelConfig, ChannelType
from workers import channels

# @BotFather's tokens: the bot's numeric id, a colon, then the secret part.
TOKEN_SHAPE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{10,}$")


def format_local(when):
    """A timestamp in the configured time zone, to the second."""
    if when is None:
        return "-"
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S %Z")


def token_origin(config):
    if settings.TELEGRAM_BOT_TOKEN:
        origin = getattr(settings, "TELEGRAM_BOT_TOKEN_ORIGIN", "environment")
        if origin == "make run":
            return _("the local sandbox started by make run (var/run.env)")
        if origin == ".env":
            return _(".env file (TELEGRAM_BOT_TOKEN)")
        return _("environment (TELEGRAM_BOT_TOKEN)")
    if config.secret_encrypted:
        return _("database (encrypted)")
    return _("none")


class Command(BaseCommand):
    help = _("Validate and store the Telegram bot token, enable or disable the channel, or show its status.")

    def add_arguments(self, parser):
        parser.add_argument("--token", help=_("Bot token from @BotFather (stored encrypted; TELEGRAM_BOT_TOKEN wins)."))
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true", help=_("Enable the Telegram channel."))
        group.add_argument("--disable", action="store_true", help=_("Disable the Telegram channel."))
        parser.add_argument("--check", action="store_true",
                            help=_("With the status view: exit 1 when the bot cannot be verified."))
        add_webhook_arguments(parser)

    def handle(self, *args, token=None, enable=False, disable=False, check=False, **opts):
        if opts.get("webhook_url") or opts.get("delete_webhook"):
            return handle_webhook(self, opts.get("webhook_url"), opts.get("delete_webhook"))
        if token is not None:
            token = token.strip()
            if not TOKEN_SHAPE.match(token):
                # Refused before any network call: a pasted URL or half a token
                # would otherwise read as "rejected by Telegram".
                raise CommandError(_("That is not a bot token: @BotFather's tokens look like 123456789:ABC-def_123..."
                                     " (the bot's numeric id, a colon, then at least 10 letters, digits, - or _)."))
        config, _created = ChannelConfig.objects.get_or_create(channel_type=ChannelType.TELEGRAM)
        if token:
            bot = self._get_me(token)
            config.secret_encrypted = crypto.encrypt(token)
            config.save(update_fields=["secret_encrypted", "updated_at"])
            self.stdout.write(self.style.SUCCESS(_("Token valid for @%(username)s; stored encrypted.") % bot))
            if settings.TELEGRAM_BOT_TOKEN:
                self.stdout.write(self.style.WARNING(
                    _("Note: TELEGRAM_BOT_TOKEN is set (%(origin)s) and takes precedence over the stored token.")
                    % {"origin": token_origin(config)}))
        if enable or disable:
            config.is_enabled = bool(enable)
            config.save(update_fields=["is_enabled", "updated_at"])
            self.stdout.write(self.style.SUCCESS(_("Telegram channel enabled.") if enable else _("Telegram channel disabled.")))
        if not (token or enable or disable):
            problem = self._status(config)
            if problem:
                self.stderr.write(self.style.ERROR(problem))
                if check:
                    raise CommandError(_("The Telegram bot could not be verified."), returncode=1)

    def _get_me(self, token):
        """getMe, with each way of failing named for what it is."""
        url = settings.TELEGRAM_API_URL
        try:
            return TelegramChannel(token, url, timeout=10).get_me()
        except ConfigurationError as exc:
            if exc.code in (401, 404):
                raise CommandError(_("Telegram rejected the token (Unauthorized): it is wrong, or it was revoked. "
                                     "Get the current one from @BotFather.")) from None
            raise CommandError(_("%(url)s answered, but not as the Telegram Bot API (HTTP %(code)s): check "
                                 "TELEGRAM_API_URL.") % {"url": url, "code": exc.code}) from None
        except ChannelError as exc:
            if exc.code is None:
                raise CommandError(_("Telegram could not be reached at %(url)s (no connection, or no answer in "
                                     "time). Check the network, a proxy, or TELEGRAM_API_URL; the token was not "
                                     "checked.") % {"url": url}) from None
            raise CommandError(_("Telegram answered with an error (HTTP %(code)s); try again later. The token was "
                                 "not checked.") % {"code": exc.code}) from None

    def _status(self, config):
        """Print the status; returns a problem to report, or None."""
        stats = channel_stats.live_stats().get(ChannelType.TELEGRAM, channel_stats.empty())
        self.stdout.write(_("Telegram channel: %(state)s") % {
            "state": _("enabled") if config.is_enabled else _("disabled")})
        self.stdout.write(_("API URL: %(url)s") % {"url": settings.TELEGRAM_API_URL})
        self.stdout.write(_("Token source: %(source)s") % {"source": token_origin(config)})
        self.stdout.write(_("Messages sent: %(sent)d, failed: %(failed)d, last used: %(last)s") % {
            "sent": stats["sent"], "failed": stats["failed"], "last": format_local(stats["last_used"])})
        try:
            token = channels.telegram_token()
        except ValueError:
            return _("The stored token cannot be decrypted (FIELD_ENCRYPTION_KEY or DJANGO_SECRET_KEY changed): "
                     "store it again with setup_telegram_bot --token.")
        if not token:
            return _("No token configured: set TELEGRAM_BOT_TOKEN (in the environment or .env) or run "
                     "setup_telegram_bot --token <token>.")
        try:
            bot = self._get_me(token)
        except CommandError as exc:
            return str(exc)
        self.stdout.write(self.style.SUCCESS(_("Bot: @%(username)s (id %(id)s)") % bot))
        write_webhook_status(self, token)
        return None


# -- webhook mode (the interactive bot) --------------------------------------------
# Kept apart from the token and channel switches above.


def add_webhook_arguments(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--webhook-url", help=_(
        "Register this public HTTPS URL (ending in /telegram/webhook/) with setWebhook, with "
        "TELEGRAM_WEBHOOK_SECRET as its secret token."))
    group.add_argument("--delete-webhook", action="store_true",
                       help=_("Remove the webhook (back to polling with run_telegram_bot)."))


def _bot(token=None):
    token = token or channels.telegram_token()
    if not token:
        raise CommandError(_("No token configured: set TELEGRAM_BOT_TOKEN (in the environment or .env) or run "
                             "setup_telegram_bot --token <token>."))
    return TelegramChannel(token, settings.TELEGRAM_API_URL, timeout=10)


def handle_webhook(command, url, delete):
    from notifications.channels.telegram import delete_webhook, set_webhook
    from notifications.telegram_polling import remember_mode
    from notifications.telegram_updates import ALLOWED_UPDATES, register_commands

    bot = _bot()
    try:
        if delete:
            delete_webhook(bot)
            remember_mode("polling")
            command.stdout.write(command.style.SUCCESS(_("Webhook removed; run_telegram_bot can poll now.")))
            return
        secret = settings.TELEGRAM_WEBHOOK_SECRET
        if not secret:
            raise CommandError(_("Set TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Za-z0-9_-) first: "
                                 "the webhook view refuses every request without it."))
        set_webhook(bot, url, secret, ALLOWED_UPDATES)
        register_commands(bot)
        remember_mode("webhook", (bot.get_me() or {}).get("username"))
    except ChannelError as exc:
        raise CommandError(_("Telegram refused: %(error)s") % {"error": exc}) from None
    command.stdout.write(command.style.SUCCESS(_("Webhook set to %(url)s; commands registered.") % {"url": url}))
    write_webhook_status(command, bot=bot)


def write_webhook_status(command, token=None, bot=None):
    from notifications.channels.telegram import get_webhook_info

    try:
        info = get_webhook_info(bot or _bot(token))
    except ChannelError as exc:
        command.stdout.write(_("Webhook: unknown (%(error)s)") % {"error": exc})
        return
    if not info.get("url"):
        command.stdout.write(_("Webhook: none (updates by polling: manage.py run_telegram_bot)"))
        return
    command.stdout.write(_("Webhook: %(url)s, %(pending)d update(s) pending") % {
        "url": info["url"], "pending": info.get("pending_update_count", 0)})
    if info.get("last_error_message"):
        command.stdout.write(command.style.WARNING(_("Webhook last error: %(error)s") % {
            "error": info["last_error_message"]}))
