"""Create the admin user, demo users with channel preferences, and demo assets
and maintenance plans (idempotent).

Used by ``make run`` on first start so that a newcomer can log in and watch
messages reach the Telegram sandbox. ``--summary-json FILE`` also writes the
logins and the demo users' Telegram chats for ``make run``: the banner shows
the logins, and the sandbox knows exactly those chats (any other chat id
answers "chat not found", as Telegram would).
"""

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.translation import gettext as _

from cmms.demo import create_demo_assets
from notifications.models import ChannelType, UserChannelPreference, WhatsAppTemplate

# The demo's well-known passwords: only where DEBUG is on (make run). Anywhere
# else a random one is made and printed once, so admin/admin never opens a
# server that was set up with this command.
WELL_KNOWN_PASSWORDS = {"admin", "demo1234"}

DEMO_USERS = [
    # username, first, last, role, site, telegram chat id
    ("operador1", "Ana", "Rojas", "OPERATOR", "Mina Norte", "100001"),
    ("operador2", "Luis", "Muñoz", "OPERATOR", "Mina Norte", "100002"),
    ("operador3", "Carla", "Díaz", "OPERATOR", "Planta Sur", "100003"),
    ("tecnico1", "Jorge", "Pérez", "TECHNICIAN", "Mina Norte", "100011"),
    ("supervisor1", "Marta", "Soto", "SUPERVISOR", "Mina Norte", "100021"),
]

# Demo phones for SMS (the Twilio sandbox's page shows what each receives);
# the preference gets the SMS default minimum priority (critical).
DEMO_SMS_PHONES = {"operador1": "+56987650001", "operador2": "+56987650002", "supervisor1": "+56987650021"}


class Command(BaseCommand):
    help = _("Create the admin user and demo users with Telegram and in-app preferences (idempotent).")

    def add_arguments(self, parser):
        parser.add_argument("--admin-password", default=os.environ.get("DEMO_ADMIN_PASSWORD", "admin"))
        parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", "demo1234"))
        parser.add_argument("--summary-json", metavar="FILE", default=None,
                            help=_("Also write the logins and the demo users' Telegram chats to FILE (JSON)."))

    @transaction.atomic
    def handle(self, *args, **opts):
        User = get_user_model()
        users = []
        randomized = set()
        if not settings.DEBUG:
            for option in ("admin_password", "password"):
                if opts[option] in WELL_KNOWN_PASSWORDS:
                    opts[option] = secrets.token_urlsafe(12)
                    randomized.add(option)
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", opts["admin_password"], role="ADMIN")
            users.append("admin")
        for username, first, last, role, site, chat_id in DEMO_USERS:
            user, new = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "role": role, "site": site,
                          "email": f"{username}@example.com"},
            )
            if new:
                user.set_password(opts["password"])
                user.save(update_fields=["password"])
                users.append(username)
            UserChannelPreference.objects.get_or_create(
                user=user, channel_type=ChannelType.TELEGRAM, defaults={"channel_user_id": chat_id}
            )
            UserChannelPreference.objects.get_or_create(user=user, channel_type=ChannelType.IN_APP)
            if username in DEMO_SMS_PHONES:
                UserChannelPreference.objects.get_or_create(
                    user=user, channel_type=ChannelType.SMS, defaults={"channel_user_id": DEMO_SMS_PHONES[username]}
                )
            UserChannelPreference.objects.get_or_create(  # the WhatsApp sandbox's phones: +569 + chat id + 00
                user=user, channel_type=ChannelType.WHATSAPP, defaults={"channel_user_id": f"+569{chat_id}00"})
            UserChannelPreference.objects.get_or_create(  # make run captures it at the local SMTP server's page
                user=user, channel_type=ChannelType.EMAIL, defaults={"channel_user_id": user.email})
        # The template the WhatsApp sandbox has "approved" (sandbox/whatsapp.py).
        WhatsAppTemplate.objects.get_or_create(message_type="work_order_assigned", defaults={
            "name": "cmms_orden_asignada", "language": "es", "quick_reply_buttons": 2,
            "parameters": ["number", "title", "asset_name", "due_at"]})
        created = create_demo_assets()
        groups = [(_("Users created: %(items)s"), users), (_("Assets created: %(items)s"), created["assets"]),
                  (_("Maintenance plans created: %(items)s"), created["plans"])]
        for template, items in groups:
            if items:
                self.stdout.write(self.style.SUCCESS(template % {"items": ", ".join(items)}))
        if not any(items for _t, items in groups):
            self.stdout.write(_("Nothing to create: the demo users, assets and plans already exist."))
        self.stdout.write(_("Logins (user / password):"))
        def shown(option, username):
            # A random password is shown only to whoever set it: an account that
            # existed before this run keeps the password it had.
            return "********" if option in randomized and username not in users else opts[option]

        self.stdout.write("  " + _("%(user)s / %(password)s  (superuser)") % {
            "user": "admin", "password": shown("admin_password", "admin")})
        chats = self._demo_chats()
        for username, _f, _l, role, _s, _c in DEMO_USERS:
            login = {"user": username, "password": shown("password", username), "role": role,
                     "chat": chats.get(username, {}).get("chat_id", "-"), "phone": DEMO_SMS_PHONES.get(username)}
            if login["phone"]:
                line = _("%(user)s / %(password)s  (%(role)s, Telegram chat %(chat)s, SMS %(phone)s)") % login
            else:
                line = _("%(user)s / %(password)s  (%(role)s, Telegram chat %(chat)s)") % login
            self.stdout.write("  " + line)
        if opts["summary_json"]:
            self._write_summary(Path(opts["summary_json"]), opts, chats)

    @staticmethod
    def _demo_chats():
        """The demo users' Telegram chats as stored (an admin may have changed one)."""
        prefs = UserChannelPreference.objects.filter(
            user__username__in=[u[0] for u in DEMO_USERS], channel_type=ChannelType.TELEGRAM
        ).exclude(channel_user_id="").select_related("user")
        return {p.user.username: {"chat_id": p.channel_user_id.strip(), "first_name": p.user.first_name,
                                  "last_name": p.user.last_name, "username": p.user.username} for p in prefs}

    @staticmethod
    def _write_summary(path, opts, chats):
        logins = [{"username": "admin", "password": opts["admin_password"], "role": "superuser", "chat_id": None}]
        logins += [{"username": u, "password": opts["password"], "role": role, "chat_id": chats.get(u, {}).get("chat_id"),
                    "sms": DEMO_SMS_PHONES.get(u)} for u, _f, _l, role, _s, _c in DEMO_USERS]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"logins": logins, "chats": list(chats.values())}, ensure_ascii=False, indent=1),
                        encoding="utf-8")
