from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.expressions import Combinable
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


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


# --- Maintenance domain -------------------------------------------------------


class Criticality(models.TextChoices):
    LOW = "LOW", pgettext_lazy("criticality", "Low")
    MEDIUM = "MEDIUM", pgettext_lazy("criticality", "Medium")
    HIGH = "HIGH", pgettext_lazy("criticality", "High")
    CRITICAL = "CRITICAL", pgettext_lazy("criticality", "Critical")


class RiskLevel(models.TextChoices):
    LOW = "LOW", pgettext_lazy("risk level", "Low")
    MEDIUM = "MEDIUM", pgettext_lazy("risk level", "Medium")
    HIGH = "HIGH", pgettext_lazy("risk level", "High")
    CRITICAL = "CRITICAL", pgettext_lazy("risk level", "Critical")


RISK_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}


class Asset(models.Model):
    """A piece of equipment maintenance cares about: a truck, a shovel, a crusher."""

    code = models.CharField(_("code"), max_length=32, unique=True, help_text=_("Short unique code, e.g. CAM-001."))
    name = models.CharField(_("name"), max_length=200)
    asset_type = models.CharField(_("type"), max_length=100, blank=True, help_text=_("e.g. Haul truck, Shovel."))
    site = models.CharField(
        _("site"), max_length=100, blank=True, db_index=True,
        help_text=_("Site or area; operators of the same site are assigned its work orders."),
    )
    criticality = models.CharField(_("criticality"), max_length=10, choices=Criticality.choices,
                                   default=Criticality.MEDIUM)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("asset")
        verbose_name_plural = _("assets")
        ordering = ["code"]

    def __str__(self):
        return f"{self.code} · {self.name}"


class WorkOrderStatus(models.TextChoices):
    OPEN = "OPEN", pgettext_lazy("work order status", "Open")
    ASSIGNED = "ASSIGNED", pgettext_lazy("work order status", "Assigned")
    ACCEPTED = "ACCEPTED", pgettext_lazy("work order status", "Accepted")
    IN_PROGRESS = "IN_PROGRESS", pgettext_lazy("work order status", "In progress")
    DONE = "DONE", pgettext_lazy("work order status", "Done")
    REJECTED = "REJECTED", pgettext_lazy("work order status", "Rejected")
    CANCELLED = "CANCELLED", pgettext_lazy("work order status", "Cancelled")


class WorkOrderPriority(models.TextChoices):
    # Same values as notifications.models.Priority, so a work order's priority
    # is also the priority of the messages about it.
    LOW = "low", pgettext_lazy("priority", "Low")
    NORMAL = "normal", pgettext_lazy("priority", "Normal")
    HIGH = "high", pgettext_lazy("priority", "High")
    CRITICAL = "critical", pgettext_lazy("priority", "Critical")


class WorkOrderSource(models.TextChoices):
    MANUAL = "MANUAL", _("Manual")
    PREDICTION = "PREDICTION", _("Failure prediction")
    PLAN = "PLAN", _("Maintenance plan")


# Statuses in which the work is still pending: the order counts as "open".
OPEN_STATUSES = (
    WorkOrderStatus.OPEN,
    WorkOrderStatus.ASSIGNED,
    WorkOrderStatus.ACCEPTED,
    WorkOrderStatus.IN_PROGRESS,
    WorkOrderStatus.REJECTED,
)
# Statuses in which the assignee holds the order: their workload.
HELD_STATUSES = (WorkOrderStatus.ASSIGNED, WorkOrderStatus.ACCEPTED, WorkOrderStatus.IN_PROGRESS)

_S = WorkOrderStatus
TRANSITIONS = {
    _S.OPEN: {_S.ASSIGNED, _S.CANCELLED},
    _S.ASSIGNED: {_S.ASSIGNED, _S.ACCEPTED, _S.REJECTED, _S.CANCELLED},
    _S.ACCEPTED: {_S.ASSIGNED, _S.IN_PROGRESS, _S.CANCELLED},
    _S.IN_PROGRESS: {_S.ASSIGNED, _S.DONE, _S.CANCELLED},
    _S.REJECTED: {_S.ASSIGNED, _S.CANCELLED},
    _S.DONE: set(),
    _S.CANCELLED: set(),
}


