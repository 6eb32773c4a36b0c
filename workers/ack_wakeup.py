"""Prompt acknowledgements with ``-P threads``.

A pool thread that finishes a task hands its ack to the consumer's event loop
(``hub.call_soon``), which runs it only when the loop next wakes up. With
``acks_late`` and a full prefetch window nothing else wakes it: no new message
can arrive until an ack frees a slot, so the loop sleeps until Redis' BRPOP
times out (about a second) and the worker runs its tasks in bursts, one
window every second or two (celery/celery#6941). A short repeating timer
bounds that wait; each tick is an empty pass of the loop.

The timer is armed each time the consumer starts its event loop, not once:
after a lost broker connection the consumer clears its timer
(``Consumer.on_close``), and without it a worker that reconnected to
RabbitMQ ran at a tenth of its pace.
"""

from celery import bootsteps

WAKEUP_INTERVAL_S = 0.01


def _noop():
    pass


class AckWakeup(bootsteps.StartStopStep):
    """Consumer bootstep (celery_app.py adds it): arms the timer on every
    (re)start of the event loop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def register_with_event_loop(self, c, hub):
        wake_event_loop_for_thread_acks(sender=c)


def wake_event_loop_for_thread_acks(sender=None, **kwargs):
    consumer = sender
    pool = getattr(consumer, "pool", None)
    if getattr(consumer, "hub", None) is None or type(pool).__module__ != "celery.concurrency.thread":
        return  # prefork acks from the main process; gevent/eventlet use synloop
    consumer.timer.call_repeatedly(WAKEUP_INTERVAL_S, _noop)
