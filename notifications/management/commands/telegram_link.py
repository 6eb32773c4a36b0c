"""Print a one-time Telegram deep link that links a user's chat."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from notifications.channels import ChannelError
from notifications.telegram_link import bot_username, create_link


class Command(BaseCommand):
    help = _("Create a one-time link that links a user's Telegram chat; the link is printed alone on the last line.")

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True, help=_("The CMMS user to link."))

    def handle(self, *args, username, **opts):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(_("No user %(username)r.") % {"username": username})
        if not user.is_active:
            raise CommandError(_("User %(username)s is not active.") % {"username": username})
        try:
            bot = bot_username()
        except ChannelError as exc:
            raise CommandError(_("Telegram is not reachable (getMe failed): %(error)s") % {"error": exc}) from None
        link = create_link(user, bot)
        self.stdout.write(_("Open this link in Telegram as %(username)s and press Start; it works once, for %(hours)g h:")
                          % {"username": username, "hours": settings.TELEGRAM_LINK_TTL_H})
        self.stdout.write(link)
