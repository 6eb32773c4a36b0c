"""Delivery against a strict provider: the real Telegram channel over HTTP to
the sandbox, the real limiter on the private Redis, delivery run in this
process (the fault suite runs the same with worker processes)."""

import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from notifications.channels import ChannelError, OutgoingMessage
from notifications.channels.telegram import TelegramChannel, render
from notifications.models import MessageLog
from tests.conftest import SANDBOX_TOKEN
from tests.factories import make_user
from workers import delivery

pytestmark = pytest.mark.django_db

LONG_BODY = "\n\n".join(f"Paso {i}: " + ("revisar el rodamiento y el sello " * 40) for i in range(1, 16))


@pytest.fixture
def strict(sandbox, limiter, monkeypatch, settings):
    """No broker: a retry the delivery would schedule is recorded instead."""
    scheduled = []
    monkeypatch.setattr(delivery, "schedule_retry", lambda log, delay: scheduled.append((log.pk, delay)))
    settings.DELIVERY = {**settings.DELIVERY, "WORKER_HEARTBEAT_TTL_S": 0}
    sandbox.scheduled = scheduled
    return sandbox


def queued(chat="4242", body="Hola", title="Aviso", **fields):
    user = make_user(telegram=chat)
    now = timezone.now()
    return MessageLog.objects.create(
        user=user, channel_type="TELEGRAM", recipient=chat, message_type="announcement", title=title, body=body,
        next_attempt_at=now, published_at=now, **fields,
    )


def deliver_until_settled(log, tries=20):
    """Run delivery as the broker would: again each time the row comes due."""
    for _ in range(tries):
        outcome = delivery.deliver(log.pk)
        log.refresh_from_db()
        if log.status in ("SENT", "FAILED"):
            return log
        assert outcome == "deferred", (outcome, log.last_error)
        time.sleep(max(0.0, (log.next_attempt_at - timezone.now()).total_seconds()))
    raise AssertionError(f"not settled after {tries} runs: {log.status} {log.last_error}")


def test_a_long_message_is_paced_within_the_chat_limit_and_each_chunk_arrives_once(strict):
    log = queued(body=LONG_BODY)
    chunks = render(OutgoingMessage(title="Aviso", body=LONG_BODY, emoji="📢", link_label="x"))
    assert len(chunks) >= 4  # long enough to meet the chat's limit part way

    log = deliver_until_settled(log)

    received = [m["text"] for m in strict.messages() if m["chat_id"] == 4242]
    assert len(received) == len(chunks) and len(set(received)) == len(chunks)  # each chunk exactly once
    assert received[0].startswith("📢 Aviso") and "Paso 15" in received[-1]  # in order
    assert strict.stats()["rate_limited"] == 0  # paced, never bounced by the chat's limit
    assert (log.status, log.attempts, log.chunks_sent, log.last_error) == ("SENT", 1, len(chunks), "")
    assert len(log.provider_message_id.split(",")) == len(chunks)


def test_a_retry_resumes_after_the_chunks_an_earlier_attempt_delivered(strict):
    log = queued(body=LONG_BODY)
    chunks = render(OutgoingMessage(title="Aviso", body=LONG_BODY, emoji="📢"))
    # An earlier attempt delivered two chunks, then failed.
    MessageLog.objects.filter(pk=log.pk).update(status="RETRYING", attempts=1, chunks_sent=2,
                                                provider_message_id="901,902")
    log = deliver_until_settled(log)
    received = [m["text"] for m in strict.messages()]
    assert len(received) == len(chunks) - 2 and received[0] == chunks[2].replace("<b>", "").replace("</b>", "")
    assert log.status == "SENT" and log.provider_message_id.startswith("901,902,")


@pytest.mark.parametrize("absurd", [315360000, 1e12])
def test_an_absurd_retry_after_is_capped_and_the_operator_is_told(strict, limiter, absurd, settings):
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "RETRY_AFTER_SCOPE": "account"}  # the default
    strict.configure(force_429={"scope": "bot", "retry_after": 30, "answer_retry_after": absurd})
    log = queued()
    assert delivery.deliver(log.pk) == "deferred"
    log.refresh_from_db()
    cap = settings.DELIVERY["RETRY_AFTER_MAX_S"]
    assert (log.status, log.attempts) == ("QUEUED", 0)  # throttling costs no attempt
    assert log.next_attempt_at <= timezone.now() + timedelta(seconds=cap + 5)
    assert "absurdo" in log.last_error and "DELIVERY_RETRY_AFTER_MAX_S" in log.last_error
    assert f"{absurd:.0f} s" in log.last_error
    client = redis.Redis.from_url(settings.RATE_LIMIT["REDIS_URL"])
    ttls = [client.pttl(k) for k in client.scan_iter(f"{limiter.KEY_PREFIX}:*:blocked")]
    assert ttls and max(ttls) <= (cap + 1) * 1000  # no block key that outlives the cap

    # A message to another chat, stuck behind the bot-wide block, says why it waits.
    other = queued(chat="4343")
    assert delivery.deliver(other.pk) == "deferred"
    other.refresh_from_db()
    assert "account" in other.last_error


