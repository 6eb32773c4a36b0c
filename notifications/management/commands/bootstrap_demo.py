"""Create the admin user, demo users with channel preferences, and demo assets
and maintenance plans (idempotent).

Used by ``make run`` on first start so that a newcomer can log in and watch
messages reach the Telegram sandbox.
"""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from cmms.demo import create_demo_assets
from notifications.models import ChannelType, UserChannelPreference, WhatsAppTemplate

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
    help = "Create the admin user and demo users with Telegram and in-app preferences (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--admin-password", default=os.environ.get("DEMO_ADMIN_PASSWORD", "admin"))
        parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", "demo1234"))

    @transaction.atomic
    def handle(self, *args, **opts):
        User = get_user_model()
        created = []
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", opts["admin_password"], role="ADMIN")
            created.append("admin")
        for username, first, last, role, site, chat_id in DEMO_USERS:
            user, new = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "role": role, "site": site,
                          "email": f"{username}@example.com"},
            )
            if new:
                user.set_password(opts["password"])
                user.save(update_fields=["password"])
                created.append(username)
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
        # The template the WhatsApp sandbox has "approved" (sandbox/whatsapp.py).
        WhatsAppTemplate.objects.get_or_create(message_type="work_order_assigned", defaults={
            "name": "cmms_orden_asignada", "language": "es", "quick_reply_buttons": 2,
            "parameters": ["number", "title", "asset_name", "due_at"]})
        created += create_demo_assets()
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created: {', '.join(created)}"))
        self.stdout.write("Logins:")
        self.stdout.write(f"  admin / {opts['admin_password']}  (superuser)")
        for username, _f, _l, role, _s, chat_id in DEMO_USERS:
            phone = f", SMS {DEMO_SMS_PHONES[username]}" if username in DEMO_SMS_PHONES else ""
            self.stdout.write(f"  {username} / {opts['password']}  ({role}, Telegram chat {chat_id}{phone})")
