"""Celery tasks. Thin: they take ids and call workers.delivery / workers.outbox."""

from celery import shared_task

from notifications import inbound

from . import delivery, outbox

# The database unreachable (restarting, failing over, refusing connections):
# the task retries itself in seconds, so delivery resumes as soon as the
# database is back instead of waiting for the relay's republish. After the
# last retry the row is still in the database, and the relay publishes it.
DATABASE_DOWN = delivery.DATABASE_DOWN


@shared_task(
    name="workers.deliver_message", ignore_result=True, acks_late=True,
    autoretry_for=DATABASE_DOWN, retry_backoff=0.5, retry_backoff_max=4, retry_jitter=True, max_retries=100,
)
def deliver_message(message_id):
    """Deliver one MessageLog row (a retry's countdown). Safe to run twice: the claim has one winner."""
    return delivery.deliver(message_id)


@shared_task(
    name="workers.deliver_messages", ignore_result=True, acks_late=True,
    autoretry_for=DATABASE_DOWN, retry_backoff=0.5, retry_backoff_max=4, retry_jitter=True, max_retries=100,
)
def deliver_messages(message_ids):
    """Deliver a batch of MessageLog rows of one channel, each on its own
    terms (workers.delivery.deliver_batch). Safe to run twice."""
    outcomes = delivery.deliver_batch(list(message_ids))
    counts = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@shared_task(name="workers.publish_messages", ignore_result=True, acks_late=True)
def publish_messages(messages):
    """Fan-out for large publishes: publish the deliver_messages batches of these [id, channel] pairs."""
    from notifications import dispatch

    return dispatch.publish([tuple(m) for m in messages], fanout=False, timeout=None)


@shared_task(name="workers.relay_outbox")
def relay_outbox():
    """Publish rows whose publish was lost and reclaim rows whose worker died."""
    return outbox.relay()


@shared_task(name="workers.refresh_channel_stats")
def refresh_channel_stats():
    """Recompute ChannelConfig counters from MessageLog (no per-message hot row)."""
    return outbox.refresh_channel_stats()


@shared_task(name="workers.process_inbound_event", ignore_result=True, acks_late=True)
def process_inbound_event(event_id):
    """Run the provider's handler for one InboundEvent (a press, a command, a
    receipt). Safe to run twice: the claim has one winner."""
    status, retry_in = inbound.process(event_id)
    if retry_in is not None:
        inbound.publish_event(event_id, countdown=retry_in)
    return status


@shared_task(name="workers.relay_inbound")
def relay_inbound():
    """Publish again inbound events whose publish was lost or whose worker died."""
    due = list(inbound.due_for_retry())
    for event_id in due:
        inbound.publish_event(event_id)
    return {"republished": len(due)}


@shared_task(name="workers.purge_message_log")
def purge_message_log():
    """Retention: delete final MessageLog rows older than MESSAGE_LOG_RETENTION_DAYS, in batches."""
    from notifications import retention

    return {"deleted": retention.purge()}


@shared_task(name="workers.rollup_message_stats")
def rollup_message_stats():
    """Hourly MessageLog roll-ups for the dashboard's charts and /metrics."""
    from notifications import stats

    return {"written": stats.rollup()}


@shared_task(
    name="workers.expand_role_broadcast", ignore_result=True, acks_late=True,
    autoretry_for=DATABASE_DOWN, retry_backoff=0.5, retry_backoff_max=4, retry_jitter=True, max_retries=100,
)
def expand_role_broadcast(broadcast_id):
    """Expand a RoleBroadcast into MessageLog rows, batch after batch, and
    publish each batch after it commits. Safe to run twice: the record's row
    lock and cursor make the second a no-op."""
    from notifications import role_broadcasts

    return {"users": role_broadcasts.expand(broadcast_id)}


@shared_task(name="workers.relay_role_broadcasts")
def relay_role_broadcasts():
    """Publish again the expansion of broadcasts whose task was lost or whose worker died."""
    from notifications import role_broadcasts

    return role_broadcasts.relay()
