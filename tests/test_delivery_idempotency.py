"""Idempotency keys: the same key twice gives one MessageLog row and one send.

The unique constraint (idempotency_key, user, channel_type) decides, not a
lookup before the insert: concurrent producers race on the insert itself.
On PostgreSQL the second insert waits for the first transaction and then
fails on the constraint; on SQLite writers are serialized (BEGIN IMMEDIATE),
so the race is real only on PostgreSQL, which is what CI runs it on.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.factories import make_user

KEY = "work-order-42-assigned"


def race(user, producers=8, hold_s=0.2):
    """``producers`` threads call the router with the same key at once, each
    in its own transaction held open a moment, so the inserts overlap."""
    start = threading.Barrier(producers)
    results, errors = [], []

    def produce():
        try:
            start.wait(timeout=10)
            with transaction.atomic():
                result = MessageRouter().send_to_user(
                    user, "OT-42", "Se te asignó la OT-42", message_type="work_order_assigned", idempotency_key=KEY
                )
                time.sleep(hold_s)
            results.append(result)
        except Exception as exc:  # noqa: BLE001 - the assertion shows it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_producers_with_one_key_write_one_row_and_publish_once(monkeypatch):
    published = []
    monkeypatch.setattr("notifications.dispatch.publish", lambda rows, **kw: published.extend(rows) or len(rows))
    user = make_user(telegram=42)
    results, errors = race(user)
    assert errors == []
    assert MessageLog.objects.filter(idempotency_key=KEY).count() == 1
    row_id = MessageLog.objects.get().pk
    assert {r.message_ids["TELEGRAM"] for r in results} == {row_id}  # every caller is told about the same row
    assert published == [(row_id, "TELEGRAM")]


@pytest.mark.django_db(transaction=True)
def test_the_key_is_per_user_and_channel():
    first, second = make_user(telegram=1), make_user(telegram=2)
    for user in (first, second, first):
        MessageRouter().send_to_user(user, "t", "m", idempotency_key=KEY)
    assert MessageLog.objects.filter(idempotency_key=KEY).count() == 2


@pytest.mark.e2e
def test_concurrent_producers_with_one_key_make_one_send(e2e):
    user = make_user(telegram=4242)
    _results, errors = race(user)
    assert errors == []
    (row,) = MessageLog.objects.filter(idempotency_key=KEY)
    from tests.conftest import wait_for_status

    wait_for_status([row.pk])
    time.sleep(1)  # room for a second send, if there were one
    assert len(e2e.messages(chat_id=4242)) == 1
