"""Install the maintenance reminders as beat schedules (editable in admin:
Periodic tasks), like workers/migrations/0001_default_schedules.py. A reminder
is sent at most once a day per order or plan whatever the schedule, so running
the overdue check hourly only picks up newly overdue orders sooner."""

from django.conf import settings
from django.db import migrations

SCHEDULES = [
    # (name, task, crontab minute, crontab hour)
    ("preventive-maintenance-reminders", "cmms.send_preventive_reminders", "0", "7"),
    ("overdue-work-order-reminders", "cmms.send_overdue_reminders", "5", "*"),
]


def install(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute, hour in SCHEDULES:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "crontab": crontab, "queue": "default", "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_rest in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("cmms", "0002_maintenance_domain"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(install, remove)]
