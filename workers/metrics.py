"""Cluster-wide event counters for /metrics, kept in Redis (the rate
limiter's): every worker process on every machine increments the same key,
so the scrape reads totals. Best effort: a Redis error never fails a send."""

import logging

from . import ratelimit

logger = logging.getLogger(__name__)
PREFIX = "cmms:metrics"


def incr(name, channel, amount=1):
    try:
        ratelimit.client().hincrby(f"{PREFIX}:{name}", str(channel), amount)
    except Exception as exc:  # noqa: BLE001 - metrics must never break delivery
        logger.debug("metrics: could not count %s (%s)", name, exc)


def read(name):
    try:
        raw = ratelimit.client().hgetall(f"{PREFIX}:{name}")
    except Exception:  # noqa: BLE001 - an unreadable counter is left out of the scrape
        return {}
    return {k.decode(): int(v) for k, v in raw.items()}
