"""Reminders run by celery beat (schedules in the database: admin > Periodic
tasks; defaults installed by cmms/migrations).

Each reminder carries an idempotency key with the local date, e.g.
``reminder:overdue:<wo_pk>:2026-11-25``. MessageRouter's unique constraint
makes that key one message per person, channel and day, so beat firing twice,
or two beat processes running by mistake, still send each reminder once.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from notifications.message_router import MessageRouter

from . import messages
from .models import HELD_STATUSES, OPEN_STATUSES, MaintenancePlan, WorkOrder
from .predictions import supervisors_for

logger = logging.getLogger(__name__)


def send_preventive_reminders(today=None):
    """Remind each active plan's technician from ``remind_days_before`` days
    before the due date until the plan is marked done (overdue plans keep
    reminding daily). Returns the number of plans reminded today."""
    today = today or timezone.localdate()
    default_days = settings.CMMS["REMINDER_DAYS_BEFORE"]
    horizon = today + timedelta(days=max(default_days, _max_plan_override()))
    plans = (
        MaintenancePlan.objects.filter(is_active=True, next_due_date__lte=horizon, asset__is_active=True,
                                       assigned_technician__is_active=True)
        .select_related("asset", "assigned_technician")
        .order_by("next_due_date", "pk")
    )
    sent = 0
    for plan in plans:
        days_left = (plan.next_due_date - today).days
        window = plan.remind_days_before if plan.remind_days_before is not None else default_days
        if days_left > window:
            continue
        asset = plan.asset
        title, body = messages.render("maintenance_reminder", {
            "task": plan.task, "asset_name": asset.name, "asset_code": asset.code, "site": asset.site,
            "due_date": plan.next_due_date, "days_left": days_left, "days_late": -days_left,
            "interval_days": plan.interval_days,
        })
        MessageRouter().send_to_user(
            user=plan.assigned_technician,
            title=title,
            message=body,
            message_type="maintenance_reminder",
            priority="high" if days_left < 0 else "normal",
            related_object_type="maintenance_plan",
            related_object_id=str(plan.pk),
            idempotency_key=f"reminder:plan:{plan.pk}:{today.isoformat()}",
        )
        sent += 1
    return sent


def _max_plan_override():
    values = MaintenancePlan.objects.filter(is_active=True, remind_days_before__isnull=False).values_list(
        "remind_days_before", flat=True)
    return max(values, default=0)


def send_overdue_reminders(now=None):
    """Every open order past its due date reminds its holder once a day; once
    it has been overdue ``OVERDUE_ESCALATE_AFTER_H``, or when nobody holds it,
    the supervisors of its site are told too, once a day. Returns
    {'assignees': n, 'supervisors': m} (orders, not messages)."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    escalate_after = timedelta(hours=settings.CMMS["OVERDUE_ESCALATE_AFTER_H"])
    orders = (
        WorkOrder.objects.filter(status__in=OPEN_STATUSES, due_at__lt=now)
        .select_related("asset", "assignee")
        .order_by("due_at", "pk")
    )
    counts = {"assignees": 0, "supervisors": 0}
    for order in orders:
        held = order.status in HELD_STATUSES and order.assignee and order.assignee.is_active
        if held:
            _remind_holder(order, today)
            counts["assignees"] += 1
        escalate = not held or now - order.due_at >= escalate_after
        if escalate and _escalate_to_supervisors(order, now, today):
            counts["supervisors"] += 1
    return counts


def _remind_holder(order, today):
    title, body = messages.render("work_order_overdue", messages.work_order_context(order))
    MessageRouter().send_to_user(
        user=order.assignee,
        title=title,
        message=body,
        message_type="work_order_overdue",
        priority=order.priority,
        related_object_type="work_order",
        related_object_id=str(order.pk),
        idempotency_key=f"reminder:overdue:{order.pk}:{today.isoformat()}",
        link=order.admin_url(),
    )


def _escalate_to_supervisors(order, now, today):
    supervisors = supervisors_for(order.asset)
    if not supervisors:
        logger.warning("Overdue %s: no active supervisor to tell.", order.number)
        return False
    context = messages.work_order_context(order, overdue_for=messages.duration(now - order.due_at))
    title, body = messages.render("work_order_overdue_escalation", context)
    for supervisor in supervisors:
        MessageRouter().send_to_user(
            user=supervisor,
            title=title,
            message=body,
            message_type="work_order_overdue_escalation",
            related_object_type="work_order",
            related_object_id=str(order.pk),
            idempotency_key=f"reminder:overdue-escalation:{order.pk}:{today.isoformat()}",
            link=order.admin_url(),
        )
    return True
