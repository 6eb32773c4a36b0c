"""System checks for delivery settings that only fail under faults."""

from django.conf import settings
from django.core.checks import Warning, register

from notifications.channels.telegram import CONNECT_TIMEOUT_S


@register("delivery")
def lease_outlasts_an_attempt(app_configs=None, **kwargs):
    """A claim (SENDING) is a lease: if an attempt can outlast it, the relay
    hands a live worker's message to another worker and it is sent twice."""
    longest_sleep = max(
        (scope["max_sleep_s"] for limits in settings.RATE_LIMITS.values() for scope in limits.values() if scope),
        default=0.0,
    )
    attempt = longest_sleep * 2 + CONNECT_TIMEOUT_S + settings.TELEGRAM_TIMEOUT_S
    lease = settings.DELIVERY["LEASE_S"]
    if lease <= attempt:
        return [
            Warning(
                f"DELIVERY_LEASE_S ({lease:g} s) is not longer than one attempt can take "
                f"(rate-limit sleeps {longest_sleep * 2:g} s + connect {CONNECT_TIMEOUT_S:g} s + "
                f"TELEGRAM_TIMEOUT_S {settings.TELEGRAM_TIMEOUT_S:g} s = {attempt:g} s).",
                hint="Raise DELIVERY_LEASE_S, or a live worker's message may be reclaimed and sent twice.",
                id="workers.W001",
            )
        ]
    return []
