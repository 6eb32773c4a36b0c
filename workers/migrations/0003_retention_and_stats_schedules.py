"""Retention: purge old MessageLog rows every ten minutes, a few batches at
a time; roll up hourly message statistics every minute (the dashboard's
charts and /metrics' totals)."""

from django.db import migrations

from notifications import beat_schedules

SCHEDULES = [
    ("purge-message-log", "workers.purge_message_log", 600),
    ("rollup-message-stats", "workers.rollup_message_stats", 60),
]


def install(apps, schema_editor):
    beat_schedules.install(apps, SCHEDULES)


def remove(apps, schema_editor):
    beat_schedules.remove(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [("workers", "0002_inbound_relay_schedule")]
    operations = [migrations.RunPython(install, remove)]
