from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    OPERATOR = "OPERATOR", _("Operator")
    TECHNICIAN = "TECHNICIAN", _("Technician")
    SUPERVISOR = "SUPERVISOR", _("Supervisor")
    ADMIN = "ADMIN", _("Administrator")


class User(AbstractUser):
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.OPERATOR, db_index=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True, help_text=_("E.164, e.g. +56912345678"))
    site = models.CharField(_("site"), max_length=100, blank=True, help_text=_("Site or area the user works at."))

    class Meta(AbstractUser.Meta):
        verbose_name = _("user")
        verbose_name_plural = _("users")
        swappable = "AUTH_USER_MODEL"

    def __str__(self):
        return self.get_full_name() or self.username
