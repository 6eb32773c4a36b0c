from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CmmsConfig(AppConfig):
    name = "cmms"
    verbose_name = _("Maintenance")
