from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .escalation_admin import escalation_steps_field, timeline_field, work_order_urls
from .models import (
    OPEN_STATUSES,
    Asset,
    FailurePrediction,
    InvalidTransition,
    MaintenancePlan,
    MLClient,
    User,
    WorkOrder,
    WorkOrderStatus,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "get_full_name", "email", "role", "site", "is_active")
    list_filter = ("role", "is_active", "is_staff", "site")
    search_fields = ("username", "first_name", "last_name", "email", "phone")
    fieldsets = BaseUserAdmin.fieldsets + ((_("Maintenance"), {"fields": ("role", "phone", "site")}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + ((_("Maintenance"), {"fields": ("role", "phone", "site")}),)
    actions = ["link_telegram"]

    @admin.action(description=_("Link Telegram (one-time link)"))
    def link_telegram(self, request, queryset):
        """A one-time deep link per user, shown once: opening it in Telegram
        and pressing Start links that chat (notifications.telegram_link)."""
        from django.conf import settings
        from django.utils.html import format_html

        from notifications.channels import ChannelError
        from notifications.telegram_link import bot_username, create_link

        try:
            username = bot_username()
        except ChannelError as exc:
            self.message_user(request, _("Telegram is not reachable: %(error)s") % {"error": exc}, messages.ERROR)
            return
        for user in queryset.filter(is_active=True):
            link = create_link(user, username)
            self.message_user(request, format_html(
                _("Telegram link for {user} (valid {hours} h, once): <a href=\"{link}\">{link}</a>"),
                user=user.username, hours=f"{settings.TELEGRAM_LINK_TTL_H:g}", link=link), messages.SUCCESS)


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "asset_type", "site", "criticality", "open_work_orders", "is_active")
    list_filter = ("site", "criticality", "asset_type", "is_active")
    search_fields = ("code", "name", "site", "asset_type")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _open=Count("work_orders", filter=Q(work_orders__status__in=OPEN_STATUSES))
        )

    @admin.display(description=_("open work orders"), ordering="_open")
    def open_work_orders(self, obj):
        return obj._open


class PredictionInline(admin.TabularInline):
    model = FailurePrediction
    fields = ("created_at", "failure_mode", "risk_level", "probability", "time_to_failure", "model_version",
              "action", "alerted")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created_at",)
    verbose_name_plural = _("predictions behind this work order")

    def has_add_permission(self, request, obj=None):
        return False


class WorkOrderForm(forms.ModelForm):
    class Meta:
        model = WorkOrder
        fields = "__all__"

    def clean_assignee(self):
        assignee = self.cleaned_data.get("assignee")
        if "assignee" not in self.changed_data:
            return assignee
        if assignee is None:
            raise forms.ValidationError(_("Reassign the work order to someone else, or cancel it."))
        if self.instance.pk and not self.instance.can_transition(WorkOrderStatus.ASSIGNED):
            raise forms.ValidationError(_("A %(status)s work order cannot be reassigned.") % {
                "status": self.instance.get_status_display()})
        if not assignee.is_active:
            raise forms.ValidationError(_("The assignee must be an active user."))
        return assignee


