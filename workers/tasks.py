"""Celery tasks. Thin: they take ids and call workers.delivery / workers.outbox."""

from celery import shared_task

from . import delivery, outbox


@shared_task(name="workers.deliver_message", ignore_result=True, acks_late=True)
def deliver_message(message_id):
    """Deliver one MessageLog row. Safe to run twice: the claim has one winner."""
    return delivery.deliver(message_id)


@shared_task(name="workers.publish_messages", ignore_result=True, acks_late=True)
def publish_messages(messages):
    """Fan-out for large batches: publish one deliver_message per [id, channel]."""
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
