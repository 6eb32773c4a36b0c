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


@shared_task(name="cmms.run_escalation_steps")
def run_escalation_steps():
    """Run the escalation steps that came due (beat, every few seconds)."""
    from . import escalation

    return escalation.run_due_steps()


@shared_task(name="cmms.release_held_messages")
def release_held_messages():
    """Send what waited for people's shifts: alone, or as one digest per user and channel."""
    from . import shifts

    return shifts.release_held_messages()


@shared_task(name="cmms.run_channel_failover")
def run_channel_failover():
    """Send high and critical messages again on the next channel when one failed or was not confirmed."""
    from notifications import failover

    return failover.run()