@admin.register(WorkOrder)
class WorkOrderAdmin(admin.ModelAdmin):
    form = WorkOrderForm
    list_display = ("number", "title", "asset", "priority", "status", "assignee", "due_at", "source", "risk_level",
                    "created_at")
    list_filter = ("status", "priority", "source", "risk_level", "asset__site")
    search_fields = ("number", "title", "asset__code", "asset__name", "assignee__username", "assignee__last_name",
                     "failure_mode")
    list_select_related = ("asset", "assignee")
    autocomplete_fields = ("asset", "assignee", "maintenance_plan")
    date_hierarchy = "created_at"
    readonly_fields = ("number", "status", "source", "failure_mode", "risk_level", "rejection_reason", "created_at",
                       "assigned_at", "accepted_at", "started_at", "closed_at", "last_alert_at", "escalation_steps", "timeline")
    fieldsets = (
        (None, {"fields": ("number", "asset", "title", "description", "priority", "due_at")}),
        (_("Assignment"), {"fields": ("status", "assignee", "rejection_reason")}),
        (_("Origin"), {"fields": ("source", "failure_mode", "risk_level", "maintenance_plan", "last_alert_at")}),
        (_("History"), {"fields": ("created_at", "assigned_at", "accepted_at", "started_at", "closed_at")}),
        (_("Escalation"), {"fields": ("escalation_steps",)}),
        (_("Timeline"), {"classes": ("collapse",), "fields": ("timeline",)}),
    )
    inlines = [PredictionInline]
    actions = ["complete", "cancel"]

    @admin.display(description=_("escalation steps"))
    def escalation_steps(self, obj):
        return escalation_steps_field(obj)

    @admin.display(description=_("timeline"))
    def timeline(self, obj):
        return timeline_field(obj)

    def get_urls(self):
        return work_order_urls(self) + super().get_urls()

    def save_model(self, request, obj, form, change):
        """An assignee chosen here goes through WorkOrder.assign(), so the
        person is notified (after the admin's transaction commits)."""
        if "assignee" not in form.changed_data:
            return super().save_model(request, obj, form, change)
        new_assignee = obj.assignee
        obj.assignee_id = form.initial.get("assignee") if change else None
        super().save_model(request, obj, form, change)
        obj.assign(new_assignee)

    def _transition(self, request, queryset, method, done_message):
        done, refused = 0, []
        for order in queryset:
            try:
                getattr(order, method)()
                done += 1
            except InvalidTransition:
                refused.append(order.number)
        if done:
            self.message_user(request, done_message(done), messages.SUCCESS)
        if refused:
            self.message_user(request, _("Not changed (not allowed from their status): %(numbers)s") % {
                "numbers": ", ".join(refused)}, messages.WARNING)

    @admin.action(description=_("Mark selected work orders as done"))
    def complete(self, request, queryset):
        self._transition(request, queryset, "complete",
                         lambda n: ngettext("%d work order done.", "%d work orders done.", n) % n)

    @admin.action(description=_("Cancel selected work orders"))
    def cancel(self, request, queryset):
        self._transition(request, queryset, "cancel",
                         lambda n: ngettext("%d work order cancelled.", "%d work orders cancelled.", n) % n)


@admin.register(FailurePrediction)
class FailurePredictionAdmin(admin.ModelAdmin):
    """Read-only: predictions arrive through record_prediction (the ML API or
    simulate_predictions), which is what opens and alerts work orders."""

    list_display = ("created_at", "asset", "failure_mode", "risk_level", "probability", "action", "alerted",
                    "work_order", "model_version", "ml_client")
    list_filter = ("risk_level", "action", "alerted", "model_version", "asset__site", "ml_client")
    search_fields = ("asset__code", "asset__name", "failure_mode", "external_id", "work_order__number")
    list_select_related = ("asset", "work_order", "ml_client")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MaintenancePlan)
class MaintenancePlanAdmin(admin.ModelAdmin):
    list_display = ("asset", "task", "interval_days", "next_due_date", "assigned_technician", "last_done_date",
                    "is_active")
    list_filter = ("is_active", "asset__site", "assigned_technician")
    search_fields = ("task", "asset__code", "asset__name", "assigned_technician__username")
    list_select_related = ("asset", "assigned_technician")
    autocomplete_fields = ("asset", "assigned_technician")
    date_hierarchy = "next_due_date"
    actions = ["mark_done"]

    @admin.action(description=_("Mark selected plans done today (next due date moves one interval on)"))
    def mark_done(self, request, queryset):
        for plan in queryset:
            plan.mark_done()
        n = queryset.count()
        self.message_user(request, ngettext("%d plan updated.", "%d plans updated.", n) % n)


@admin.register(MLClient)
class MLClientAdmin(admin.ModelAdmin):
    """Tokens are shown once, when a client is created or its token rotated."""

    list_display = ("name", "token_prefix", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "token_prefix")
    readonly_fields = ("token_prefix", "created_at", "last_used_at")
    actions = ["rotate_token"]

    def save_model(self, request, obj, form, change):
        token = None if change else obj.set_new_token()
        super().save_model(request, obj, form, change)
        if token:
            self._show_token(request, obj, token)

    @admin.action(description=_("Rotate token (the old one stops working)"))
    def rotate_token(self, request, queryset):
        for client in queryset:
            token = client.set_new_token()
            client.save(update_fields=["token_prefix", "token_hash"])
            self._show_token(request, client, token)

    def _show_token(self, request, client, token):
        self.message_user(
            request,
            _("Token for %(name)s (copy it now, it is not shown again): %(token)s") % {
                "name": client.name, "token": token},
            messages.WARNING,
        )
