"""Maintenance tasks for celery beat. Thin: the policy is in cmms.reminders.
They run on the ``default`` queue (CELERY_TASK_DEFAULT_QUEUE), except the
retry of Telegram edits, which runs on the telegram queue."""

from celery import shared_task

from . import reminders


@shared_task(name="cmms.send_preventive_reminders")
def send_preventive_reminders():
    """Remind technicians of preventive maintenance due soon (once a day each)."""
    return reminders.send_preventive_reminders()


@shared_task(name="cmms.send_overdue_reminders")
def send_overdue_reminders():
    """Remind assignees of overdue work orders and, later, their supervisors (once a day each)."""
    return reminders.send_overdue_reminders()


@shared_task(name="cmms.edit_offer_messages", ignore_result=True, acks_late=True)
def edit_offer_messages(work_order_id, seq, attempt):
    """Edit again the Telegram messages that offered a decision, after an edit
    failed for a passing reason (cmms.telegram_bot.update_offer_messages)."""
    from . import messages, telegram_bot
    from .models import WorkOrder

    order = WorkOrder.objects.filter(pk=work_order_id).first()
    if order is None:
        return "gone"
    with messages.default_language():
        return telegram_bot.update_offer_messages(order, seq, attempt=attempt)