def test_a_sent_row_keeps_no_error_from_an_earlier_attempt(strict):
    log = queued(status="RETRYING", attempts=1, last_error="Telegram: HTTP 502 del servidor")
    assert delivery.deliver(log.pk) == "sent"
    log.refresh_from_db()
    assert (log.status, log.last_error) == ("SENT", "")


def test_giving_up_is_reported_in_one_language(strict, settings):
    settings.DELIVERY = {**settings.DELIVERY, "MAX_ATTEMPTS": 1}
    strict.configure(fail_rate=1.0)
    log = queued()
    assert delivery.deliver(log.pk) == "failed"
    log.refresh_from_db()
    assert log.last_error == "Se abandonó tras 1 intentos. Último error: Telegram: HTTP 502 del servidor"


def test_a_dripping_answer_is_cut_at_the_total_deadline(strict):
    # One byte every 0.3 s: each read is well within the 1 s read timeout, and
    # the whole answer (~300 bytes) would take a minute and a half.
    strict.configure(answer_drip_s=0.3)
    channel = TelegramChannel(SANDBOX_TOKEN, strict.url, timeout=1.0, total_timeout=2.0)
    with pytest.raises(ChannelError) as info:
        channel.send("4242", OutgoingMessage(title="Aviso", body="Hola"))
    assert info.value.maybe_delivered and "2 s" in str(info.value)
    assert len(strict.messages()) == 1  # it was delivered: the row will say possible duplicate


@pytest.mark.parametrize("body", ["<html><body>Welcome to the hotel wifi</body></html>",
                                  {"ok": True, "result": None}, {"ok": True, "result": {"chat": {}}}])
def test_a_garbage_200_answer_may_have_been_delivered(body):
    import json

    import requests

    response = requests.Response()
    response.status_code = 200
    response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    channel = TelegramChannel("424242:unit-test-token-abcdef", "http://127.0.0.1:9")
    with pytest.raises(ChannelError) as info:
        channel._message_id(channel._result(response))
    assert info.value.maybe_delivered and not info.value.permanent


def test_a_garbage_200_answer_ends_flagged_possible_duplicate(strict, monkeypatch):
    monkeypatch.setattr(TelegramChannel, "call", lambda self, method, **params: None)  # {"ok": true, "result": null}
    log = queued()
    assert delivery.deliver(log.pk) == "retrying"
    log.refresh_from_db()
    assert log.possible_duplicate and "id de mensaje" in log.last_error


def test_a_claim_whose_answer_was_lost_is_taken_back_by_the_same_process_not_left_for_the_lease(monkeypatch):
    """The claim's UPDATE committed, the database went away before the answer:
    the retried task finds the row SENDING under this process and sends it."""
    from notifications.models import MessageLog
    from tests.factories import make_user
    from workers import delivery, liveness

    log = MessageLog.objects.create(user=make_user(), channel_type="TELEGRAM", recipient="42",
                                    message_type="announcement", body="x", status="SENDING", attempts=1,
                                    claimed_by=liveness.worker_id())
    sent = []
    monkeypatch.setattr(delivery, "send", lambda log, address, outgoing, ahead=None: sent.append(log.pk) or "77")
    assert delivery.deliver(log.pk) == "sent"
    assert sent == [log.pk]
    log.refresh_from_db()
    assert (log.status, log.attempts) == ("SENT", 1)


def test_a_row_another_process_holds_or_one_in_flight_here_is_not_taken(monkeypatch):
    from notifications.models import MessageLog
    from tests.factories import make_user
    from workers import delivery

    other = MessageLog.objects.create(user=make_user(), channel_type="TELEGRAM", recipient="42",
                                      message_type="announcement", body="x", status="SENDING", claimed_by="host:1")
    monkeypatch.setattr(delivery, "send", lambda *a: pytest.fail("sent a row it does not hold"))
    assert delivery.deliver(other.pk) == "not-claimed"
    delivery._in_flight.add(other.pk)
    try:
        assert delivery.deliver(other.pk) == "not-claimed"
    finally:
        delivery._in_flight.discard(other.pk)
