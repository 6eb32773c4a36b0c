from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "get_full_name", "email", "role", "site", "is_active")
    list_filter = ("role", "is_active", "is_staff", "site")
    search_fields = ("username", "first_name", "last_name", "email", "phone")
    fieldsets = BaseUserAdmin.fieldsets + ((_("Maintenance"), {"fields": ("role", "phone", "site")}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + ((_("Maintenance"), {"fields": ("role", "phone", "site")}),)
