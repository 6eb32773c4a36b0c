"""Inbound events are recorded once per provider id and processed by the
handler registered for their provider, with a clear record of the outcome."""

import pytest

from notifications import inbound
from notifications.models import InboundEvent
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(inbound, "publish_event", lambda pk, countdown=None: sent.append((pk, countdown)) or True)
    return sent


@pytest.fixture
def handlers(monkeypatch):
    monkeypatch.setattr(inbound, "_handlers", {})
    return inbound._handlers


def test_a_repeated_provider_id_is_recorded_once_and_published_once(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first, created = inbound.record("TELEGRAM", 1001, {"update_id": 1001}, kind="message", sender="42")
        again, created_again = inbound.record("TELEGRAM", 1001, {"update_id": 1001}, kind="message", sender="42")
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert InboundEvent.objects.count() == 1
    assert published == [(first.pk, None)]


def test_the_same_id_from_two_providers_is_two_events(published):
    inbound.record("TELEGRAM", "7", {})
    inbound.record("SMS", "7", {})
    assert InboundEvent.objects.count() == 2


def test_processing_runs_the_providers_handler_once_and_records_its_outcome(handlers, published):
    calls = []
    inbound.register_handler("TELEGRAM", lambda event: calls.append(event.pk) or "Orden OT-00042 aceptada")
    event, _ = inbound.record("TELEGRAM", 5, {"x": 1})
    assert inbound.process(event.pk) == ("PROCESSED", None)
    assert inbound.process(event.pk) == ("not-claimed", None)  # a duplicate task
    event.refresh_from_db()
    assert calls == [event.pk]
    assert (event.status, event.outcome, event.attempts) == ("PROCESSED", "Orden OT-00042 aceptada", 1)


def test_an_event_without_handler_is_ignored_with_the_reason(handlers, published):
    event, _ = inbound.record("WHATSAPP", "wamid.1", {})
    assert inbound.process(event.pk)[0] == "IGNORED"
    event.refresh_from_db()
    assert "No handler" in event.outcome


def test_a_failing_handler_is_retried_with_backoff_then_failed_with_the_error(handlers, published):
    def boom(event):
        raise RuntimeError("database said no")

    inbound.register_handler("TELEGRAM", boom)
    event, _ = inbound.record("TELEGRAM", 9, {})
    outcomes = [inbound.process(event.pk) for _ in range(inbound.MAX_ATTEMPTS)]
    assert [status for status, _ in outcomes[:-1]] == ["RECEIVED"] * (inbound.MAX_ATTEMPTS - 1)
    assert all(retry_in > 0 for _, retry_in in outcomes[:-1])
    assert outcomes[-1] == ("FAILED", None)
    event.refresh_from_db()
    assert event.error == "RuntimeError: database said no"


def test_retry_later_counts_no_attempt(handlers, published):
    def not_yet(event):
        raise inbound.RetryLater("receipt before the send was recorded")

    inbound.register_handler("SMS", not_yet)
    event, _ = inbound.record("SMS", "SM1:delivered", {})
    status, retry_in = inbound.process(event.pk)
    event.refresh_from_db()
    assert (status, event.attempts) == ("RECEIVED", 0)
    assert retry_in >= 1


@pytest.mark.e2e
def test_a_real_worker_processes_a_recorded_event_from_the_inbound_queue(e2e):
    from notifications.models import InboundStatus

    # No handler is registered for WHATSAPP in the worker yet: the event must
    # still be consumed from the inbound queue and closed with the reason.
    event, _ = inbound.record("WHATSAPP", "wamid.e2e", {"entry": []}, kind="status")

    def closed():
        event.refresh_from_db()
        return event.status in (InboundStatus.IGNORED, InboundStatus.PROCESSED)

    wait_for(closed, timeout=20, interval=0.1, message="the worker to process the inbound event")
