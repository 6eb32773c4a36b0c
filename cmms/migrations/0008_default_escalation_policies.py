"""Ship the default escalation policies (CRITICAL and HIGH, every site) and
the beat schedules of the escalation scanner, the off-shift release and the
channel failover. Waits are left empty so they come from settings
(ESCALATION["DEFAULT_WAIT_S"], ESCALATION_STEP_WAIT_S); an operator edits all
of it in the admin, and the edits survive (installed once, like
workers/migrations/0001_default_schedules.py)."""

from django.db import migrations

from notifications import beat_schedules

EVERY_CHANNEL = "TELEGRAM,WHATSAPP,SMS,EMAIL,IN_APP"
POLICIES = [
    # (name, priority, repeat_last)
    ("Crítica: insistir hasta que alguien acepte", "critical", 2),
    ("Alta: insistir hasta que alguien acepte", "high", 1),
]
STEPS = [
    # (position, action, channels)
    (1, "NOTIFY_ASSIGNEE", EVERY_CHANNEL),
    (2, "NOTIFY_SUPERVISORS", ""),
    (3, "REASSIGN", ""),
]
SCHEDULES = [
    # (name, task, every seconds)
    ("escalation-steps", "cmms.run_escalation_steps", 5),
    ("release-held-messages", "cmms.release_held_messages", 30),
    ("channel-failover", "cmms.run_channel_failover", 10),
]


def install(apps, schema_editor):
    Policy = apps.get_model("cmms", "EscalationPolicy")
    Step = apps.get_model("cmms", "EscalationPolicyStep")
    for name, priority, repeat in POLICIES:
        policy, created = Policy.objects.get_or_create(priority=priority, site="",
                                                       defaults={"name": name, "repeat_last": repeat})
        if created:
            for position, action, channels in STEPS:
                Step.objects.create(policy=policy, position=position, action=action, channels=channels)
    beat_schedules.install(apps, SCHEDULES)


def remove(apps, schema_editor):
    apps.get_model("cmms", "EscalationPolicy").objects.filter(priority__in=[p for _n, p, _r in POLICIES], site="").delete()
    beat_schedules.remove(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [
        ("cmms", "0007_escalation_and_shifts"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(install, remove)]
