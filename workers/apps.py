from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self):
        from . import ack_wakeup, checks  # noqa: F401  (registers the worker signal and the system checks)
