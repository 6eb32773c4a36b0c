"""Inbound events: record first, process after.

Every inbound path (a webhook view, Telegram's getUpdates poller) calls
``record()``: it stores the raw event once per provider id (providers deliver
at least once) and, after commit, publishes ``workers.process_inbound_event``
to the inbound queue by name. The view answers 2xx at once; the worker calls
the handler registered for the event's provider (``register_handler``), which
does the domain work (accept a work order, apply a delivery receipt) and
returns what it did in words an operator reads.

A handler that raises is retried with backoff up to MAX_ATTEMPTS, then the
event is FAILED with the error; ``Ignore`` marks an event that needs nothing
(a receipt for a message we never sent). The relay publishes again an event
whose publish was lost or whose worker died (``due_for_retry``).
"""

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import InboundEvent, InboundStatus
from .redaction import redact

logger = logging.getLogger(__name__)
PROCESS_TASK = "workers.process_inbound_event"
MAX_ATTEMPTS = 5
LEASE_S = 60
# An event still RECEIVED this long after it arrived lost its publish.
REPUBLISH_AFTER_S = 10
# A RetryLater event (a receipt whose send is not recorded yet) gives up after this.
RETRY_LATER_MAX_S = 3600

_handlers = {}


class Ignore(Exception):
    """The event needs nothing; its message says why (shown in the admin)."""


class RetryLater(Exception):
    """Not processable yet (a receipt that came before its send was recorded):
    try again later without counting it as a failure of the handler."""


def register_handler(provider, handler):
    """``handler(event) -> str``: what was done, for the admin."""
    _handlers[provider] = handler


def record(provider, event_id, payload, kind="", sender="", publish=True):
    """Store an event once; returns ``(event, created)``. A repeat of the
    same (provider, event_id) returns the stored event and publishes nothing."""
    event_id = str(event_id)[:200]
    try:
        with transaction.atomic():
            event = InboundEvent.objects.create(
                provider=provider, event_id=event_id, kind=str(kind)[:40], sender=str(sender)[:128], payload=payload
            )
    except IntegrityError:
        return InboundEvent.objects.get(provider=provider, event_id=event_id), False
    if publish:
        transaction.on_commit(lambda: publish_event(event.pk))
    return event, True


def publish_event(event_pk, countdown=None):
    """Publish the processing task by name (notifications never imports
    workers). Bounded like every producer publish; on failure the relay
    publishes it."""
    from celery import current_app
    from django.conf import settings

    from .dispatch import run_bounded

    def _send():
        current_app.send_task(PROCESS_TASK, args=[event_pk], queue=settings.INBOUND_QUEUE_NAME, countdown=countdown)

    return run_bounded(_send, what=f"inbound event {event_pk}")


def claim(event_pk):
    now = timezone.now()
    return (
        InboundEvent.objects.filter(pk=event_pk)
        .filter(Q(status=InboundStatus.RECEIVED) | Q(status=InboundStatus.PROCESSING, lease_expires_at__lt=now))
        .update(status=InboundStatus.PROCESSING, attempts=F("attempts") + 1,
                lease_expires_at=now + timedelta(seconds=LEASE_S))
        == 1
    )


def process(event_pk):
    """Run the provider's handler once for the event; returns the new status
    (or "not-claimed" when another worker has it or it is done) and, when the
    event must be tried again, the countdown in seconds."""
    if not claim(event_pk):
        return "not-claimed", None
    event = InboundEvent.objects.get(pk=event_pk)
    handler = _handlers.get(event.provider)
    fields = {"processed_at": timezone.now(), "lease_expires_at": None}
    retry_in = None
    try:
        if handler is None:
            raise Ignore(f"No handler for {event.provider} events.")
        outcome = handler(event)
        fields.update(status=InboundStatus.PROCESSED, outcome=str(outcome or "")[:255], error="")
    except Ignore as exc:
        fields.update(status=InboundStatus.IGNORED, outcome=str(exc)[:255])
    except RetryLater as exc:
        waited = (timezone.now() - event.received_at).total_seconds()
        if waited > RETRY_LATER_MAX_S:
            fields.update(status=InboundStatus.FAILED, error=redact(str(exc))[:2000])
        else:
            # Not the handler's failure: no attempt is counted.
            retry_in = min(max(waited, 1.0), 60.0)
            fields.update(status=InboundStatus.RECEIVED, error=redact(str(exc))[:2000], attempts=F("attempts") - 1)
    except Exception as exc:
        logger.exception("Inbound event %s (%s) failed", event.pk, event.provider)
        error = f"{type(exc).__name__}: {redact(exc)}"[:2000]
        if event.attempts >= MAX_ATTEMPTS:
            fields.update(status=InboundStatus.FAILED, error=error)
        else:
            retry_in = min(2 ** event.attempts, 60)
            fields.update(status=InboundStatus.RECEIVED, error=error)
    InboundEvent.objects.filter(pk=event.pk, status=InboundStatus.PROCESSING).update(**fields)
    return fields["status"], retry_in


def due_for_retry(now=None):
    """Events whose publish was lost or whose worker died: RECEIVED a while
    ago, or PROCESSING past the lease."""
    now = now or timezone.now()
    return InboundEvent.objects.filter(
        Q(status=InboundStatus.RECEIVED, received_at__lte=now - timedelta(seconds=REPUBLISH_AFTER_S),
          processed_at__isnull=True)
        | Q(status=InboundStatus.RECEIVED, processed_at__lte=now - timedelta(seconds=60))
        | Q(status=InboundStatus.PROCESSING, lease_expires_at__lt=now)
    ).values_list("pk", flat=True)[:500]
