"""Maintenance tasks for celery beat. Thin: the policy is in cmms.reminders.
They run on the ``default`` queue (CELERY_TASK_DEFAULT_QUEUE)."""

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
