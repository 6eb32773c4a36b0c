"""With -P threads, acks wait for the consumer's event loop: the worker keeps
a short repeating timer so the loop runs them promptly (celery/celery#6941)."""

from types import SimpleNamespace

from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.thread import TaskPool as ThreadPool

from workers.ack_wakeup import wake_event_loop_for_thread_acks


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
