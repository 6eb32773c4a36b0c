# Load the Celery app with Django, so that shared tasks published from web
# processes and management commands use our broker settings.
from celery_app import app as celery_app

__all__ = ("celery_app",)
