"""The broadcast relay every 5 s: a role broadcast whose expansion task was
lost, or whose worker died mid-expansion, gets its task again
(notifications.role_broadcasts.relay)."""

from django.db import migrations

from notifications import beat_schedules

SCHEDULES = [
    ("relay-role-broadcasts", "workers.relay_role_broadcasts", 5),
]


def install(apps, schema_editor):
    beat_schedules.install(apps, SCHEDULES)


def remove(apps, schema_editor):
    beat_schedules.remove(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [("workers", "0003_retention_and_stats_schedules"), ("notifications", "0013_role_broadcasts")]
    operations = [migrations.RunPython(install, remove)]
