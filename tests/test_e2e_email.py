"""E-mail on real parts: a Celery worker process delivers through the local
SMTP capture server (aiosmtpd); SMTP answers become MessageLog outcomes."""

import io

import pytest
from pypdf import PdfReader

from cmms.predictions import record_prediction
from notifications.models import MessageLog, UserChannelPreference
from tests.conftest import wait_for_status
from tests.support.broadcasts import wait_expanded
from tests.support.cmms import make_asset, make_operator
from tests.support.processes import wait_for

NAME = "Camión <A&B>_01"


def with_email(user, address):
    UserChannelPreference.objects.create(user=user, channel_type="EMAIL", channel_user_id=address)
    return user


def predict(asset):
    return record_prediction(asset=asset, failure_mode="Fuga hidráulica", probability=0.87, risk_level="CRITICAL",
                             time_to_failure_hours=12, model_version="engine-v3")


def email_logs():
    return MessageLog.objects.filter(channel_type="EMAIL").order_by("pk")


def wait_until_sent(logs, statuses=("SENT",), timeout=30):
    """wait_for_status, and on a timeout the rows' state in the error."""
    ids = [log.pk for log in logs]
    try:
        wait_for_status(ids, statuses=statuses, timeout=timeout)
    except TimeoutError as exc:
        rows = list(MessageLog.objects.filter(pk__in=ids).values_list("recipient", "status", "attempts", "last_error"))
        raise AssertionError(f"{exc}: {rows}") from None


def wait_for_error(log, text, timeout=20):
    def seen():
        log.refresh_from_db()
        return log.status == "RETRYING" and text in log.last_error

    wait_for(seen, timeout=timeout, interval=0.1, message=f"RETRYING with {text!r}")
    return log


@pytest.mark.e2e
def test_a_prediction_reaches_the_engineer_by_email_with_both_parts_and_the_order_as_pdf(e2e, smtp):
    engineer = with_email(make_operator(first_name="Jorge", last_name="Pérez"), "Jorge.Perez@Faena.CL")
    order = predict(make_asset(code="CAM-AB01", name=NAME)).work_order

    [log] = email_logs()
    wait_until_sent([log])
    log.refresh_from_db()
    [mail] = smtp.messages(to="Jorge.Perez@faena.cl")
    assert log.recipient == "Jorge.Perez@faena.cl" and log.provider_message_id == dict(mail["headers"])["Message-ID"]
    assert mail["subject"] == f"⚠️ Riesgo CRÍTICO de falla: {NAME}"
    assert f"Orden de trabajo {order.number} · {NAME} (CAM-AB01)" in mail["text"]
    assert "Camión &lt;A&amp;B&gt;_01" in mail["html"] and order.admin_url() in mail["html"]
    [pdf] = mail["attachments"]
    assert (pdf["filename"], pdf["content_type"]) == (f"{order.number}.pdf", "application/pdf")
    page_text = PdfReader(io.BytesIO(pdf["content"])).pages[0].extract_text()
    assert order.number in page_text and "Fuga hidráulica" in page_text and "87 %" in page_text
    assert engineer.get_full_name() in page_text


@pytest.mark.e2e
def test_a_451_is_retried_and_then_delivered_once(e2e, smtp):
    with_email(make_operator(), "ana@faena.cl")
    smtp.reject_next(1, 451, "4.7.1 Greylisted, try again later", stage="RCPT")
    predict(make_asset())

    [log] = email_logs()
    wait_until_sent([log], timeout=40)
    log.refresh_from_db()
    # Two attempts; the server saw the 451; a SENT row keeps no stale error.
    assert (log.attempts, log.last_error) == (2, "")
    assert len(smtp.messages(to="ana@faena.cl")) == 1 and smtp.stats()["refused"] == {"451": 1}


@pytest.mark.e2e
def test_a_550_fails_that_address_once_and_marks_it_while_the_other_recipients_get_theirs(e2e, smtp):
    from notifications.message_router import MessageRouter

    smtp.reject("nadie@faena.cl", 550, "5.1.1 <nadie@faena.cl>: Recipient address rejected: User unknown")
    gone = with_email(make_operator(username="gone"), "nadie@faena.cl")
    with_email(make_operator(username="ok1"), "ana@faena.cl")
    with_email(make_operator(username="ok2"), "luis@faena.cl")
    MessageRouter().broadcast_to_role("OPERATOR", "Corte de energía", "Planta Sur sin energía de 14:00 a 15:00.")
    wait_expanded()

    logs = list(email_logs())
    wait_until_sent(logs, statuses=("SENT", "FAILED"))
    outcome = {log.recipient: (log.status, log.attempts) for log in email_logs()}
    assert outcome == {"nadie@faena.cl": ("FAILED", 1), "ana@faena.cl": ("SENT", 1), "luis@faena.cl": ("SENT", 1)}
    failed = email_logs().get(recipient="nadie@faena.cl")
    assert "550 5.1.1 <nadie@faena.cl>: Recipient address rejected: User unknown (RCPT)" in failed.last_error
    pref = UserChannelPreference.objects.get(user=gone, channel_type="EMAIL")
    assert not pref.is_reachable and "User unknown" in pref.unreachable_reason
    assert {m["rcpt_tos"][0] for m in smtp.messages()} == {"ana@faena.cl", "luis@faena.cl"}


@pytest.mark.e2e
def test_connection_refused_is_retried_until_the_server_is_back(e2e, smtp):
    with_email(make_operator(), "ana@faena.cl")
    with smtp.down():
        predict(make_asset())
        log = wait_for_error(email_logs().get(), "connection refused")
    wait_until_sent([log], timeout=40)
    assert len(smtp.messages(to="ana@faena.cl")) == 1


@pytest.mark.e2e
def test_a_server_that_never_answers_costs_one_timeout_and_is_retried(e2e, smtp):
    with_email(make_operator(), "ana@faena.cl")
    with smtp.unresponsive():
        predict(make_asset())
        # The session's worker runs with EMAIL_TIMEOUT=2.
        log = wait_for_error(email_logs().get(), "did not answer within 2 s")
    wait_until_sent([log], timeout=40)
    assert len(smtp.messages(to="ana@faena.cl")) == 1
