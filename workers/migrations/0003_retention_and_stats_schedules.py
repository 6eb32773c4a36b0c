"""Retention: purge old MessageLog rows every ten minutes, a few batches at
a time; roll up hourly message statistics every minute (the dashboard's
charts and /metrics' totals)."""

from django.db import migrations

SCHEDULES = [
    ("purge-message-log", "workers.purge_message_log", 600),
    ("rollup-message-stats", "workers.rollup_message_stats", 60),
]


def install(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "queue": "default", "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _t, _e in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("workers", "0002_inbound_relay_schedule")]
    operations = [migrations.RunPython(install, remove)]
