from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Omnichannel Bot")

    def ready(self):
        from . import inbound, sms_inbound

        # Twilio status callbacks and inbound SMS; cmms adds its commands
        # (ACEPTAR/RECHAZAR) with sms_inbound.register_command.
        inbound.register_handler("SMS", sms_inbound.handle)
