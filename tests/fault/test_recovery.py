"""Recovery with real workers: a worker killed with kill -9 (its rows are
retried within seconds, not after the lease), and a PostgreSQL outage on a
private cluster (delivery resumes within seconds of the database's return).
The same runs give `make bench` its kill9_recovery_s and db_outage_recovery_s."""

import pytest
from django.db import transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.support.broadcasts import wait_expanded
from tests.support.recovery import RelayTicker, db_outage_recovery, kill9_recovery

from .conftest import operators

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]
LEASE_S = 120  # the production lease: only the heartbeat can make recovery fast


def test_the_rows_of_a_killed_worker_are_retried_within_seconds_not_after_the_lease(make_stack, sandbox):
    stack = make_stack(DELIVERY_LEASE_S=LEASE_S)
    n, base = 400, 20_000

    def publish():
        operators(n, first_chat=base)
        with transaction.atomic():
            MessageRouter().broadcast_to_role("OPERATOR", "Parada de planta", "Parada general el sábado")
        wait_expanded()
        return list(MessageLog.objects.values_list("pk", flat=True))

    with RelayTicker(every_s=5.0):  # as beat runs the relay in production
        result = kill9_recovery(sandbox, lambda: stack.worker(concurrency=16), publish, n, base,
                                timeout=LEASE_S - 30)
    print(f"\nkill -9: {result['held']} row(s) held by the dead worker, all retried {result['recovery_s']:.1f} s "
          f"after the kill (lease {LEASE_S} s); every row settled after {result['all_settled_s']:.1f} s")
    assert result["held"] > 0 and result["sent"] == n and result["chats_received"] == n
    assert result["flagged"] == result["held"]  # each may have reached its chat: the row says so


def test_delivery_resumes_soon_after_a_postgresql_outage_and_nothing_is_lost(make_stack, sandbox):
    republish_after = 120  # production: a row whose task was lost waits this long for the relay
    # The production lease too: a worker waiting for the database to record a send keeps its claim.
    stack = make_stack(DELIVERY_RELAY_REPUBLISH_AFTER_S=republish_after, DELIVERY_LEASE_S=LEASE_S)
    env = stack.worker_env()
    sandbox.configure(latency_ms=150)
    result = db_outage_recovery(sandbox, env, n=500, outage_s=10.0, concurrency=16)
    print(f"\nPostgreSQL down {result['outage_s']:.1f} s: delivery resumed {result['resumed_s']:.1f} s after it came "
          f"back, every message received after {result['all_sent_s']:.1f} s; statuses {result['statuses']}, "
          f"{result['duplicates']} duplicate(s)")
    assert result["statuses"] == {"SENT": 500}
    # Sends in flight when the database went away were recorded once it came
    # back, not sent again; a row is flagged only for a provider timeout.
    assert result["duplicates"] <= result["flagged_possible_duplicate"] <= 2
    # Without the task's own retries, rows waited for the relay's republish.
    assert result["all_sent_s"] < republish_after / 2
