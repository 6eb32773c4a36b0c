"""With -P threads, acks wait for the consumer's event loop: the worker keeps
a short repeating timer so the loop runs them promptly (celery/celery#6941)."""

from types import SimpleNamespace

from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.thread import TaskPool as ThreadPool

from workers.ack_wakeup import AckWakeup, wake_event_loop_for_thread_acks


class RecordingTimer:
    def __init__(self):
        self.repeating = []

    def call_repeatedly(self, secs, fun, *args, **kwargs):
        self.repeating.append(secs)


def consumer(pool_cls, hub=True):
    pool = pool_cls.__new__(pool_cls)  # its type is all the handler looks at
    return SimpleNamespace(pool=pool, hub=object() if hub else None, timer=RecordingTimer())


def test_a_threads_worker_wakes_its_event_loop_every_few_milliseconds():
    c = consumer(ThreadPool)
    wake_event_loop_for_thread_acks(sender=c)
    (interval,) = c.timer.repeating
    assert 0 < interval <= 0.05


def test_prefork_and_loopless_workers_are_left_alone():
    for c in (consumer(PreforkPool), consumer(ThreadPool, hub=False)):
        wake_event_loop_for_thread_acks(sender=c)
        assert c.timer.repeating == []


def test_the_wakeup_is_armed_again_each_time_the_consumer_restarts_its_event_loop():
    """A lost broker connection clears the consumer's timer (Consumer.on_close);
    the bootstep runs on every start of the event loop, the first and each
    after a reconnect."""
    from celery_app import app

    assert AckWakeup in app.steps["consumer"]
    c = consumer(ThreadPool)
    step = AckWakeup.__new__(AckWakeup)
    step.register_with_event_loop(c, c.hub)
    c.timer.repeating.clear()  # what the consumer does when the connection is lost
    step.register_with_event_loop(c, c.hub)
    assert len(c.timer.repeating) == 1
