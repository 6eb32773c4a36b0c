"""A work order's timeline for audits: every notification with its channel
and delivery state, the escalation steps, and the decisions, in time order.
Shown on the work order's admin page and exported as CSV."""

import csv
import io

from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.models import MessageLog

from . import messages
from .models import EscalationStep, StepStatus, WorkOrderStatus

COLUMNS = ("time", "event", "person", "channel", "state", "detail")


def _row(at, event, person="", channel="", state="", detail=""):
    return {"time": at, "event": event, "person": person, "channel": channel, "state": state, "detail": detail}


def events(order):
    """[{time, event, person, channel, state, detail}], oldest first."""
    with messages.default_language():
        rows = [_row(order.created_at, _("Work order created"), detail=order.title)]
        if order.assigned_at:
            rows.append(_row(order.assigned_at, str(WorkOrderStatus.ASSIGNED.label), messages.person(order.assignee)))
        if order.decided_at:
            decided = WorkOrderStatus.REJECTED if order.status == WorkOrderStatus.REJECTED else WorkOrderStatus.ACCEPTED
            verb = str(decided.label)
            rows.append(_row(order.decided_at, verb, messages.person(order.decided_by), order.decided_via,
                             detail=order.rejection_reason))
        if order.closed_at:
            rows.append(_row(order.closed_at, WorkOrderStatus(order.status).label, ""))
        logs = MessageLog.objects.filter(related_object_type="work_order", related_object_id=str(order.pk))
        for log in logs.select_related("user").order_by("created_at", "id"):
            who = messages.person(log.user)
            state = log.get_status_display()
            detail = f"#{log.pk} {log.title}" + (f" · {log.last_error}" if log.last_error else "")
            if log.failover_of_id:
                detail += " · " + _("failover of #%(id)d") % {"id": log.failover_of_id}
            rows.append(_row(log.created_at, _("Notification queued"), who, log.channel_type, state, detail))
            for at, what in ((log.sent_at, _("Sent")), (log.delivered_at, _("Delivered")), (log.read_at, _("Read")),
                             (log.failed_at, _("Failed"))):
                if at:
                    rows.append(_row(at, what, who, log.channel_type, state, f"#{log.pk}"))
        for step in EscalationStep.objects.filter(work_order=order).exclude(status=StepStatus.PENDING):
            rows.append(_row(step.ran_at or step.due_at, _("Escalation step %(n)d: %(action)s") % {
                "n": step.index + 1, "action": step.get_action_display()}, state=step.get_status_display(),
                detail=step.outcome))
        for step in EscalationStep.objects.filter(work_order=order, status=StepStatus.PENDING):
            rows.append(_row(step.due_at, _("Escalation step %(n)d due: %(action)s") % {
                "n": step.index + 1, "action": step.get_action_display()}, state=step.get_status_display()))
    rows.sort(key=lambda r: r["time"])
    return rows


def as_csv(order):
    out = io.StringIO()
    writer = csv.writer(out)
    with messages.default_language():
        writer.writerow([_("time"), _("event"), _("person"), _("channel"), _("state"), _("detail")])
    for row in events(order):
        writer.writerow([timezone.localtime(row["time"]).isoformat(timespec="seconds"),
                         *[str(row[c]) for c in COLUMNS[1:]]])
    return out.getvalue()
