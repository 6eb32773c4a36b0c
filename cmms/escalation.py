"""Escalation until someone acts.

When a work order is assigned, its policy (by priority, and site when one
has its own) is copied into an ``Escalation`` run, and the first step is
written as an ``EscalationStep`` row with its due time. Beat runs
``run_due_steps`` every few seconds; it takes each due row by locking its
work order first, then claiming the row with a conditional update
(PENDING -> DONE), and re-checks, under that lock, that the run is still the
active one and the order still waits for someone. The step's messages, its
outcome and the next step's row are written in that same transaction, so a
killed worker or beat loses nothing and runs nothing twice: either all of it
committed, or the row is still PENDING for the next scan.

Accepting, starting, finishing or cancelling the order (``stop``, called from
``WorkOrder._transition`` in the transition's transaction) ends the run and
cancels its pending row. The order's row lock orders the two: a step either
ran before the acceptance or it sees the acceptance and does nothing.

A run exists for every assignment, with or without steps: its start and the
acceptance give the time to acknowledge.
"""

import logging
from datetime import timedelta

import django.dispatch
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import message_types
from notifications.message_router import MessageRouter
from notifications.models import MessageLog

from . import messages
from .models import (
    Escalation,
    EscalationPolicy,
    EscalationStatus,
    EscalationStep,
    StepAction,
    StepStatus,
    WorkOrder,
    WorkOrderStatus,
)

logger = logging.getLogger(__name__)

# Statuses in which nobody has taken responsibility yet: the run goes on.
WAITING = (WorkOrderStatus.OPEN, WorkOrderStatus.ASSIGNED, WorkOrderStatus.REJECTED)
# Statuses that end the run: someone took the order, or it is over.
ENDING = (WorkOrderStatus.ACCEPTED, WorkOrderStatus.IN_PROGRESS, WorkOrderStatus.DONE, WorkOrderStatus.CANCELLED)
RELATED_TYPE = "work_order"
REMINDER_TYPE = "work_order_escalation"
TAKEN_TYPE = "work_order_taken"

# Sent after the commit of an acceptance that ended a run, with
# ``work_order``, ``user`` (who accepted), ``escalation`` and ``message_ids``
# (every MessageLog row about the order since the run started). The Telegram
# bot edits the original messages from here ("tomada por ...").
work_order_taken = django.dispatch.Signal()

message_types.register(message_types.MessageType(REMINDER_TYPE, "⏰", "work_orders", "high",
                                                 "Work order escalation"))
message_types.register(message_types.MessageType(TAKEN_TYPE, "✅", "work_orders", "normal", "Work order taken"))


def cfg(name):
    return settings.ESCALATION[name]


# -- policies -----------------------------------------------------------------
def policy_for(order):
    """The active policy of the order's priority for its asset's site, else
    the one for every site; None when there is none."""
    policies = EscalationPolicy.objects.filter(priority=order.priority, is_active=True)
    site = order.asset.site if order.asset_id else ""
    by_site = {p.site: p for p in policies.filter(site__in=[site, ""])}
    return by_site.get(site) or by_site.get("")


def default_wait_s(priority, action):
    waits = cfg("DEFAULT_WAIT_S")
    return waits.get(priority, waits.get("high", {})).get(action, 600)


def build_chain(policy):
    """The policy's steps as data, waits resolved, the last one repeated."""
    if policy is None:
        return []
    chain = []
    for step in policy.steps.all().order_by("position", "id"):
        wait = step.wait_s if step.wait_s is not None else default_wait_s(policy.priority, step.action)
        channels = [c.strip().upper() for c in step.channels.split(",") if c.strip()]
        chain.append({"action": step.action, "wait_s": int(wait), "channels": channels})
    if chain:
        chain.extend(dict(chain[-1]) for _n in range(policy.repeat_last))
    return chain


# -- start and stop -------------------------------------------------------------
def start(order, now=None):
    """Start a run for ``order`` unless one is active (a reassignment inside
    the run, or after a rejection, keeps the run going). Call it inside the
    assignment's transaction."""
    now = now or timezone.now()
    if Escalation.objects.filter(work_order=order, status=EscalationStatus.ACTIVE).exists():
        return None
    policy = policy_for(order)
    run = Escalation.objects.create(
        work_order=order, policy=policy, chain=build_chain(policy), priority=order.priority,
        site=order.asset.site if order.asset_id else "", started_at=now,
    )
    if run.chain:
        schedule(run, 0, now)
    return run


def schedule(run, index, after):
    step = run.chain[index]
    return EscalationStep.objects.create(
        escalation=run, work_order_id=run.work_order_id, index=index, action=step["action"],
        due_at=after + timedelta(seconds=step["wait_s"]),
    )


