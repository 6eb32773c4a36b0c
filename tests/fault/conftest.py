"""Fixtures for the fault suite: a private Redis and workers per test, with
short timings so that leases expire and the relay runs within seconds."""

from contextlib import ExitStack

import pytest
from django.contrib.auth import get_user_model

from notifications.models import ChannelType, UserChannelPreference

from .stack import private_stack

# Short timings for the worker subprocesses (production defaults in cmms/settings.py).
FAULT_ENV = {
    "DELIVERY_LEASE_S": 8,  # > one attempt: limiter sleeps (2 x 1 s) + connect (3 s) + TELEGRAM_TIMEOUT_S
    "RATE_LIMIT_TELEGRAM_ACCOUNT_MAX_SLEEP_S": 1,
    "DELIVERY_RELAY_UNPUBLISHED_AFTER_S": 1,
    "DELIVERY_RELAY_REPUBLISH_AFTER_S": 5,
    "DELIVERY_BACKOFF_BASE_S": 0.2,
    "DELIVERY_BACKOFF_MAX_S": 2,
    "DELIVERY_MAX_ATTEMPTS": 10,
    "TELEGRAM_TIMEOUT_S": 2,
    # Telegram's 30/s would make each scenario take minutes; the pace is proven
    # in tests/test_ratelimit_e2e.py. The sandbox enforces the same 100/s.
    "RATE_LIMIT_TELEGRAM_ACCOUNT": "100/s",
}
SANDBOX_CONFIG = {"latency_ms": 100, "bot_rate": 100, "bot_burst": 10}


@pytest.fixture
def make_stack(redis_server, sandbox):
    """``make_stack(persistent=False, **env)``: a private Redis and a Stack to
    start workers on; everything is killed at the end of the test."""
    sandbox.configure(**SANDBOX_CONFIG)
    with ExitStack() as stacks:

        def make(persistent=False, **env):
            return stacks.enter_context(
                private_stack(redis_server, sandbox, persistent=persistent, **{**FAULT_ENV, **env})
            )

        yield make


def operators(n, first_chat=10_000):
    """``n`` operators with a Telegram chat each (chat ids first_chat...)."""
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"op{first_chat + i}", role="OPERATOR") for i in range(n)], batch_size=500
    )
    UserChannelPreference.objects.bulk_create(
        [
            UserChannelPreference(user=u, channel_type=ChannelType.TELEGRAM, channel_user_id=str(first_chat + i))
            for i, u in enumerate(users)
        ],
        batch_size=500,
    )
    return users
