"""The "Omnichannel Bot" admin, written for a supervisor: what was sent to
whom, on which channel, what went wrong, in sentences and local time."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import channel_stats, dispatch, message_types, role_broadcasts
from .forms import UserChannelPreferenceForm
from .models import (
    ChannelConfig,
    InAppNotification,
    InboundEvent,
    MessageLog,
    MessageStatus,
    RoleBroadcast,
    UserChannelPreference,
    WhatsAppTemplate,
)


def short_duration(delta):
    """``2 d 16 h``, ``3 h 5 min``, ``4 min 10 s``, ``12 s``: the two largest units."""
    if delta is None:
        return "-"
    seconds = max(0, int(delta.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2 or (parts and seconds == 0):
            break
    return " ".join(parts)


def type_label(key):
    """``📋 Orden de trabajo asignada`` for a registered type, the key otherwise."""
    try:
        mtype = message_types.get(key)
    except message_types.UnknownMessageType:
        return key
    return f"{mtype.emoji} {mtype.label or key}"


class MessageTypeFilter(admin.SimpleListFilter):
    title = _("message type")
    parameter_name = "message_type"

    def lookups(self, request, model_admin):
        return [(key, type_label(key)) for key in sorted(message_types.all_types())]

    def queryset(self, request, queryset):
        return queryset.filter(message_type=self.value()) if self.value() else queryset


def short_when(moment):
    """Day and time in the configured zone (a list's date hierarchy gives the year)."""
    return timezone.localtime(moment).strftime("%d-%m %H:%M")


def summary_html(title, message_type):
    """A list's message column: the title, cut at 70 characters, over its type."""
    title = title if len(title) <= 70 else title[:69] + "…"
    return format_html('{}<br><span class="quiet">{}</span>', title, type_label(message_type))


class ChannelConfigForm(forms.ModelForm):
    class Meta:
        model = ChannelConfig
        fields = ("channel_type", "is_enabled", "settings")
        help_texts = {
            "settings": _(
                'A JSON object of options for this channel; leave {} (the default). Telegram reads nothing from it: '
                "its token and API URL come from TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL (environment or .env) or "
                "from setup_telegram_bot --token. Never put a secret here: this field is stored in clear."
            ),
        }

    def clean_settings(self):
        value = self.cleaned_data["settings"]
        if not isinstance(value, dict):
            raise forms.ValidationError(_('Settings must be a JSON object, e.g. {} or {"key": "value"}.'))
        return value


@admin.register(ChannelConfig)
class ChannelConfigAdmin(admin.ModelAdmin):
    form = ChannelConfigForm
    list_display = ("channel_type", "is_enabled", "live_sent", "live_failed", "live_last_used")
    list_editable = ("is_enabled",)
    readonly_fields = ("live_sent", "live_failed", "live_last_used", "has_stored_secret")
    fields = ("channel_type", "is_enabled", "settings", "has_stored_secret", "live_sent", "live_failed",
              "live_last_used")

    def get_queryset(self, request):
        # Counted when the page opens, not the beat task's copy (up to 30 s old):
        # per channel one count on the (channel_type, status) index and one
        # lookup on the (channel_type, sent_at) index.
        def count(statuses):
            return Coalesce(Subquery(
                MessageLog.objects.filter(channel_type=OuterRef("channel_type"), status__in=statuses).order_by()
                .values("channel_type").annotate(n=Count("pk")).values("n"),
                output_field=IntegerField(),
            ), Value(0))

        last = MessageLog.objects.filter(channel_type=OuterRef("channel_type"), sent_at__isnull=False)
        return super().get_queryset(request).annotate(
            live_sent_n=count(channel_stats.ACCEPTED),
            live_failed_n=count(channel_stats.NOT_DELIVERED),
            live_last=Subquery(last.order_by("-sent_at").values("sent_at")[:1]),
        )

    @admin.display(description=_("messages sent"), ordering="live_sent_n")
    def live_sent(self, obj):
        return obj.live_sent_n

    @admin.display(description=_("messages failed"), ordering="live_failed_n")
    def live_failed(self, obj):
        return obj.live_failed_n

    @admin.display(description=_("last used"), ordering="live_last")
    def live_last_used(self, obj):
        return obj.live_last

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
    readonly_fields = ("unreachable_since", "unreachable_for", "window_opened_at", "created_at", "updated_at")
    actions = ["mark_reachable"]

    @admin.display(description=_("unreachable for"))
    def unreachable_for(self, obj):
        return short_duration(timezone.now() - obj.unreachable_since) if obj.unreachable_since else "-"

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
    # Six short columns: the list fits 1366 px with the filter sidebar.
    list_display = ("when", "summary", "status", "channel", "to", "short_error")
    list_display_links = ("summary",)
    list_filter = ("status", "channel_type", MessageTypeFilter, "priority", "possible_duplicate", "created_at")
    search_fields = (
        "title", "body", "recipient", "user__username", "provider_message_id", "related_object_id", "last_error",
    )
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    actions = ["resend_failed"]
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("summary", "status", "channel_type", "to", "priority", "body", "buttons_and_link",
                           "last_error")}),
        (_("Delivery"), {"fields": ("attempts", "created_at", "sent_at", "time_to_send", "failed_at",
                                    "next_attempt_at", "possible_duplicate", "provider_message_id")}),
        (_("Related record"), {"fields": ("related_object_type", "related_object_id", "idempotency_key"),
                               "classes": ("collapse",)}),
    )
    readonly_fields = ("summary", "to", "buttons_and_link", "time_to_send")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("created"), ordering="created_at")
    def when(self, obj):
        return short_when(obj.created_at)

    @admin.display(description=_("channel"), ordering="channel_type")
    def channel(self, obj):
        return obj.get_channel_type_display()

    @admin.display(description=_("message"), ordering="title")
    def summary(self, obj):
        return summary_html(obj.title or obj.body, obj.message_type)

    @admin.display(description=_("to"), ordering="recipient")
    def to(self, obj):
        name = (obj.user.get_full_name() or obj.user.get_username()) if obj.user_id else ""
        if name and obj.recipient:
            return format_html('{}<br><span class="quiet">{}</span>', name, obj.recipient)
        return name or obj.recipient or "-"

    @admin.display(description=_("last error"))
    def short_error(self, obj):
        return (obj.last_error[:60] + "…") if len(obj.last_error) > 60 else obj.last_error

    @admin.display(description=_("time to send"))
    def time_to_send(self, obj):
        return short_duration(obj.sent_at - obj.created_at) if obj.sent_at else "-"

    @admin.display(description=_("buttons and link"))
    def buttons_and_link(self, obj):
        payload = obj.payload or {}
        parts = []
        actions = payload.get("actions") or []
        if actions:
            parts.append(format_html(
                "{}: {}", gettext("Buttons"),
                format_html_join(" ", '<span style="border:1px solid #999;border-radius:4px;padding:0 .4em" '
                                      'title="{}">{}</span>',
                                 ((a.get("callback_data", ""), a.get("text", "")) for a in actions))))
        if payload.get("link"):
            parts.append(format_html('{}: <a href="{}" rel="noopener">{}</a>', gettext("Link"), payload["link"],
                                     payload["link"]))
        others = {k: v for k, v in payload.items() if k not in ("actions", "link")}
        for key, value in others.items():
            parts.append(format_html("{}: {}", key, value))
        return format_html_join("", "<div>{}</div>", ((p,) for p in parts)) if parts else "-"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None:
            # The sentence is the title; the model's own name would repeat it as a subtitle.
            extra_context = {**(extra_context or {}), "title": message_sentence(obj), "subtitle": None}
        return super().change_view(request, object_id, form_url, extra_context)

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


