from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import dispatch
from .forms import UserChannelPreferenceForm
from .models import (
    ChannelConfig,
    InAppNotification,
    InboundEvent,
    MessageLog,
    MessageStatus,
    UserChannelPreference,
    WhatsAppTemplate,
)


@admin.register(ChannelConfig)
class ChannelConfigAdmin(admin.ModelAdmin):
    list_display = (
        "channel_type", "is_enabled", "messages_sent", "messages_failed", "last_used_at", "stats_updated_at",
    )
    list_editable = ("is_enabled",)
    readonly_fields = ("messages_sent", "messages_failed", "last_used_at", "stats_updated_at", "has_stored_secret")
    fields = ("channel_type", "is_enabled", "settings", "has_stored_secret", *readonly_fields[:4])

    @admin.display(boolean=True, description=_("token stored (encrypted)"))
    def has_stored_secret(self, obj):
        return obj.has_stored_secret


@admin.register(UserChannelPreference)
class UserChannelPreferenceAdmin(admin.ModelAdmin):
    form = UserChannelPreferenceForm
    list_display = (
        "user", "channel_type", "is_enabled", "channel_user_id", "notify_work_orders", "notify_predictions",
        "notify_reminders", "min_priority", "is_reachable", "opted_out_at",
    )
    list_filter = (
        "channel_type", "is_enabled", "is_reachable", "notify_work_orders", "notify_predictions", "min_priority",
        ("opted_out_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("user__username", "user__first_name", "user__last_name", "channel_user_id")
    autocomplete_fields = ("user",)
    readonly_fields = ("unreachable_since", "window_opened_at", "created_at", "updated_at")
    actions = ["mark_reachable"]

    @admin.action(description=_("Mark selected addresses reachable again"))
    def mark_reachable(self, request, queryset):
        n = queryset.update(is_reachable=True, unreachable_reason="", unreachable_since=None)
        self.message_user(
            request, ngettext("%d preference marked reachable.", "%d preferences marked reachable.", n) % n
        )


@admin.register(WhatsAppTemplate)
class WhatsAppTemplateAdmin(admin.ModelAdmin):
    list_display = ("message_type", "name", "language", "parameters", "quick_reply_buttons", "is_active", "updated_at")
    list_editable = ("is_active",)
    list_filter = ("is_active", "language")
    search_fields = ("message_type", "name")


@admin.register(MessageLog)
class MessageLogAdmin(admin.ModelAdmin):
    list_display = (
        "id", "created_at", "channel_type", "user", "recipient", "message_type", "priority", "status", "attempts",
        "short_error", "provider_message_id",
    )
    list_filter = ("status", "channel_type", "message_type", "priority", "possible_duplicate", "created_at")
    search_fields = (
        "title", "body", "recipient", "user__username", "provider_message_id", "related_object_id", "last_error",
    )
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    actions = ["resend_failed"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("last error"))
    def short_error(self, obj):
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.action(description=_("Re-send selected failed messages"))
    def resend_failed(self, request, queryset):
        # One guarded transition per row (FAILED -> QUEUED): a double click or two
        # admins at once re-send each message once.
        now = timezone.now()
        ids = list(queryset.filter(status=MessageStatus.FAILED).values_list("pk", flat=True))
        won = []
        for pk in ids:
            if MessageLog.objects.filter(pk=pk, status=MessageStatus.FAILED).update(
                status=MessageStatus.QUEUED, attempts=0, next_attempt_at=now, published_at=None, failed_at=None,
                updated_at=now,
            ):
                won.append(pk)
        rows = list(MessageLog.objects.filter(pk__in=won).values_list("pk", "channel_type"))
        dispatch.publish(rows)
        self.message_user(
            request,
            ngettext("%d failed message queued again.", "%d failed messages queued again.", len(won)) % len(won),
            messages.SUCCESS if won else messages.WARNING,
        )


@admin.register(InAppNotification)
class InAppNotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "message_type", "title", "priority", "read_at")
    list_filter = ("message_type", "priority", ("read_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "body", "user__username")
    readonly_fields = ("created_at",)


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    """What came back from providers and people, read-only: the record of
    every update, press and receipt, and what processing did with it."""

    list_display = ("received_at", "provider", "kind", "sender", "user", "status", "outcome")
    list_filter = ("provider", "kind", "status")
    search_fields = ("event_id", "sender", "user__username", "outcome", "error")
    date_hierarchy = "received_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