def stop(order, status, by=None, now=None):
    """End the order's active run because it moved to ``status``; cancels
    its pending step. Call it in the transaction that moved the order."""
    now = now or timezone.now()
    run = Escalation.objects.filter(work_order=order, status=EscalationStatus.ACTIVE).first()
    if run is None:
        return None
    accepted = status == WorkOrderStatus.ACCEPTED
    with messages.default_language():
        reason = _("Work order %(status)s") % {"status": WorkOrderStatus(status).label.lower()}
        if by is not None:
            reason += " " + _("by %(person)s") % {"person": messages.person(by)}
    fields = {"status": EscalationStatus.STOPPED, "stopped_at": now, "stop_reason": reason[:255], "stopped_by": by}
    if accepted:
        fields["acknowledged_s"] = max((now - run.started_at).total_seconds(), 0.0)
    if not Escalation.objects.filter(pk=run.pk, status=EscalationStatus.ACTIVE).update(**fields):
        return None
    EscalationStep.objects.filter(escalation=run, status=StepStatus.PENDING).update(
        status=StepStatus.CANCELLED, ran_at=now, outcome=reason[:255])
    if accepted and by is not None:
        tell_it_was_taken(run, order, by)
    return run


def tell_it_was_taken(run, order, by):
    """The people this run notified (supervisors, earlier assignees) hear
    that someone took the order; then the bot may edit the messages."""
    step_ids = [pk for ids in run.steps.values_list("message_ids", flat=True) for pk in ids or []]
    notified = set(MessageLog.objects.filter(pk__in=step_ids).values_list("user_id", flat=True)) - {by.pk, None}
    from django.contrib.auth import get_user_model

    with messages.default_language():
        title = _("Work order %(number)s taken") % {"number": order.number}
        body = _("Work order %(number)s (%(asset)s) taken by %(person)s.") % {
            "number": order.number, "asset": order.asset.code, "person": messages.person(by)}
    for user in get_user_model().objects.filter(pk__in=notified, is_active=True):
        MessageRouter().send_to_user(
            user=user, title=title, message=body, message_type=TAKEN_TYPE, related_object_type=RELATED_TYPE,
            related_object_id=str(order.pk), idempotency_key=f"esc:{run.pk}:taken", link=order.admin_url(),
        )
    message_ids = list(
        MessageLog.objects.filter(related_object_type=RELATED_TYPE, related_object_id=str(order.pk),
                                  created_at__gte=run.started_at).values_list("pk", flat=True)
    )
    transaction.on_commit(lambda: work_order_taken.send(
        sender=Escalation, work_order=order, user=by, escalation=run, message_ids=message_ids))


# -- the scanner ------------------------------------------------------------------
def run_due_steps(now=None, batch=None):
    """Run every due step (oldest first, at most ``batch``); returns counts."""
    now = now or timezone.now()
    batch = batch or cfg("SCAN_BATCH")
    due = list(
        EscalationStep.objects.filter(status=StepStatus.PENDING, due_at__lte=now)
        .order_by("due_at").values_list("pk", "work_order_id")[:batch]
    )
    counts = {"due": len(due), "ran": 0, "cancelled": 0, "taken": 0, "failed": 0}
    for pk, work_order_id in due:
        try:
            outcome = run_step(pk, work_order_id)
        except Exception as exc:  # one broken step must not stop the others, nor its run
            logger.exception("Escalation step %s failed", pk)
            record_failure(pk, work_order_id, exc)
            outcome = "failed"
        counts[outcome] += 1
    return counts


def run_step(step_id, work_order_id):
    """'ran', 'cancelled' or 'taken' (another scanner had it)."""
    with messages.default_language(), transaction.atomic():
        order = WorkOrder.objects.select_for_update().filter(pk=work_order_id).first()
        now = timezone.now()
        if not EscalationStep.objects.filter(pk=step_id, status=StepStatus.PENDING).update(
                status=StepStatus.DONE, ran_at=now):
            return "taken"
        step = EscalationStep.objects.select_related("escalation").get(pk=step_id)
        run = step.escalation
        if order is None or run.status != EscalationStatus.ACTIVE or order.status not in WAITING:
            EscalationStep.objects.filter(pk=step_id).update(
                status=StepStatus.CANCELLED, outcome=_("Not run: the escalation had ended."))
            if order is not None and run.status == EscalationStatus.ACTIVE:
                stop(order, order.status, now=now)
            return "cancelled"
        order = WorkOrder.objects.select_related("asset", "assignee").get(pk=order.pk)
        outcome, message_ids = ACTIONS[step.action](order, run, step)
        EscalationStep.objects.filter(pk=step_id).update(outcome=outcome[:2000], message_ids=message_ids)
        if step.index + 1 < len(run.chain):
            schedule(run, step.index + 1, now)
        else:
            Escalation.objects.filter(pk=run.pk, status=EscalationStatus.ACTIVE).update(
                status=EscalationStatus.EXHAUSTED, stopped_at=now,
                stop_reason=_("Every step ran and nobody accepted the order."))
        logger.info("Escalation %s step %s (%s) for %s: %s", run.pk, step.index, step.action, order.number, outcome)
        return "ran"


