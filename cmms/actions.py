"""People's decisions on work orders, whichever channel they came from.

A Telegram button, a WhatsApp reply, an SMS keyword, the inbox or the admin
all call ``decide()``: authorization and the state transition live here,
once. The order is locked for the decision, so a double press or the same
update delivered twice makes exactly one transition, and the order keeps who
decided, when, and through which channel.

Every outcome carries a message in the default language for the person who
acted; a refusal is an ``ActionRefused`` whose text says why (not your order,
the order moved on, the offer is stale) and changes nothing.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import messages
from .models import Role, WorkOrder, WorkOrderStatus

ACCEPT = "accept"
REJECT = "reject"
DECISIONS = (ACCEPT, REJECT)
# Roles that may decide for an order assigned to someone else.
OVERSEERS = (Role.SUPERVISOR, Role.ADMIN)


class ActionRefused(Exception):
    """The action was not applied; ``str()`` is the explanation for the person."""


@dataclass
class ActionResult:
    work_order: WorkOrder
    changed: bool
    message: str
    # Who holds the order after a rejection (None: nobody was available).
    reassigned_to: object = None


def may_act_on(order, user):
    return bool(user and user.is_active and (order.assignee_id == user.pk or user.role in OVERSEERS))


def decide(work_order_id, user, decision, via, reason="", offered_seq=None):
    """Accept or reject a work order for ``user`` via channel ``via``
    (TELEGRAM, WHATSAPP, SMS, IN_APP, ADMIN). ``offered_seq`` is the order's
    ``assignment_seq`` when the buttons were sent: a press on an offer made
    before a reassignment is refused. Raises ActionRefused."""
    with messages.default_language(), transaction.atomic():
        if decision not in DECISIONS:
            raise ActionRefused(_("Unknown action."))
        order = WorkOrder.objects.select_for_update().filter(pk=work_order_id).first()
        if order is None:
            raise ActionRefused(_("That work order does not exist (any more)."))
        if not may_act_on(order, user):
            raise ActionRefused(
                _("Work order %(number)s is not assigned to you; only its assignee or a supervisor can act on it.")
                % {"number": order.number}
            )
        repeat = _already_decided(order, user, decision, offered_seq)
        if repeat:
            return ActionResult(order, False, repeat)
        if offered_seq is not None and int(offered_seq) != order.assignment_seq:
            raise ActionRefused(
                _("This offer of %(number)s is no longer current: the order was reassigned.") % {"number": order.number}
            )
        if order.status != WorkOrderStatus.ASSIGNED:
            raise ActionRefused(
                _("Work order %(number)s is %(status)s now; nothing was changed.")
                % {"number": order.number, "status": WorkOrderStatus(order.status).label.lower()}
            )
        stamp = {"decided_by": user, "decided_at": timezone.now(), "decided_via": str(via)[:20]}
        if decision == ACCEPT:
            order._transition(WorkOrderStatus.ACCEPTED, accepted_at=stamp["decided_at"], **stamp)
            return ActionResult(order, True, _("✅ Work order %(number)s accepted by %(person)s.") % {
                "number": order.number, "person": messages.person(user)})
        rejected_by = order.assignee_id
        order._transition(WorkOrderStatus.REJECTED, rejection_reason=str(reason or "")[:255], **stamp)
        return _reassign_after_rejection(order, user, rejected_by)


def _already_decided(order, user, decision, offered_seq):
    """The message for a repeat of the decision that was already applied to
    this offer (a double press, a redelivered update), else ''."""
    target = WorkOrderStatus.ACCEPTED if decision == ACCEPT else WorkOrderStatus.REJECTED
    same_offer = offered_seq is None or int(offered_seq) == order.assignment_seq
    if order.status == target and order.decided_by_id == user.pk and same_offer:
        if decision == ACCEPT:
            return _("You already accepted work order %(number)s.") % {"number": order.number}
        return _("You already rejected work order %(number)s.") % {"number": order.number}
    return ""


def _reassign_after_rejection(order, user, rejected_by):
    """The assignment rule picks the next operator (never the one who
    rejected); they get the order with its buttons after the commit."""
    from .predictions import choose_operator

    following = choose_operator(order.asset, exclude=[rejected_by, user.pk])
    text = _("❌ Work order %(number)s rejected by %(person)s.") % {
        "number": order.number, "person": messages.person(user)}
    if following is None:
        return ActionResult(order, True, text + " " + _("Nobody else is available; a supervisor must assign it."))
    order.assign(following)
    return ActionResult(
        order, True, text + " " + _("Reassigned to %(person)s.") % {"person": messages.person(following)}, following
    )
