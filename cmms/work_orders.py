"""Work-order notifications: who hears about an assignment, and what they read.

Called from WorkOrder.assign() inside its transaction: MessageRouter writes the
MessageLog rows there and publishes them only after the commit, so a rolled
back assignment sends nothing.
"""

from notifications.message_router import MessageRouter

from . import messages

RELATED_TYPE = "work_order"


def notify_assignment(work_order, previous=None):
    """The new assignee gets the order with accept/reject buttons; a previous
    assignee is told it left them."""
    reassigned = previous is not None
    context = messages.work_order_context(work_order, reassigned=reassigned)
    title, body = messages.render("work_order_assigned", context)
    seq = work_order.assignment_seq
    MessageRouter().send_to_user(
        user=work_order.assignee,
        title=title,
        message=body,
        message_type="work_order_assigned",
        priority=work_order.priority,
        related_object_type=RELATED_TYPE,
        related_object_id=str(work_order.pk),
        actions=messages.work_order_actions(work_order),
        idempotency_key=f"wo:{work_order.pk}:assigned:{seq}",
        link=work_order.admin_url(),
        context=messages.template_fields(context, assignment_seq=seq),
    )
    if reassigned and previous.is_active:
        title, body = messages.render("work_order_updated", messages.work_order_context(work_order))
        MessageRouter().send_to_user(
            user=previous,
            title=title,
            message=body,
            message_type="work_order_updated",
            related_object_type=RELATED_TYPE,
            related_object_id=str(work_order.pk),
            idempotency_key=f"wo:{work_order.pk}:unassigned:{seq}",
            link=work_order.admin_url(),
        )
