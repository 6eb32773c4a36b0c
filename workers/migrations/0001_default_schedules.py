"""Install the delivery safety nets as beat schedules (editable in admin:
Periodic tasks). Installed by a migration, not CELERY_BEAT_SCHEDULE, so that
an operator's edits survive a beat restart."""

from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("relay-outbox", "workers.relay_outbox", 5),
    ("refresh-channel-stats", "workers.refresh_channel_stats", 30),
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
    dependencies = [("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(install, remove)]
