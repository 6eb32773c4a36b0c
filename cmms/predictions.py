"""What happens when the ML model scores an asset.

``record_prediction`` is the one entry point. It only writes rows, in one
transaction, and never talks to a provider or waits on the broker: the alert is
a MessageLog row that MessageRouter publishes after the commit (and the outbox
relay publishes later if the broker is down).

Policy:

* LOW: the prediction is recorded, nothing else.
* MEDIUM, HIGH, CRITICAL: the open work order for the same asset and failure
  mode is updated, or one is created and assigned (``choose_operator``).
* An alert goes out when the order is created; when the risk rises above the
  highest risk the order has seen (escalation, even inside the cooldown); and
  when the same risk is predicted again after the cooldown
  (``CMMS['PREDICTION_ALERT_COOLDOWN_S']``) since the last alert. Anything else
  updates the order silently, so a model scoring every minute does not flood
  anyone.
* Predictions for one asset are serialized by a row lock on the asset, and a
  partial unique constraint allows one open prediction work order per asset
  and failure mode.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import inbox
from notifications.message_router import MessageRouter
from notifications.models import ChannelType, InAppNotification, UserChannelPreference

from . import messages
from .models import (
    HELD_STATUSES,
    OPEN_STATUSES,
    RISK_RANK,
    Asset,
    FailurePrediction,
    RiskLevel,
    Role,
    WorkOrder,
    WorkOrderPriority,
    WorkOrderSource,
    WorkOrderStatus,
)

logger = logging.getLogger(__name__)

ALERT_TYPE = "prediction_high_risk"
RISK_PRIORITY = {
    RiskLevel.MEDIUM: WorkOrderPriority.NORMAL,
    RiskLevel.HIGH: WorkOrderPriority.HIGH,
    RiskLevel.CRITICAL: WorkOrderPriority.CRITICAL,
}
PRIORITY_RANK = {p: i for i, p in enumerate(WorkOrderPriority.values)}
# How long the team has to act on a predicted failure; a predicted time to
# failure shorter than this sets the due date instead.
RESPONSE_TIME = {
    WorkOrderPriority.NORMAL: timedelta(hours=72),
    WorkOrderPriority.HIGH: timedelta(hours=24),
    WorkOrderPriority.CRITICAL: timedelta(hours=4),
}


def cooldown():
    return timedelta(seconds=settings.CMMS["PREDICTION_ALERT_COOLDOWN_S"])


def record_prediction(
    *,
    asset,
    failure_mode,
    probability,
    risk_level,
    time_to_failure=None,
    time_to_failure_hours=None,
    model_version="",
    details=None,
    external_id=None,
    ml_client=None,
):
    """Record one prediction and act on it (see the module docstring).

    ``asset`` is an Asset or its code. Returns the FailurePrediction; its
    ``work_order`` is the order created or updated (None for LOW), ``action``
    says what happened and ``alerted`` whether an alert was queued. An
    ``external_id`` the same ``ml_client`` used before returns the prediction
    recorded the first time, with ``duplicate = True`` (ids are per client).
    Raises ValidationError for bad input, writing nothing.
    """
    failure_mode = str(failure_mode or "").strip()
    risk_level = str(risk_level or "").strip().upper()
    if time_to_failure is None and time_to_failure_hours is not None:
        try:
            time_to_failure = timedelta(hours=float(time_to_failure_hours))
        except (TypeError, ValueError, OverflowError):
            raise ValidationError({"time_to_failure": _("A number of hours.")}) from None
    _validate(failure_mode, probability, risk_level, time_to_failure)
    with transaction.atomic():
        asset = lock_asset(asset)
        if external_id:
            existing = (
                FailurePrediction.objects.filter(external_id=external_id, ml_client=ml_client)
                .select_related("work_order")
                .first()
            )
            if existing:
                existing.duplicate = True
                return existing
        prediction = FailurePrediction(
            asset=asset,
            failure_mode=failure_mode,
            probability=float(probability),
            risk_level=risk_level,
            time_to_failure=time_to_failure,
            model_version=str(model_version or "")[:50],
            details=details or {},
            external_id=external_id or None,
            ml_client=ml_client,
        )
        prediction.duplicate = False
        if RISK_RANK[risk_level] >= RISK_RANK[RiskLevel.MEDIUM]:
            _act_on(prediction)
        prediction.save()
    return prediction


def _validate(failure_mode, probability, risk_level, time_to_failure):
    errors = {}
    if not failure_mode:
        errors["failure_mode"] = _("This field is required.")
    elif len(failure_mode) > 100:
        errors["failure_mode"] = _("At most 100 characters.")
    try:
        if isinstance(probability, bool) or not 0.0 <= float(probability) <= 1.0:
            raise ValueError
    except (TypeError, ValueError):
        errors["probability"] = _("A number from 0 to 1.")
    if risk_level not in RiskLevel.values:
        errors["risk_level"] = _("One of: %(choices)s.") % {"choices": ", ".join(RiskLevel.values)}
    if time_to_failure is not None and time_to_failure < timedelta(0):
        errors["time_to_failure"] = _("Cannot be negative.")
    if errors:
        raise ValidationError(errors)


def lock_asset(asset):
    """The asset row, locked until the transaction ends: predictions for one
    asset run one at a time (SQLite's write lock does the same)."""
    lookup = {"pk": asset.pk} if isinstance(asset, Asset) else {"code": str(asset)}
    try:
        return Asset.objects.select_for_update().get(**lookup)
    except Asset.DoesNotExist:
        raise ValidationError({"asset": _("Unknown asset %(code)r.") % {"code": lookup.get("code", asset)}}) from None


def _act_on(prediction):
    """Create or update the open work order and alert when the policy says so."""
    now = timezone.now()
    order = (
        WorkOrder.objects.filter(
            asset=prediction.asset, failure_mode=prediction.failure_mode,
            source=WorkOrderSource.PREDICTION, status__in=OPEN_STATUSES,
        )
        .select_related("asset", "assignee")
        .first()
    )
    previous_risk = None
    if order is None:
        order = _create_work_order(prediction, now)
        action, alert = FailurePrediction.Action.CREATED, True
    elif RISK_RANK[prediction.risk_level] > RISK_RANK[order.risk_level or RiskLevel.LOW]:
        previous_risk = order.risk_level
        _escalate(order, prediction, now)
        action, alert = FailurePrediction.Action.ESCALATED, True
    elif order.last_alert_at is None or now - order.last_alert_at >= cooldown():
        action, alert = FailurePrediction.Action.REALERTED, True
    else:
        action, alert = FailurePrediction.Action.UPDATED, False
    if alert and order.status in (WorkOrderStatus.OPEN, WorkOrderStatus.REJECTED):
        # Nobody holds the order (new, or rejected): find someone now.
        exclude = [order.assignee_id] if order.status == WorkOrderStatus.REJECTED and order.assignee_id else []
        operator = choose_operator(order.asset, exclude=exclude)
        if operator:
            order.assign(operator, notify=False)  # the alert below carries the buttons
    prediction.work_order = order
    prediction.action = action
    if alert:
        prediction.alerted = send_alert(order, prediction, previous_risk=previous_risk,
                                        repeated=action == FailurePrediction.Action.REALERTED)
    WorkOrder.objects.filter(pk=order.pk).update(updated_at=now)


def _create_work_order(prediction, now):
    priority = RISK_PRIORITY[prediction.risk_level]
    with messages.default_language():
        title = _("Predicted failure: %(mode)s") % {"mode": prediction.failure_mode}
        description = _("Opened by the failure prediction model %(version)s: %(mode)s, probability %(p)d %%.") % {
            "version": prediction.model_version or "-",
            "mode": prediction.failure_mode,
            "p": round(prediction.probability * 100),
        }
    order = WorkOrder(
        asset=prediction.asset,
        title=title[:200],
        description=description,
        priority=priority,
        source=WorkOrderSource.PREDICTION,
        failure_mode=prediction.failure_mode,
        risk_level=prediction.risk_level,
        due_at=_due(now, priority, prediction.time_to_failure),
    )
    order.save()
    return order


def _escalate(order, prediction, now):
    priority = RISK_PRIORITY[prediction.risk_level]
    if PRIORITY_RANK[priority] > PRIORITY_RANK[order.priority]:
        order.priority = priority
    due = _due(now, priority, prediction.time_to_failure)
    if order.due_at is None or due < order.due_at:
        order.due_at = due
    order.risk_level = prediction.risk_level
    order.save(update_fields=["priority", "due_at", "risk_level", "updated_at"])


def _due(now, priority, time_to_failure):
    response = RESPONSE_TIME[priority]
    if time_to_failure is not None and time_to_failure < response:
        response = time_to_failure
    return now + response


def choose_operator(asset, exclude=()):
    """The active operator of the asset's site holding the fewest open work
    orders (assigned, accepted or in progress), ties broken by lowest id; when
    the site has none, the same rule over every active operator. None when
    there is no active operator at all.

    Two concurrent predictions on different assets may pick the same person:
    the balance is best effort, the assignment itself is always consistent."""
    held = Count("work_orders", filter=Q(work_orders__status__in=HELD_STATUSES))
    operators = (
        get_user_model().objects.filter(role=Role.OPERATOR, is_active=True)
        .exclude(pk__in=[pk for pk in exclude if pk])
        .annotate(held=held)
        .order_by("held", "pk")
    )
    if asset.site:
        local = operators.filter(site=asset.site).first()
        if local:
            return local
    return operators.first()


def supervisors_for(asset):
    """Active supervisors of the asset's site, else every active supervisor."""
    supervisors = get_user_model().objects.filter(role=Role.SUPERVISOR, is_active=True).order_by("pk")
    local = list(supervisors.filter(site=asset.site)) if asset.site else []
    return local or list(supervisors)


def send_alert(order, prediction, previous_risk=None, repeated=False):
    """Queue the alert for the order's holder (or the supervisors when nobody
    holds it). Returns True when at least one recipient was found."""
    WorkOrder.objects.filter(pk=order.pk).update(alert_seq=F("alert_seq") + 1, last_alert_at=timezone.now())
    order.refresh_from_db(fields=["alert_seq", "last_alert_at", "status", "assignee"])
    holder = order.assignee if order.status in HELD_STATUSES else None
    if order.status == WorkOrderStatus.ASSIGNED:
        # A new alert on an order whose escalation ran out starts it again
        # (a no-op while one is running).
        from . import escalation

        escalation.start(order)
    recipients = [holder] if holder else supervisors_for(order.asset)
    if not recipients:
        logger.warning("No operator or supervisor to alert about %s (%s).", order.number, order.asset.code)
        return False
    context = messages.work_order_context(
        order,
        failure_mode=prediction.failure_mode,
        risk=messages.label(RiskLevel, prediction.risk_level).upper(),
        previous_risk=messages.label(RiskLevel, previous_risk).upper() if previous_risk else "",
        repeated=repeated,
        probability=round(prediction.probability * 100),
        time_to_failure=messages.duration(prediction.time_to_failure),
        model_version=prediction.model_version,
    )
    title, body = messages.render(ALERT_TYPE, context)
    for user in recipients:
        actions = messages.work_order_actions(order) if order.status == WorkOrderStatus.ASSIGNED and user == holder else None
        result = MessageRouter().send_to_user(
            user=user,
            title=title,
            message=body,
            message_type=ALERT_TYPE,
            priority=RISK_PRIORITY[prediction.risk_level],
            related_object_type="work_order",
            related_object_id=str(order.pk),
            actions=actions,
            idempotency_key=f"prediction:{order.pk}:alert:{order.alert_seq}",
            link=order.admin_url(),
        )
        _ensure_in_app(user, result, title, body, order)
    return True


def _ensure_in_app(user, result, title, body, order):
    """The CMMS inbox always gets the alert. MessageRouter files it for users
    with an IN_APP preference; a user without one gets it here, so there is
    exactly one entry either way. An IN_APP preference that is switched off or
    opted out of predictions is respected."""
    if ChannelType.IN_APP in result:
        return
    if UserChannelPreference.objects.filter(user=user, channel_type=ChannelType.IN_APP).exists():
        return
    InAppNotification.objects.create(
        user=user,
        message_type=ALERT_TYPE,
        title=title,
        body=body,
        priority=order.priority,
        related_object_type="work_order",
        related_object_id=str(order.pk),
        link=order.admin_url(),
    )
    # No delivery task for it: tell the open pages directly (a hint; they
    # fetch the row, and a lost hint shows on the next refresh).
    transaction.on_commit(lambda: inbox.push_quietly(user.pk, {"type": inbox.NEW, "priority": order.priority}))
