"""Dead letters: a message that exhausts its retries ends FAILED with its
last error, and the admin action re-sends selected failed messages through
a guarded FAILED -> QUEUED transition, so a double click sends once."""

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.factories import make_user
from tests.fault.stack import private_stack, wait_until_done

CHANGELIST = "/admin/notifications/messagelog/"


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr("notifications.dispatch.publish", lambda rows, **kw: sent.extend(rows) or len(rows))
    return sent


def failed_row(chat="42", **fields):
    user = make_user(telegram=chat)
    return MessageLog.objects.create(
        user=user, channel_type="TELEGRAM", recipient=chat, message_type="announcement", body="Hola",
        status="FAILED", attempts=6, last_error="Se abandonó tras 6 intentos. Último error: Telegram: HTTP 502",
        failed_at=timezone.now(), **fields,
    )


def resend(client, *rows):
    return client.post(
        CHANGELIST, {"action": "resend_failed", "_selected_action": [r.pk for r in rows]}, follow=True
    )


@pytest.mark.django_db
def test_resend_queues_the_selected_failed_messages_again(admin_client, published):
    dead, other_dead = failed_row("1"), failed_row("2")
    sent = MessageLog.objects.create(
        user=make_user(telegram=3), channel_type="TELEGRAM", recipient="3", message_type="announcement", body="x",
        status="SENT",
    )
    page = resend(admin_client, dead, sent).content.decode()
    assert "1 mensaje fallido encolado de nuevo" in page or "1 failed message queued again" in page
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.failed_at, dead.published_at) == ("QUEUED", 0, None, None)
    assert MessageLog.objects.get(pk=sent.pk).status == "SENT"  # only FAILED rows move
    assert MessageLog.objects.get(pk=other_dead.pk).status == "FAILED"  # not selected
    assert published == [(dead.pk, "TELEGRAM")]


@pytest.mark.django_db
def test_a_double_click_resends_once(admin_client, published):
    dead = failed_row()
    resend(admin_client, dead)
    resend(admin_client, dead)
    assert published == [(dead.pk, "TELEGRAM")]


@pytest.mark.django_db(transaction=True)
def test_two_admins_at_once_resend_once(published):
    dead = failed_row()
    User = get_user_model()
    admins = [User.objects.create_superuser(f"admin{i}", f"a{i}@example.com", "pw-not-secret") for i in range(2)]
    start = threading.Barrier(2)

    def click(admin):
        try:
            client = Client()
            client.force_login(admin)
            start.wait(timeout=10)
            resend(client, dead)
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(a,)) for a in admins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert published == [(dead.pk, "TELEGRAM")]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_message_that_exhausts_its_retries_is_failed_and_the_admin_resends_it_once(redis_server, sandbox):
    sandbox.configure(fail_rate=1.0)  # the provider is down: every call 502
    with private_stack(redis_server, sandbox, DELIVERY_MAX_ATTEMPTS=3, DELIVERY_BACKOFF_BASE_S=0.2,
                       DELIVERY_BACKOFF_MAX_S=0.5) as stack:
        stack.worker(concurrency=4)
        user = make_user(telegram=4242)
        with transaction.atomic():
            result = MessageRouter().send_to_user(user, "OT-7", "Orden asignada", message_type="work_order_assigned")
        (pk,) = result.message_ids.values()
        wait_until_done([pk], timeout=30, statuses=("FAILED",))
        log = MessageLog.objects.get(pk=pk)
        assert log.attempts == 3 and "502" in log.last_error and log.failed_at
        assert sandbox.stats()["failures_injected"] == 3

        sandbox.configure(fail_rate=0.0)  # the provider is back
        admin = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-not-secret")
        client = Client()
        client.force_login(admin)
        resend(client, log)
        resend(client, log)  # the double click
        wait_until_done([pk], timeout=30)
        time.sleep(1)  # room for a second send, if there were one
        assert len(sandbox.messages(chat_id=4242)) == 1
        log.refresh_from_db()
        assert (log.status, log.attempts) == ("SENT", 1)
