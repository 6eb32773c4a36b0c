"""Beat schedules installed by data migrations (editable afterwards in the
admin's Periodic tasks, and an operator's edits survive a beat restart).
A migration lists ``(name, task, every_seconds)`` rows and calls these."""


def install(apps, schedules, queue="default"):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in schedules:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "queue": queue, "enabled": True}
        )


def remove(apps, schedules):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[name for name, _task, _every in schedules]
    ).delete()
