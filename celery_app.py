"""The Celery app. Configuration lives in Django settings (CELERY_ namespace).

Every queue is declared here, so a plain ``celery -A celery_app worker``
consumes all of them, and production runs one pool per channel with ``-Q``.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmms.settings")

from workers import quiet_logs  # standard library only

quiet_logs.install()  # no INFO line every 5 s for the relay and statistics tasks

app = Celery("cmms")
app.config_from_object("django.conf:settings", namespace="CELERY")

from django.conf import settings  # noqa: E402  (after the settings module is set)

app.conf.task_queues = [Queue(settings.CELERY_DEFAULT_QUEUE_NAME), Queue(settings.INBOUND_QUEUE_NAME)] + [
    Queue(name) for name in sorted(set(settings.NOTIFICATION_QUEUES.values()))
]
app.autodiscover_tasks(["workers", "cmms", "notifications"])
