"""The Celery app. Configuration lives in Django settings (CELERY_ namespace).

Every queue is declared here, so a plain ``celery -A celery_app worker``
consumes all of them, and production runs one pool per channel with ``-Q``.
"""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmms.settings")

from workers import ack_wakeup, quiet_logs  # standard library and celery only

quiet_logs.install()  # no INFO line every 5 s for the relay and statistics tasks

app = Celery("cmms")
app.config_from_object("django.conf:settings", namespace="CELERY")

from django.conf import settings  # noqa: E402  (after the settings module is set)


def durable_queue(name):
    """A durable queue bound to a durable direct exchange of its own name: on
    RabbitMQ the queue and its persistent tasks survive a broker restart
    (tasks are published straight to the queue by name either way)."""
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True, auto_delete=False)


app.conf.task_queues = [durable_queue(settings.CELERY_DEFAULT_QUEUE_NAME), durable_queue(settings.INBOUND_QUEUE_NAME)] + [
    durable_queue(name) for name in sorted(set(settings.NOTIFICATION_QUEUES.values()))
]
app.steps["consumer"].add(ack_wakeup.AckWakeup)  # -P threads: acks run at once, also after a reconnect
app.autodiscover_tasks(["workers", "cmms", "notifications"])
