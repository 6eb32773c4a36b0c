"""Escalation and shift records (imported by cmms.models; the policy is in
cmms.escalation and cmms.shifts).

A policy is data: ordered steps per work-order priority (and optionally per
site). When an order is assigned, its policy's chain is copied into an
``Escalation`` (one run) and the first step becomes an ``EscalationStep`` row
with a due time. Beat's scanner claims due rows with a conditional update;
each row names the run that scheduled it, and a row whose run is no longer
active does nothing.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import WorkOrderPriority


class StepAction(models.TextChoices):
    NOTIFY_ASSIGNEE = "NOTIFY_ASSIGNEE", _("Notify the assignee again")
    NOTIFY_SUPERVISORS = "NOTIFY_SUPERVISORS", _("Notify the site's supervisors")
    REASSIGN = "REASSIGN", _("Reassign to the next operator")


class EscalationPolicy(models.Model):
    name = models.CharField(_("name"), max_length=100)
    priority = models.CharField(_("work order priority"), max_length=10, choices=WorkOrderPriority.choices)
    site = models.CharField(_("site"), max_length=100, blank=True,
                            help_text=_("Empty: every site without a policy of its own."))
    repeat_last = models.PositiveSmallIntegerField(
        _("repeat the last step"), default=0, validators=[MaxValueValidator(20)],
        help_text=_("How many more times the last step runs (with its wait) when nobody acted."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("escalation policy")
        verbose_name_plural = _("escalation policies")
        ordering = ["priority", "site"]
        constraints = [models.UniqueConstraint(fields=["priority", "site"], name="one_escalation_policy_per_scope")]

    def __str__(self):
        return self.name


class EscalationPolicyStep(models.Model):
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps",
                               verbose_name=_("policy"))
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    wait_s = models.PositiveIntegerField(
        _("wait (seconds)"), null=True, blank=True,
        help_text=_("Since the previous step (or the assignment). Empty: the default from settings "
                    "(ESCALATION_STEP_WAIT_S sets them all)."),
    )
    action = models.CharField(_("action"), max_length=20, choices=StepAction.choices)
    channels = models.CharField(
        _("channels"), max_length=100, blank=True,
        help_text=_("Comma-separated channel types to use (e.g. TELEGRAM,SMS), even those the person keeps "
                    "for higher priorities. Empty: the person's usual channels."),
    )

    class Meta:
        verbose_name = _("escalation step")
        verbose_name_plural = _("escalation steps")
        ordering = ["policy", "position", "id"]

    def __str__(self):
        return f"{self.position}. {self.get_action_display()}"


class EscalationStatus(models.TextChoices):
    ACTIVE = "ACTIVE", _("Active")
    STOPPED = "STOPPED", _("Stopped")
    EXHAUSTED = "EXHAUSTED", _("All steps run")


class Escalation(models.Model):
    """One escalation run for a work order: the chain copied when it started."""

    work_order = models.ForeignKey("cmms.WorkOrder", on_delete=models.CASCADE, related_name="escalations",
                                   verbose_name=_("work order"))
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+", verbose_name=_("policy"))
    # [{"action", "wait_s", "channels": [...]}, ...], the last step repeated as the policy said.
    chain = models.JSONField(_("steps"), default=list)
    status = models.CharField(_("status"), max_length=10, choices=EscalationStatus.choices,
                              default=EscalationStatus.ACTIVE)
    # Copied from the order when the run starts, for time-to-acknowledge figures.
    priority = models.CharField(_("priority"), max_length=10, choices=WorkOrderPriority.choices)
    site = models.CharField(_("site"), max_length=100, blank=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)
    stop_reason = models.CharField(_("why it stopped"), max_length=255, blank=True)
    stopped_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", verbose_name=_("stopped by"))
    # Alert to acceptance, in seconds; set when someone accepted the order.
    acknowledged_s = models.FloatField(_("time to acknowledge (s)"), null=True, blank=True)

    class Meta:
        verbose_name = _("escalation")
        verbose_name_plural = _("escalations")
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["work_order"], condition=Q(status="ACTIVE"),
                                    name="one_active_escalation_per_work_order"),
        ]
        indexes = [models.Index(fields=["started_at", "priority"], name="escalation_started_priority")]

    def __str__(self):
        return f"{self.work_order_id} · {self.get_status_display()}"


class StepStatus(models.TextChoices):
    PENDING = "PENDING", _("Pending")
    DONE = "DONE", _("Done")
    CANCELLED = "CANCELLED", _("Cancelled")


class EscalationStep(models.Model):
    """One scheduled step of a run: the durable timer. ``work_order_id`` is
    copied from the run so the scanner can lock the order first (the same
    lock order as an acceptance: no deadlock)."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="steps",
                                   verbose_name=_("escalation"))
    work_order = models.ForeignKey("cmms.WorkOrder", on_delete=models.CASCADE, related_name="+",
                                   verbose_name=_("work order"))
    index = models.PositiveSmallIntegerField(_("step"))
    action = models.CharField(_("action"), max_length=20, choices=StepAction.choices)
    due_at = models.DateTimeField(_("due"))
    status = models.CharField(_("status"), max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING)
    ran_at = models.DateTimeField(_("ran"), null=True, blank=True)
    outcome = models.TextField(_("outcome"), blank=True)
    # MessageLog ids the step queued: who was notified, on which channel.
    message_ids = models.JSONField(_("messages"), default=list, blank=True)

    class Meta:
        verbose_name = _("escalation step run")
        verbose_name_plural = _("escalation step runs")
        ordering = ["escalation", "index"]
        constraints = [models.UniqueConstraint(fields=["escalation", "index"], name="one_step_row_per_index")]
        indexes = [
            # The scanner's query: due pending rows, oldest first. Partial, so
            # the index holds only what is pending however long the history.
            models.Index(fields=["due_at"], condition=Q(status="PENDING"), name="escalation_step_pending_due"),
        ]

    def __str__(self):
        return f"{self.escalation_id}#{self.index} {self.get_action_display()} [{self.status}]"


