"""MessageLog retention: rows in a final state older than
MESSAGE_LOG_RETENTION_DAYS are deleted in small batches (each its own short
transaction, by primary key), so the purge never holds long locks and a
table of millions shrinks while delivery goes on."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import delivery_states
from .models import MessageLog

logger = logging.getLogger(__name__)
FINAL = (*delivery_states.ACCEPTED, *delivery_states.TERMINAL)
# Rows a running purge deletes at most per call, so one beat run stays short.
MAX_BATCHES_PER_RUN = 20


def purge(now=None, days=None, batch=None):
    """Delete final rows created more than ``days`` ago; returns how many.
    Rows still waiting or in flight are never touched, however old."""
    days = settings.MESSAGE_LOG_RETENTION_DAYS if days is None else days
    batch = batch or settings.MESSAGE_LOG_PURGE_BATCH
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = MessageLog.objects.filter(created_at__lt=cutoff, status__in=FINAL)
    deleted = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        ids = list(old.order_by("created_at").values_list("pk", flat=True)[:batch])
        if not ids:
            break
        # InAppNotification keeps its row (SET_NULL): the inbox is the user's.
        deleted += MessageLog.objects.filter(pk__in=ids).delete()[1].get("notifications.MessageLog", 0)
    if deleted:
        logger.info("Retention: purged %d message log row(s) older than %d days", deleted, days)
    return deleted



