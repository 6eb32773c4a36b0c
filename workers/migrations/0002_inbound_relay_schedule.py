"""The inbound relay: publish again inbound events (button presses, receipts)
whose publish was lost or whose worker died."""

from django.db import migrations

SCHEDULES = [("relay-inbound", "workers.relay_inbound", 5)]


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
    dependencies = [("workers", "0001_default_schedules")]
    operations = [migrations.RunPython(install, remove)]
