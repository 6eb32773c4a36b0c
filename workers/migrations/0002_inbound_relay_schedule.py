"""The inbound relay: publish again inbound events (button presses, receipts)
whose publish was lost or whose worker died."""

from django.db import migrations

from notifications import beat_schedules

SCHEDULES = [("relay-inbound", "workers.relay_inbound", 5)]


def install(apps, schema_editor):
    beat_schedules.install(apps, SCHEDULES)


def remove(apps, schema_editor):
    beat_schedules.remove(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [("workers", "0001_default_schedules")]
    operations = [migrations.RunPython(install, remove)]
