"""Every beat schedule the migrations install is there, on the queue the
default worker consumes, and reversing a migration removes only its own."""

import pytest
from django_celery_beat.models import PeriodicTask

from notifications import beat_schedules

pytestmark = pytest.mark.django_db
EXPECTED = {
    "relay-outbox": "workers.relay_outbox",
    "refresh-channel-stats": "workers.refresh_channel_stats",
    "relay-inbound": "workers.relay_inbound",
    "purge-message-log": "workers.purge_message_log",
    "rollup-message-stats": "workers.rollup_message_stats",
    "relay-role-broadcasts": "workers.relay_role_broadcasts",
    "escalation-steps": "cmms.run_escalation_steps",
    "release-held-messages": "cmms.release_held_messages",
    "channel-failover": "cmms.run_channel_failover",
}


def test_the_migrations_install_every_schedule_on_the_default_queue():
    installed = dict(PeriodicTask.objects.filter(name__in=EXPECTED).values_list("name", "task"))
    assert installed == EXPECTED
    assert set(PeriodicTask.objects.filter(name__in=EXPECTED).values_list("queue", flat=True)) == {"default"}


def test_install_is_idempotent_and_remove_takes_only_the_named_rows():
    from django.apps import apps

    rows = [("test-schedule", "workers.relay_outbox", 7)]
    beat_schedules.install(apps, rows)
    beat_schedules.install(apps, rows)
    assert PeriodicTask.objects.filter(name="test-schedule").count() == 1
    beat_schedules.remove(apps, rows)
    assert not PeriodicTask.objects.filter(name="test-schedule").exists()
    assert PeriodicTask.objects.filter(name="relay-outbox").exists()
