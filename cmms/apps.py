from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CmmsConfig(AppConfig):
    name = "cmms"
    verbose_name = _("Maintenance")

    def ready(self):
        from notifications import holds, inbound, sms_inbound

        from . import escalation, shifts, sms_commands, telegram_bot, whatsapp  # noqa: F401 - escalation: message types

        sms_inbound.register_command(sms_commands.handle)
        whatsapp.register()
        inbound.register_handler("TELEGRAM", telegram_bot.handle_update)

        from notifications import documents

        from . import work_order_pdf

        documents.register("work_order", work_order_pdf.attachment)
        holds.register(shifts.held_until)
