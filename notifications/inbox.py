"""The in-app inbox: what a user reads in the web app, and the pushes that
keep open pages current.

The InAppNotification row is the truth; a push through the channel layer
(Django Channels, Redis) is only a hint. A page that gets ``inbox.new`` asks
``/inbox/api/since/?after=<last id>`` for the rows it has not shown, and a page
that reconnects does the same, so a lost push loses nothing and a repeated one
shows nothing twice.
"""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import delivery_states
from .models import InAppNotification, MessageLog, MessageStatus

logger = logging.getLogger(__name__)

NEW = "inbox.new"  # a notification was stored: fetch what you have not shown
READ = "inbox.read"  # notifications were read (in another tab): mark them, update the badge


class PushFailed(Exception):
    """The channel layer did not take the push (Redis down or hung)."""


def group_for(user_id):
    """The channel-layer group of one user's open pages (every tab, every device)."""
    return f"inbox.user.{int(user_id)}"


def push(user_id, event):
    """Send ``event`` (a dict with a ``type``) to every open page of the user,
    waiting at most INBOX["PUSH_TIMEOUT_S"]; raises PushFailed.

    async_to_sync runs the send on an event loop of its own and closes it, and
    channels_redis keeps one connection pool per loop and closes it with the
    loop, so a Celery thread never reuses a pool from a closed loop ("Event
    loop is closed", channels_redis #332)."""
    layer = get_channel_layer()
    if layer is None:
        raise PushFailed("CHANNEL_LAYERS is not configured")
    timeout = settings.INBOX["PUSH_TIMEOUT_S"]

    async def send():
        await asyncio.wait_for(layer.group_send(group_for(user_id), event), timeout)

    try:
        async_to_sync(send)()
    except TimeoutError:
        raise PushFailed(f"the channel layer did not answer within {timeout:g} s") from None
    except Exception as exc:  # noqa: BLE001 - redis/OS errors of several types all mean "not pushed"
        raise PushFailed(f"{type(exc).__name__}: {exc}") from None


def push_quietly(user_id, event):
    """A push nobody retries (a read in another tab): logged when it fails; the
    other pages catch up on their next fetch or refresh."""
    try:
        push(user_id, event)
    except PushFailed as exc:
        logger.warning("Inbox push to user %s not sent (%s); open pages catch up on refresh.", user_id, exc)


def for_user(user, message_type="", unread=False):
    notes = InAppNotification.objects.filter(user=user)
    if message_type:
        notes = notes.filter(message_type=message_type)
    if unread:
        notes = notes.filter(read_at__isnull=True)
    return notes.order_by("-created_at", "-id")


def unread_count(user):
    return InAppNotification.objects.filter(user=user, read_at__isnull=True).count()


def since(user, after_id, limit=None):
    """The user's notifications with an id above ``after_id``, oldest first."""
    limit = limit or settings.INBOX["SINCE_LIMIT"]
    return list(InAppNotification.objects.filter(user=user, pk__gt=after_id).order_by("pk")[:limit])


def mark_read(user, notes):
    """Mark ``notes`` (a queryset of the user's notifications) read: sets
    read_at, moves their MessageLog rows to READ (forward only), and tells the
    user's other open pages after commit. Returns the ids that changed."""
    now = timezone.now()
    with transaction.atomic():
        unread = notes.filter(user=user, read_at__isnull=True)
        ids = list(unread.values_list("pk", flat=True))
        if not ids:
            return []
        # Bounded by the newest id seen, so a row committed meanwhile stays unread.
        scope = unread.filter(pk__lte=max(ids))
        logs = MessageLog.objects.filter(pk__in=scope.exclude(message_log=None).values("message_log_id"))
        delivery_states.advance(logs, MessageStatus.READ, at=now)
        scope.update(read_at=now)
        left = unread_count(user)
    transaction.on_commit(lambda: push_quietly(user.pk, {"type": READ, "ids": ids[:500], "all": len(ids) > 500,
                                                         "unread": left}))
    return ids