# --- Shifts and quiet hours ---------------------------------------------------------


class ShiftPattern(models.Model):
    """When people are on shift, as a weekly pattern, for one user or for a
    whole site. A user's own pattern wins over the site's; nobody with a
    pattern is off outside its windows; without any pattern a person is
    always on shift."""

    name = models.CharField(_("name"), max_length=100)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="shift_pattern", verbose_name=_("user"))
    site = models.CharField(_("site"), max_length=100, blank=True,
                            help_text=_("For every user of this site without a pattern of their own."))
    time_zone = models.CharField(_("time zone"), max_length=64, default="America/Santiago",
                                 help_text=_("IANA name, e.g. America/Santiago."))
    override_priority = models.CharField(
        _("goes through off shift from"), max_length=10, default="critical",
        choices=WorkOrderPriority.choices,
        help_text=_("Messages of this priority or higher reach people off shift; lower ones wait for the "
                    "shift and arrive as one digest."),
    )

    class Meta:
        verbose_name = _("shift pattern")
        verbose_name_plural = _("shift patterns")
        ordering = ["site", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(user__isnull=False) | ~Q(site=""), name="shift_pattern_user_or_site"),
            models.UniqueConstraint(fields=["site"], condition=Q(user__isnull=True), name="one_shift_pattern_per_site"),
        ]

    def __str__(self):
        return self.name


class Weekday(models.IntegerChoices):
    MONDAY = 0, _("Monday")
    TUESDAY = 1, _("Tuesday")
    WEDNESDAY = 2, _("Wednesday")
    THURSDAY = 3, _("Thursday")
    FRIDAY = 4, _("Friday")
    SATURDAY = 5, _("Saturday")
    SUNDAY = 6, _("Sunday")


class ShiftWindow(models.Model):
    """On shift from ``starts`` to ``ends`` on ``weekday`` (local time); an
    end at or before the start runs past midnight (a night shift)."""

    pattern = models.ForeignKey(ShiftPattern, on_delete=models.CASCADE, related_name="windows",
                                verbose_name=_("pattern"))
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    starts = models.TimeField(_("starts"))
    ends = models.TimeField(_("ends"))

    class Meta:
        verbose_name = _("shift window")
        verbose_name_plural = _("shift windows")
        ordering = ["pattern", "weekday", "starts"]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.starts:%H:%M}-{self.ends:%H:%M}"


# --- Broadcasts that ask for a confirmation ------------------------------------------


class Broadcast(models.Model):
    """A message to everyone with a role that may ask each person to confirm
    they read it (cmms.broadcasts)."""

    title = models.CharField(_("title"), max_length=255)
    body = models.TextField(_("message"))
    role = models.CharField(_("role"), max_length=20)
    priority = models.CharField(_("priority"), max_length=10, choices=WorkOrderPriority.choices, default="normal")
    ask_confirmation = models.BooleanField(_("ask for a confirmation"), default=True)
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+", verbose_name=_("sent by"))
    resends = models.PositiveSmallIntegerField(_("re-sent"), default=0, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("broadcast")
        verbose_name_plural = _("broadcasts")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.title


class BroadcastRecipient(models.Model):
    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="recipients",
                                  verbose_name=_("broadcast"))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                             verbose_name=_("user"))
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)
    confirmed_via = models.CharField(_("confirmed via"), max_length=20, blank=True)

    class Meta:
        verbose_name = _("broadcast recipient")
        verbose_name_plural = _("broadcast recipients")
        ordering = ["broadcast", "user_id"]
        constraints = [models.UniqueConstraint(fields=["broadcast", "user"], name="one_recipient_row_per_broadcast")]

    def __str__(self):
        return f"{self.broadcast_id} · {self.user_id}"
