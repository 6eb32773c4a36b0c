"""Publishing delivery tasks, bounded in time.

The MessageLog row is the outbox: it is committed first, then published. A
publish that fails (broker down) is logged and left to the relay
(workers.tasks.relay_outbox), so a producer never blocks on Redis and never
loses a message because of it.
"""

import logging
import time

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

# Above this many messages, the producer publishes a few fan-out tasks and a
# worker publishes the per-message tasks: a broadcast to thousands returns fast.
FANOUT_THRESHOLD = 50
FANOUT_CHUNK = 500
# After a failed publish, skip publishing for this long (the relay catches up),
# so a burst of producer calls during an outage does not pay the timeout each.
_BREAKER_S = 5.0
_broker_down_until = 0.0


def queue_for(channel_type):
    return settings.NOTIFICATION_QUEUES.get(channel_type, settings.CELERY_DEFAULT_QUEUE_NAME)


def publish(messages, *, fanout=True):
    """Publish delivery tasks for ``messages``: (id, channel_type) pairs.
    Returns the number published; never raises for a broker problem."""
    global _broker_down_until
    from workers.tasks import deliver_message, publish_messages

    from .models import MessageLog

    messages = list(messages)
    if not messages:
        return 0
    if time.monotonic() < _broker_down_until:
        logger.warning("Broker marked down: %d message(s) stay QUEUED for the relay.", len(messages))
        return 0
    published = []
    try:
        if fanout and len(messages) > FANOUT_THRESHOLD:
            for start in range(0, len(messages), FANOUT_CHUNK):
                chunk = messages[start : start + FANOUT_CHUNK]
                publish_messages.apply_async(args=[[[i, c] for i, c in chunk]], queue=settings.CELERY_DEFAULT_QUEUE_NAME)
            return len(messages)  # the fan-out task marks them published
        for message_id, channel_type in messages:
            deliver_message.apply_async(args=[message_id], queue=queue_for(channel_type))
            published.append(message_id)
    except Exception as exc:  # kombu/redis raise several types; all mean "not published"
        _broker_down_until = time.monotonic() + _BREAKER_S
        logger.warning(
            "Could not publish %d of %d message(s) (%s: %s); they stay QUEUED and the relay will publish them.",
            len(messages) - len(published),
            len(messages),
            type(exc).__name__,
            exc,
        )
    finally:
        if published:
            MessageLog.objects.filter(pk__in=published).update(published_at=timezone.now())
    return len(published)


def reset_breaker():
    global _broker_down_until
    _broker_down_until = 0.0
