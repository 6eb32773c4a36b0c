"""A plain `celery -A celery_app worker`, the command the Celery docs and our
users type first, runs the pool delivery needs (threads, 32), not Celery's
prefork with one process per core; flags and the environment still choose
another. Real worker processes on the private Redis; the banner Celery prints
at start is what the worker really runs."""

import re

import pytest

from tests.conftest import worker_env
from tests.support.processes import Worker

pytestmark = pytest.mark.e2e


def started_pool(redis_server, telegram_sandbox, pool=None, concurrency=None, **env):
    worker = Worker(worker_env(redis_server.url, telegram_sandbox.url, **env), pool=pool, concurrency=concurrency)
    try:
        worker.start(timeout=60)
        match = re.search(r"concurrency:\s+(\d+) \((\w+)\)", worker.log())
        assert match, worker.log()[-2000:]
        return int(match.group(1)), match.group(2)
    finally:
        worker.stop()


def test_a_worker_started_without_flags_runs_32_threads(redis_server, telegram_sandbox):
    assert started_pool(redis_server, telegram_sandbox) == (32, "thread")


def test_flags_and_the_environment_still_choose_the_pool(redis_server, telegram_sandbox):
    assert started_pool(redis_server, telegram_sandbox, pool="solo", concurrency=1) == (1, "solo")
    assert started_pool(redis_server, telegram_sandbox, CELERY_WORKER_POOL="prefork",
                        CELERY_WORKER_CONCURRENCY="2") == (2, "prefork")