def record_failure(step_id, work_order_id, exc):
    """The step's transaction rolled back: mark it DONE with the error (an
    operator reads it on the work order) and schedule the next step, so one
    broken step neither runs again every scan nor ends the escalation."""
    from notifications.redaction import redact

    with messages.default_language(), transaction.atomic():
        WorkOrder.objects.select_for_update().filter(pk=work_order_id).first()
        now = timezone.now()
        error = _("Failed: %(error)s") % {"error": f"{type(exc).__name__}: {redact(str(exc))}"}
        if not EscalationStep.objects.filter(pk=step_id, status=StepStatus.PENDING).update(
                status=StepStatus.DONE, ran_at=now, outcome=error[:2000]):
            return
        step = EscalationStep.objects.select_related("escalation").get(pk=step_id)
        run = step.escalation
        if run.status == EscalationStatus.ACTIVE and step.index + 1 < len(run.chain):
            schedule(run, step.index + 1, now)


def _channels(run, step):
    names = run.chain[step.index].get("channels") or []
    return names or None


def _notify(users, order, run, step, with_buttons):
    """Queue the reminder for ``users``; returns (outcome text, MessageLog ids)."""
    title, body = messages.render(REMINDER_TYPE, messages.work_order_context(order, step=step.index + 1))
    parts, ids = [], []
    for user in users:
        result = MessageRouter().send_to_user(
            user=user, title=title, message=body, message_type=REMINDER_TYPE, priority=order.priority,
            related_object_type=RELATED_TYPE, related_object_id=str(order.pk),
            actions=messages.work_order_actions(order) if with_buttons else None,
            idempotency_key=f"esc:{run.pk}:{step.index}", link=order.admin_url(), channels=_channels(run, step),
        )
        ids.extend(result.message_ids.values())
        channels = ", ".join(sorted(c for c, queued in result.items() if queued)) or _("no reachable channel")
        parts.append(f"{messages.person(user)} ({channels})")
    if not parts:
        return _("Nobody to notify."), ids
    return _("Notified %(people)s.") % {"people": "; ".join(parts)}, ids


def notify_assignee(order, run, step):
    if order.assignee is None or order.status != WorkOrderStatus.ASSIGNED:
        return notify_supervisors(order, run, step)
    return _notify([order.assignee], order, run, step, with_buttons=True)


def notify_supervisors(order, run, step):
    from .predictions import supervisors_for

    return _notify(supervisors_for(order.asset), order, run, step, with_buttons=False)


def reassign(order, run, step):
    from .predictions import choose_operator

    following = choose_operator(order.asset, exclude=[order.assignee_id])
    if following is None:
        return _("Nobody else is available to take the order."), []
    previous = messages.person(order.assignee)
    started = timezone.now()
    order.assign(following)  # notifies the new assignee with the buttons; the run goes on
    ids = list(MessageLog.objects.filter(
        related_object_type=RELATED_TYPE, related_object_id=str(order.pk), created_at__gte=started,
        idempotency_key__startswith=f"wo:{order.pk}:").values_list("pk", flat=True))
    return _("Reassigned from %(from)s to %(to)s.") % {"from": previous or "-", "to": messages.person(following)}, ids


ACTIONS = {
    StepAction.NOTIFY_ASSIGNEE: notify_assignee,
    StepAction.NOTIFY_SUPERVISORS: notify_supervisors,
    StepAction.REASSIGN: reassign,
}


# -- time to acknowledge --------------------------------------------------------------
def _percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def time_to_acknowledge(days=30, now=None):
    """Alert to acceptance over the last ``days``: one row per priority for
    every site (site ''), then one per priority and site, with the count,
    p50 and p90 in seconds. For the dashboard and the admin page."""
    from .models import WorkOrderPriority

    now = now or timezone.now()
    samples = Escalation.objects.filter(started_at__gte=now - timedelta(days=days), acknowledged_s__isnull=False)
    groups = {}
    for priority, site, seconds in samples.values_list("priority", "site", "acknowledged_s"):
        groups.setdefault((priority, ""), []).append(seconds)
        if site:
            groups.setdefault((priority, site), []).append(seconds)
    rank = {p: i for i, p in enumerate(reversed(WorkOrderPriority.values))}
    rows = []
    for (priority, site), values in sorted(groups.items(), key=lambda kv: (rank.get(kv[0][0], 9), kv[0][1])):
        rows.append({"priority": priority, "priority_label": WorkOrderPriority(priority).label, "site": site,
                     "count": len(values), "p50_s": _percentile(values, 0.5), "p90_s": _percentile(values, 0.9)})
    return rows
