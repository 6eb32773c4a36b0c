from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CmmsConfig(AppConfig):
    name = "cmms"
    verbose_name = _("Maintenance")

    def ready(self):
        from notifications import sms_inbound

        from . import sms_commands, whatsapp

        sms_inbound.register_command(sms_commands.handle)
        whatsapp.register()