class InvalidTransition(ValueError):
    pass


class WorkOrder(models.Model):
    """A job to do on an asset. Its number (OT-00042) is what people say; the
    status moves only through ``TRANSITIONS``, by the methods below."""

    number = models.CharField(_("number"), max_length=20, unique=True, null=True, blank=True, editable=False)
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="work_orders", verbose_name=_("asset"))
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    priority = models.CharField(_("priority"), max_length=10, choices=WorkOrderPriority.choices,
                                default=WorkOrderPriority.NORMAL)
    status = models.CharField(_("status"), max_length=12, choices=WorkOrderStatus.choices,
                              default=WorkOrderStatus.OPEN, db_index=True, editable=False)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="work_orders", verbose_name=_("assignee"),
    )
    due_at = models.DateTimeField(_("due"), null=True, blank=True, db_index=True)
    source = models.CharField(_("source"), max_length=12, choices=WorkOrderSource.choices,
                              default=WorkOrderSource.MANUAL)
    # Set for source=PREDICTION: one open order per asset and failure mode.
    failure_mode = models.CharField(_("failure mode"), max_length=100, blank=True)
    risk_level = models.CharField(_("risk level"), max_length=10, choices=RiskLevel.choices, blank=True,
                                  help_text=_("Highest risk predicted while the order was open."))
    maintenance_plan = models.ForeignKey(
        "MaintenancePlan", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="work_orders", verbose_name=_("maintenance plan"),
    )
    rejection_reason = models.CharField(_("rejection reason"), max_length=255, blank=True)
    # The last accept/reject (cmms.actions.decide): who, when, through which channel.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False,
        related_name="+", verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True, editable=False)
    decided_via = models.CharField(_("decided via"), max_length=20, blank=True, editable=False)
    # Counters that make notification idempotency keys unique per event.
    assignment_seq = models.PositiveIntegerField(_("assignments"), default=0, editable=False)
    alert_seq = models.PositiveIntegerField(_("prediction alerts"), default=0, editable=False)
    last_alert_at = models.DateTimeField(_("last prediction alert"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    assigned_at = models.DateTimeField(_("assigned"), null=True, blank=True, editable=False)
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True, editable=False)
    started_at = models.DateTimeField(_("started"), null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("work order")
        verbose_name_plural = _("work orders")
        ordering = ["-created_at", "-id"]
        constraints = [
            # The backstop behind the asset lock in cmms.predictions: repeated
            # or concurrent predictions never pile up open orders.
            models.UniqueConstraint(
                fields=["asset", "failure_mode"],
                condition=Q(source="PREDICTION", status__in=[s.value for s in OPEN_STATUSES]),
                name="one_open_prediction_wo_per_asset_failure_mode",
            )
        ]
        indexes = [models.Index(fields=["assignee", "status"], name="wo_assignee_status")]

    def __str__(self):
        number = self.number or _("new work order")
        return f"{number} · {self.title}"

    def save(self, *args, **kwargs):
        with transaction.atomic():
            super().save(*args, **kwargs)
            if not self.number:
                # Derived from the primary key: unique without a shared counter row.
                self.number = f"OT-{self.pk:05d}"
                WorkOrder.objects.filter(pk=self.pk).update(number=self.number)

    @property
    def is_open(self):
        return self.status in OPEN_STATUSES

    def admin_url(self):
        return settings.SITE_URL + reverse("admin:cmms_workorder_change", args=[self.pk])

    # -- lifecycle ------------------------------------------------------------
    def can_transition(self, target):
        return target in TRANSITIONS[self.status]

    def _transition(self, target, **fields):
        """One conditional UPDATE from the status this object holds; 0 rows
        means another process moved the order first."""
        if not self.can_transition(target):
            raise InvalidTransition(
                _("A work order cannot go from %(from)s to %(to)s.") % {
                    "from": WorkOrderStatus(self.status).label, "to": WorkOrderStatus(target).label}
            )
        from . import escalation

        now = timezone.now()
        updates = {"status": target, "updated_at": now, **fields}
        with transaction.atomic():
            won = WorkOrder.objects.filter(pk=self.pk, status=self.status).update(**updates)
            if not won:
                raise InvalidTransition(_("The work order changed meanwhile; reload it and try again."))
            for name, value in updates.items():
                setattr(self, name, value)
            computed = [name for name, value in updates.items() if isinstance(value, Combinable)]
            if computed:
                self.refresh_from_db(fields=computed)
            if target in escalation.ENDING:
                # Same transaction as the move: no step runs after it commits.
                escalation.stop(self, target, by=fields.get("decided_by"), now=now)

    def assign(self, user, *, notify=True):
        """Assign (or reassign) to ``user``. The new assignee is notified on
        their channels with accept/reject buttons, and a previous assignee is
        told the order left them; messages leave after the commit. Returns
        False when ``user`` already holds the order."""
        from . import escalation, work_orders

        if user is None or not user.is_active:
            raise InvalidTransition(_("Work orders can only be assigned to an active user."))
        if self.assignee_id == user.pk and self.status in HELD_STATUSES:
            return False
        previous = self.assignee if self.assignee_id and self.status in HELD_STATUSES else None
        with transaction.atomic():
            self._transition(
                WorkOrderStatus.ASSIGNED, assignee=user, assigned_at=timezone.now(),
                assignment_seq=F("assignment_seq") + 1, accepted_at=None, rejection_reason="",
            )
            if notify:
                work_orders.notify_assignment(self, previous=previous)
            escalation.start(self, now=self.assigned_at)
        return True

    def accept(self):
        self._transition(WorkOrderStatus.ACCEPTED, accepted_at=timezone.now())

    def reject(self, reason=""):
        self._transition(WorkOrderStatus.REJECTED, rejection_reason=str(reason)[:255])

    def start(self):
        self._transition(WorkOrderStatus.IN_PROGRESS, started_at=timezone.now())

    def complete(self):
        self._transition(WorkOrderStatus.DONE, closed_at=timezone.now())

    def cancel(self):
        self._transition(WorkOrderStatus.CANCELLED, closed_at=timezone.now())


class WorkOrderOffer(models.Model):
    """What a button offered: accept or reject one assignment of an order.
    Its random ``token`` is the button's callback_data, so a press names a row
    we stored, never an order id a client could forge, and a press on an
    offer made before a reassignment is recognized as stale."""

    token = models.CharField(_("token"), max_length=32, unique=True, editable=False)
    work_order = models.ForeignKey(WorkOrder, on_delete=models.CASCADE, related_name="offers",
                                   verbose_name=_("work order"))
    decision = models.CharField(_("decision"), max_length=10)
    assignment_seq = models.PositiveIntegerField(_("assignment"))
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("work order offer")
        verbose_name_plural = _("work order offers")
        constraints = [
            models.UniqueConstraint(fields=["work_order", "decision", "assignment_seq"], name="one_offer_per_decision"),
        ]

    def __str__(self):
        return f"{self.work_order_id} {self.decision} #{self.assignment_seq}"


class FailurePrediction(models.Model):
    """One score from the ML model. Recorded always; MEDIUM and above open or
    update a work order (cmms.predictions.record_prediction)."""

    class Action(models.TextChoices):
        RECORDED = "RECORDED", _("Recorded only")
        CREATED = "CREATED", _("Work order created")
        UPDATED = "UPDATED", _("Work order updated")
        REALERTED = "REALERTED", _("Work order re-alerted")
        ESCALATED = "ESCALATED", _("Work order escalated")

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="predictions", verbose_name=_("asset"))
    failure_mode = models.CharField(_("failure mode"), max_length=100)
    probability = models.FloatField(_("probability"), help_text=_("0 to 1."))
    risk_level = models.CharField(_("risk level"), max_length=10, choices=RiskLevel.choices, db_index=True)
    time_to_failure = models.DurationField(_("predicted time to failure"), null=True, blank=True)
    model_version = models.CharField(_("model version"), max_length=50, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    # The ML client's own id for this prediction: a retried call with the same
    # id from the same client returns the recorded prediction instead of
    # recording it twice.
    external_id = models.CharField(_("external id"), max_length=100, null=True, blank=True)
    ml_client = models.ForeignKey(
        "MLClient", on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions",
        verbose_name=_("ML client"),
    )
    work_order = models.ForeignKey(
        WorkOrder, on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions",
        verbose_name=_("work order"),
    )
    action = models.CharField(_("action"), max_length=10, choices=Action.choices, default=Action.RECORDED)
    alerted = models.BooleanField(_("alert sent"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("failure prediction")
        verbose_name_plural = _("failure predictions")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Per client: one pipeline's ids say nothing about another's. (Rows
            # without a client, from Python callers, are deduplicated by the
            # lookup in record_prediction under the asset's lock.)
            models.UniqueConstraint(
                fields=["ml_client", "external_id"], condition=Q(external_id__isnull=False),
                name="prediction_unique_client_external_id",
            ),
            models.CheckConstraint(
                condition=Q(probability__gte=0) & Q(probability__lte=1), name="prediction_probability_0_1"
            ),
        ]

    def __str__(self):
        return f"{self.asset.code} · {self.failure_mode} · {self.get_risk_level_display()}"


class MaintenancePlan(models.Model):
    """Preventive maintenance: a task repeated on an asset every ``interval_days``."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="maintenance_plans",
                              verbose_name=_("asset"))
    task = models.CharField(_("task"), max_length=200)
    interval_days = models.PositiveIntegerField(_("interval (days)"), validators=[MinValueValidator(1)])
    next_due_date = models.DateField(_("next due date"), db_index=True)
    assigned_technician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="maintenance_plans", verbose_name=_("assigned technician"),
    )
    remind_days_before = models.PositiveIntegerField(
        _("remind days before"), null=True, blank=True,
        help_text=_("Empty: the CMMS_REMINDER_DAYS_BEFORE setting."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    last_done_date = models.DateField(_("last done"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("maintenance plan")
        verbose_name_plural = _("maintenance plans")
        ordering = ["next_due_date", "id"]

    def __str__(self):
        return f"{self.asset.code} · {self.task}"

    def mark_done(self, on=None):
        """Record the task as done and move the next due date one interval on."""
        on = on or timezone.localdate()
        self.last_done_date = on
        self.next_due_date = on + timedelta(days=self.interval_days)
        self.save(update_fields=["last_done_date", "next_due_date", "updated_at"])


class MLClient(models.Model):
    """An ML pipeline allowed to post predictions. Only a hash of its token is
    stored; the token is shown once, when it is created or rotated."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    token_prefix = models.CharField(_("token prefix"), max_length=16, unique=True, editable=False)
    token_hash = models.CharField(_("token hash"), max_length=64, editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("ML client")
        verbose_name_plural = _("ML clients")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def set_new_token(self):
        """Generate a token, keep its hash, and return the token (once)."""
        from .ml_auth import new_token

        token, self.token_prefix, self.token_hash = new_token()
        return token


# Escalation and shifts live in their own module; imported here so Django finds them.
from .escalation_models import (  # noqa: E402,F401
    Broadcast,
    BroadcastRecipient,
    Escalation,
    EscalationPolicy,
    EscalationPolicyStep,
    EscalationStatus,
    EscalationStep,
    ShiftPattern,
    ShiftWindow,
    StepAction,
    StepStatus,
    Weekday,
)