def message_sentence(obj):
    """``«Orden de trabajo asignada» para Ana Rojas por Telegram: Fallido``."""
    who = (obj.user.get_full_name() or obj.user.get_username()) if obj.user_id else obj.recipient
    return gettext("«%(title)s» to %(who)s via %(channel)s: %(status)s") % {
        "title": obj.title or type_label(obj.message_type), "who": who or "-",
        "channel": obj.get_channel_type_display(), "status": obj.get_status_display()}


@admin.register(InAppNotification)
class InAppNotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "type_with_label", "title", "priority", "read_at")
    list_filter = (MessageTypeFilter, "priority", ("read_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "body", "user__username")
    readonly_fields = ("created_at",)

    @admin.display(description=_("message type"), ordering="message_type")
    def type_with_label(self, obj):
        return type_label(obj.message_type)


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


class BroadcastRoleFilter(admin.SimpleListFilter):
    """The role as users read it (Técnico), not its stored value (TECHNICIAN)."""

    title = _("role")
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return list(RoleBroadcast.role_choices())

    def queryset(self, request, queryset):
        return queryset.filter(role=self.value()) if self.value() else queryset


class BroadcastStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("waiting", _("Waiting for a worker")), ("expanding", _("Expanding")), ("expanded", _("Expanded"))]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "expanded":
            return queryset.filter(expanded_at__isnull=False)
        if value == "expanding":
            return queryset.filter(expanded_at__isnull=True, users_expanded__gt=0)
        if value == "waiting":
            return queryset.filter(expanded_at__isnull=True, users_expanded=0)
        return queryset


@admin.register(RoleBroadcast)
class RoleBroadcastAdmin(admin.ModelAdmin):
    """A broadcast to a role and its progress: users expanded into messages,
    messages queued, sent and failed (notifications.role_broadcasts). Read-only."""

    # Short columns, as the MessageLog list: it fits 1366 px with the filter sidebar.
    list_display = ("when", "summary", "role_label", "recipients", "queued", "sent", "failed_messages", "state")
    list_display_links = ("summary",)
    actions = None  # a record of what was sent: nothing to do to many at once
    list_filter = (BroadcastRoleFilter, BroadcastStateFilter, "priority", "created_at")
    search_fields = ("title", "body", "idempotency_key")
    date_hierarchy = "created_at"
    list_per_page = 25
    fieldsets = (
        (None, {"fields": ("title", "type_name", "role_label", "priority", "body", "idempotency_key")}),
        (_("Recipients at the call"), {"fields": ("total", "success", "failed")}),
        (_("Progress"), {"fields": ("state", "progress", "rows_written", "rows_queued", "sent", "failed_messages",
                                    "waiting", "skipped", "message_list")}),
        (_("Times"), {"fields": ("created_at", "published_at", "touched_at", "expanded_at"),
                      "classes": ("collapse",)}),
    )
    readonly_fields = ("summary", "type_name", "role_label", "state", "progress", "sent", "failed_messages", "waiting",
                       "skipped", "message_list")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @staticmethod
    def _counts(obj):
        """Messages of the broadcast by outcome, one grouped query per broadcast shown."""
        if not hasattr(obj, "_outcome_counts"):
            from . import delivery_states

            counts = {"sent": 0, "failed": 0, "waiting": 0, "skipped": 0}
            for status, n in (
                MessageLog.objects.filter(related_object_type=role_broadcasts.RELATED_TYPE,
                                          related_object_id=str(obj.pk))
                .values_list("status").annotate(n=Count("pk")).order_by()
            ):
                if status in delivery_states.ACCEPTED:
                    counts["sent"] += n
                elif status in (MessageStatus.FAILED, MessageStatus.UNDELIVERED):
                    counts["failed"] += n
                elif status == MessageStatus.SKIPPED:
                    counts["skipped"] += n
                else:
                    counts["waiting"] += n
            obj._outcome_counts = counts
        return obj._outcome_counts

    @admin.display(description=_("created"), ordering="created_at")
    def when(self, obj):
        return short_when(obj.created_at)

    @admin.display(description=_("message"), ordering="title")
    def summary(self, obj):
        return summary_html(obj.title or obj.body, obj.message_type)

    @admin.display(description=_("message type"))
    def type_name(self, obj):
        return type_label(obj.message_type)

    @admin.display(description=_("role"), ordering="role")
    def role_label(self, obj):
        return obj.role_label()

    @admin.display(description=_("recipients"))
    def recipients(self, obj):
        return self.progress(obj)

    @admin.display(description=_("Queued"))
    def queued(self, obj):
        return obj.rows_queued

    @admin.display(description=_("users expanded"))
    def progress(self, obj):
        return gettext("%(done)s of %(total)s") % {"done": obj.users_expanded, "total": obj.total}

    @admin.display(description=_("state"), ordering="expanded_at")
    def state(self, obj):
        if obj.expanded_at:
            return gettext("Expanded")
        return gettext("Expanding") if obj.users_expanded else gettext("Waiting for a worker")

    @admin.display(description=_("sent"))
    def sent(self, obj):
        return self._counts(obj)["sent"]

    @admin.display(description=_("failed"))
    def failed_messages(self, obj):
        return self._counts(obj)["failed"]

    @admin.display(description=_("waiting"))
    def waiting(self, obj):
        return self._counts(obj)["waiting"]

    @admin.display(description=_("skipped"))
    def skipped(self, obj):
        return self._counts(obj)["skipped"]

    @admin.display(description=_("messages"))
    def message_list(self, obj):
        from django.urls import reverse

        url = reverse("admin:notifications_messagelog_changelist")
        return format_html('<a href="{}?related_object_type={}&related_object_id={}">{}</a>', url,
                           role_broadcasts.RELATED_TYPE, obj.pk, gettext("See the messages of this broadcast"))
