"""Run the Telegram bot by long polling (development, sites without public
HTTPS). Records every update for the workers; stops cleanly on SIGTERM/SIGINT."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from notifications.channels import ChannelError, registry
from notifications.channels.telegram import TelegramChannel
from notifications.telegram_polling import Poller
from notifications.telegram_updates import register_commands


class Command(BaseCommand):
    help = _("Receive Telegram updates with getUpdates (long polling) and hand them to the workers.")

    def add_arguments(self, parser):
        parser.add_argument("--poll-timeout", type=int, default=25,
                            help=_("Seconds one getUpdates call waits for updates (1-50)."))

    def handle(self, *args, poll_timeout=25, **opts):
        if not 1 <= poll_timeout <= 50:
            raise CommandError(_("--poll-timeout must be between 1 and 50 seconds."))
        token = registry.get("TELEGRAM").account_secret()
        if not token:
            raise CommandError(_("No token configured: set TELEGRAM_BOT_TOKEN (in the environment or .env) or run "
                             "setup_telegram_bot --token <token>."))
        bot = TelegramChannel(token, settings.TELEGRAM_API_URL, timeout=poll_timeout + 10)
        try:
            register_commands(bot)
        except ChannelError as exc:
            self.stderr.write(_("Could not register the bot's commands (setMyCommands): %(error)s") % {"error": exc})
        poller = Poller(bot, poll_timeout=poll_timeout, say=self._say)
        previous = {sig: signal.signal(sig, lambda *_a: poller.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            poller.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _say(self, text):
        self.stdout.write(f"run_telegram_bot: {text}")
        self.stdout.flush()
