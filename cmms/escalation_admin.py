"""Admin for escalation policies, runs, shifts, and the work order's
escalation steps and timeline (registered from cmms.admin)."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from notifications.models import MessageLog

from . import broadcasts, dry_run, escalation, shifts, timeline
from .models import (
    Asset,
    Broadcast,
    BroadcastRecipient,
    Escalation,
    EscalationPolicy,
    EscalationPolicyStep,
    EscalationStep,
    Role,
    ShiftPattern,
    ShiftWindow,
    WorkOrderPriority,
)


class DryRunForm(forms.Form):
    priority = forms.ChoiceField(label=_("priority"), choices=WorkOrderPriority.choices, initial="critical")
    asset = forms.ModelChoiceField(label=_("asset"), queryset=Asset.objects.filter(is_active=True))
    at = forms.DateTimeField(label=_("when"), help_text=_("Local time, e.g. 2026-12-06 03:00."),
                             widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))


class PolicyStepInline(admin.TabularInline):
    model = EscalationPolicyStep
    fields = ("position", "wait_s", "action", "channels")
    extra = 0


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "priority", "site", "steps_summary", "repeat_last", "is_active")
    list_filter = ("priority", "is_active", "site")
    inlines = [PolicyStepInline]

    def get_urls(self):
        return [path("dry-run/", self.admin_site.admin_view(self.dry_run_view),
                     name="cmms_escalationpolicy_dry_run")] + super().get_urls()

    def dry_run_view(self, request):
        """Who would be notified, when and how: from the real policies, shifts and preferences."""
        form = DryRunForm(request.GET or None)
        steps = None
        if form.is_valid():
            data = form.cleaned_data
            steps = dry_run.simulate(data["priority"], data["asset"], data["at"])
        context = {**self.admin_site.each_context(request), "title": _("Escalation dry run"), "form": form,
                   "steps": steps, "opts": self.model._meta}
        return TemplateResponse(request, "admin/cmms/escalation_dry_run.html", context)

    @admin.display(description=_("steps"))
    def steps_summary(self, obj):
        chain = escalation.build_chain(obj)
        return " → ".join(f"{int(s['wait_s'])} s · {s['action']}" for s in chain) or "-"


def _messages_cell(message_ids):
    logs = MessageLog.objects.filter(pk__in=message_ids or []).select_related("user").order_by("id")
    return format_html_join(
        ", ", "{} · {} · {}",
        ((str(log.user or log.recipient), log.channel_type, log.get_status_display()) for log in logs),
    ) or "-"


def escalation_steps_field(obj):
    """Read-only on the work order page (not an inline: the admin's form
    posts stay as they were): who was notified when, on which channel, how it went."""
    if not obj or not obj.pk:
        return "-"
    steps = EscalationStep.objects.filter(work_order=obj).order_by("due_at", "id")
    rows = format_html_join(
        "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((step.index + 1, step.get_action_display(), timezone.localtime(step.due_at).strftime("%Y-%m-%d %H:%M:%S"),
          step.get_status_display(),
          timezone.localtime(step.ran_at).strftime("%Y-%m-%d %H:%M:%S") if step.ran_at else "", step.outcome,
          _messages_cell(step.message_ids)) for step in steps),
    )
    if not rows:
        return _("No escalation step.")
    return format_html("<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
                       "<th>{}</th></tr></thead><tbody>{}</tbody></table>", _("step"), _("action"), _("due"),
                       _("status"), _("ran"), _("outcome"), _("messages"), rows)


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ("work_order", "policy", "status", "priority", "site", "started_at", "stopped_at",
                    "acknowledged_s", "stop_reason")
    list_filter = ("status", "priority", "site")
    search_fields = ("work_order__number",)
    list_select_related = ("work_order", "policy")
    readonly_fields = [f.name for f in Escalation._meta.fields]

    def has_add_permission(self, request):
        return False

    def get_urls(self):
        return [path("time-to-acknowledge/", self.admin_site.admin_view(self.tta_view),
                     name="cmms_escalation_tta")] + super().get_urls()

    def tta_view(self, request):
        rows = escalation.time_to_acknowledge(days=30)
        context = {**self.admin_site.each_context(request), "title": _("Time to acknowledge (30 days)"),
                   "rows": rows, "opts": self.model._meta}
        return TemplateResponse(request, "admin/cmms/time_to_acknowledge.html", context)


class ShiftWindowInline(admin.TabularInline):
    model = ShiftWindow
    fields = ("weekday", "starts", "ends")
    extra = 1


@admin.register(ShiftPattern)
class ShiftPatternAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "site", "time_zone", "override_priority", "on_shift_now")
    list_filter = ("site",)
    autocomplete_fields = ("user",)
    inlines = [ShiftWindowInline]

    @admin.display(description=_("on shift now"), boolean=True)
    def on_shift_now(self, obj):
        return shifts.next_shift_start(obj, timezone.now()) is None

    def get_urls(self):
        return [path("on-shift/", self.admin_site.admin_view(self.on_shift_view),
                     name="cmms_shiftpattern_on_shift")] + super().get_urls()

    def on_shift_view(self, request):
        """Who is on shift now, per site: what a supervisor checks before calling someone."""
        users = list(get_user_model().objects.filter(is_active=True, role__in=[
            Role.OPERATOR, Role.TECHNICIAN, Role.SUPERVISOR]).order_by("site", "role", "last_name", "username"))
        now = timezone.now()
        state = shifts.on_shift_now(users, now)
        patterns = shifts.patterns_for([u.pk for u in users])
        rows = [{"user": u, "on_shift": state[u.pk],
                 "next_start": None if state[u.pk] or u.pk not in patterns else shifts.next_shift_start(patterns[u.pk], now)}
                for u in users]
        context = {**self.admin_site.each_context(request), "title": _("Who is on shift now"), "rows": rows,
                   "opts": self.model._meta}
        return TemplateResponse(request, "admin/cmms/on_shift.html", context)


class BroadcastRecipientInline(admin.TabularInline):
    model = BroadcastRecipient
    fields = ("user", "confirmed_at", "confirmed_via")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("confirmed_at", "user_id")

    def has_add_permission(self, request, obj=None):
        return False


class BroadcastForm(forms.ModelForm):
    role = forms.ChoiceField(label=_("role"), choices=Role.choices)

    class Meta:
        model = Broadcast
        fields = ("title", "body", "role", "priority", "ask_confirmation")


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    """Send a broadcast (it goes out when saved); see "18/25 confirmaron" and
    who has not confirmed; re-send to them."""

    form = BroadcastForm
    list_display = ("title", "role", "created_at", "sent_by", "confirmations", "not_confirmed")
    readonly_fields = ("confirmations", "not_confirmed", "resends", "sent_by", "created_at")
    actions = ["resend_missing"]

    def get_inlines(self, request, obj):
        return [BroadcastRecipientInline] if obj else []

    def get_fields(self, request, obj=None):
        base = ["title", "body", "role", "priority", "ask_confirmation"]
        return base + ["confirmations", "not_confirmed", "resends", "sent_by", "created_at"] if obj else base

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.sent_by = request.user
            broadcasts.deliver(obj)

    def save_related(self, request, form, formsets, change):
        pass

    @admin.display(description=_("confirmations"))
    def confirmations(self, obj):
        return broadcasts.summary(obj)["text"] if obj.ask_confirmation else "-"

    @admin.display(description=_("not confirmed yet"))
    def not_confirmed(self, obj):
        return ", ".join(str(u) for u in broadcasts.summary(obj)["missing"]) or "-"

    @admin.action(description=_("Re-send to those who have not confirmed"))
    def resend_missing(self, request, queryset):
        total = sum(broadcasts.resend_missing(b) for b in queryset)
        self.message_user(request, _("Re-sent to %(n)d people.") % {"n": total})


# -- the work order page ------------------------------------------------------------
def timeline_field(obj):
    if not obj or not obj.pk:
        return "-"
    url = reverse("admin:cmms_workorder_timeline_csv", args=[obj.pk])
    rows = format_html_join(
        "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((timezone.localtime(r["time"]).strftime("%Y-%m-%d %H:%M:%S"), r["event"], r["person"], r["channel"],
          r["state"], r["detail"]) for r in timeline.events(obj)),
    )
    return format_html('<p><a href="{}">{}</a></p><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
                       "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
                       url, _("Download as CSV"), _("time"), _("event"), _("person"), _("channel"), _("state"),
                       _("detail"), rows)


def timeline_csv_view(model_admin):
    def view(request, object_id):
        order = model_admin.get_object(request, object_id)
        if order is None or not model_admin.has_view_permission(request, order):
            return HttpResponse(status=404)
        response = HttpResponse(timeline.as_csv(order), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{order.number}-timeline.csv"'
        return response

    return model_admin.admin_site.admin_view(view)


def work_order_urls(model_admin):
    return [path("<path:object_id>/timeline.csv", timeline_csv_view(model_admin),
                 name="cmms_workorder_timeline_csv")]

