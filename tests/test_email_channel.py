"""The e-mail adapter against the real local SMTP server (aiosmtpd): what a
reader gets, and what each SMTP answer means for delivery."""

import io
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from pypdf import PdfReader

from cmms import email_url, work_order_pdf
from notifications.channels import Attachment, ChannelError, ConfigurationError, OutgoingMessage, registry
from notifications.channels.email import EmailChannel, normalize_email, prepare
from sandbox.smtp import SmtpSandbox

NAME = "Camión <A&B>_01"


def notice(**fields):
    fields.setdefault("title", f"Riesgo CRÍTICO de falla: {NAME}")
    fields.setdefault("body", f"Orden de trabajo OT-00042 · {NAME} (CAM-AB01)\nModo de falla: Fuga hidráulica")
    fields.setdefault("emoji", "⚠️")
    fields.setdefault("priority", "critical")
    fields.setdefault("link", "http://127.0.0.1:8000/admin/cmms/workorder/42/change/?a=1&b=2")
    fields.setdefault("link_label", "Abrir en el CMMS")
    fields.setdefault("context", {"message_type": "prediction_high_risk"})
    return OutgoingMessage(**fields)


def channel_for(server, **kwargs):
    return EmailChannel(server.host, server.port, **kwargs)


def header(message, name):
    return dict(message["headers"]).get(name)


# -- configuration --------------------------------------------------------------
def test_email_url_schemes_choose_plain_starttls_or_implicit_tls():
    assert email_url.parse("smtp://127.0.0.1:1025") | {} == {
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": 1025, "EMAIL_HOST_USER": "", "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": False, "EMAIL_USE_SSL": False}
    tls = email_url.parse("smtp+tls://ops%40cmms.cl:p%3Ass@mail.example.com:587?timeout=5")
    assert (tls["EMAIL_HOST_USER"], tls["EMAIL_HOST_PASSWORD"], tls["EMAIL_USE_TLS"]) == ("ops@cmms.cl", "p:ss", True)
    assert tls["EMAIL_TIMEOUT"] == 5.0
    ssl = email_url.parse("smtps://u:p@mail.example.com")
    assert (ssl["EMAIL_PORT"], ssl["EMAIL_USE_SSL"], ssl["EMAIL_USE_TLS"]) == (465, True, False)


def test_a_bad_email_url_names_the_problem_without_the_password():
    with pytest.raises(ValueError, match="unknown scheme 'imap'") as info:
        email_url.parse("imap://user:hunter2secret@host")
    assert "hunter2secret" not in str(info.value)


def test_addresses_are_validated_and_their_domain_lower_cased():
    assert normalize_email("  Ana.Rojas@Mina-Norte.CL ") == "Ana.Rojas@mina-norte.cl"
    assert registry.normalize_address("EMAIL", "jorge@faena.cl") == "jorge@faena.cl"
    for bad in ("", "ana", "ana@", "ana rojas@x.cl", "a@b@c.cl"):
        with pytest.raises(registry.InvalidAddress, match="no es válida"):
            normalize_email(bad)


# -- what the reader gets -----------------------------------------------------------
def test_a_notice_has_a_subject_a_text_and_an_html_part_and_automatic_headers(smtp):
    message_id = channel_for(smtp).send("ana@faena.cl", notice())
    [mail] = smtp.messages(to="ana@faena.cl")
    assert mail["subject"] == f"⚠️ Riesgo CRÍTICO de falla: {NAME}"
    assert header(mail, "Message-ID") == message_id
    assert header(mail, "Date") and header(mail, "Auto-Submitted") == "auto-generated"
    assert "List-Unsubscribe" not in dict(mail["headers"])  # an urgent alert cannot be turned off
    # Text part: as typed. HTML part: escaped once, no markup injected by the asset's name.
    assert f"Orden de trabajo OT-00042 · {NAME} (CAM-AB01)" in mail["text"]
    assert "Prioridad: Crítica" in mail["text"]
    assert "Camión &lt;A&amp;B&gt;_01" in mail["html"] and NAME not in mail["html"]
    assert 'href="http://127.0.0.1:8000/admin/cmms/workorder/42/change/?a=1&amp;b=2"' in mail["html"]
    assert ">Abrir en el CMMS</a>" in mail["html"] and "Predicción de falla" in mail["html"]


def test_attachments_arrive_as_files_with_their_name(smtp):
    pdf = Attachment("OT-00042.pdf", b"%PDF-1.4 test", "application/pdf")
    channel_for(smtp).send("ana@faena.cl", notice(attachments=[pdf]))
    [mail] = smtp.messages()
    assert [(a["filename"], a["content_type"], a["content"]) for a in mail["attachments"]] == [
        ("OT-00042.pdf", "application/pdf", b"%PDF-1.4 test")]
    assert "OT-00042.pdf" in mail["text"] and "OT-00042.pdf" in mail["html"]


def test_a_long_spanish_subject_is_folded_into_short_encoded_words_and_reads_back_whole(smtp):
    import re

    title = f"Orden de trabajo vencida que necesita atención: OT-00042 del {NAME} en la faena Norte, ñandú"
    channel_for(smtp).send("ana@faena.cl", notice(title=title, emoji="⏰"))
    [mail] = smtp.messages()
    assert mail["subject"] == f"⏰ {title}"
    head = mail["raw"].split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(len(word) <= 75 for word in re.findall(r"=\?utf-8\?[qb]\?[^?]*\?=", head))
    assert all(len(line) <= 998 for line in mail["raw"].split(b"\r\n"))


def test_a_newline_in_a_title_cannot_inject_a_header(smtp):
    channel_for(smtp).send("ana@faena.cl", notice(title="Hola\r\nBcc: intruso@x.cl"))
    [mail] = smtp.messages()
    assert mail["rcpt_tos"] == ["ana@faena.cl"] and "Bcc" not in dict(mail["headers"])


# -- SMTP answers -----------------------------------------------------------------------
def test_550_user_unknown_marks_the_address_unreachable(smtp):
    smtp.reject("nadie@faena.cl", 550, "5.1.1 <nadie@faena.cl>: User unknown")
    with pytest.raises(ChannelError) as info:
        channel_for(smtp).send("nadie@faena.cl", notice())
    assert info.value.unreachable and info.value.permanent
    assert str(info.value) == "SMTP 550 5.1.1 <nadie@faena.cl>: User unknown (RCPT)"


def test_451_is_temporary_and_the_same_connection_sends_the_next_message(smtp):
    channel = channel_for(smtp)
    smtp.reject_next(1, 451, "4.3.0 Try again later", stage="DATA")
    with pytest.raises(ChannelError) as info:
        channel.send("ana@faena.cl", notice())
    assert not info.value.permanent and info.value.code == 451
    channel.send("ana@faena.cl", notice())
    channel.send("jorge@faena.cl", notice())
    assert len(smtp.messages()) == 2 and smtp.stats()["ehlo"] == 1


def test_relaying_denied_is_our_configuration_not_the_address():
    server = SmtpSandbox(page_port=None, relay_domains=["faena.cl"])
    with server, pytest.raises(ConfigurationError) as info:
        channel_for(server).send("ana@otra.cl", notice())
    assert not info.value.unreachable and info.value.kind == "relay"


def test_5xx_on_data_fails_at_once_with_the_server_text(smtp):
    smtp.reject_next(1, 554, "5.6.1 Message content rejected", stage="DATA")
    with pytest.raises(ChannelError) as info:
        channel_for(smtp).send("ana@faena.cl", notice())
    assert info.value.permanent and not info.value.unreachable
    assert "554 5.6.1 Message content rejected" in str(info.value)


def test_a_connection_the_server_closed_is_reopened_for_the_next_message(smtp):
    channel = channel_for(smtp)
    channel.send("ana@faena.cl", notice())
    with smtp.down():  # the server goes away: its connections are closed
        pass
    channel.send("ana@faena.cl", notice())
    assert len(smtp.messages()) == 2 and smtp.stats()["ehlo"] == 2


def test_connection_refused_is_temporary(smtp):
    with smtp.down(), pytest.raises(ChannelError) as info:
        channel_for(smtp).send("ana@faena.cl", notice())
    assert not info.value.permanent and info.value.kind == "refused"
    assert f"connection refused by 127.0.0.1:{smtp.port}" in str(info.value)


def test_a_server_that_never_answers_is_bounded_by_the_timeout(smtp):
    with smtp.unresponsive(), pytest.raises(ChannelError) as info:
        channel_for(smtp, timeout=0.5).send("ana@faena.cl", notice())
    assert not info.value.permanent and info.value.kind == "timeout"
    assert "did not answer within 0.5 s" in str(info.value)


def test_a_refused_login_is_configuration_and_never_shows_the_password():
    with SmtpSandbox(page_port=None, auth={"cmms": "right-password"}) as server:
        with pytest.raises(ConfigurationError) as info:
            channel_for(server, username="cmms", password="wrong-password-1").send("ana@faena.cl", notice())
        assert info.value.kind == "auth" and "535" in str(info.value)
        assert "wrong-password-1" not in str(info.value) and "wrong-password-1" not in repr(
            channel_for(server, username="cmms", password="wrong-password-1"))
        channel_for(server, username="cmms", password="right-password").send("ana@faena.cl", notice())
        assert len(server.messages()) == 1


def test_starttls_or_implicit_tls_against_a_plain_server_is_a_tls_mismatch(smtp):
    for flags in ({"use_tls": True}, {"use_ssl": True}):
        with pytest.raises(ConfigurationError) as info:
            channel_for(smtp, **flags).send("ana@faena.cl", notice())
        assert info.value.kind == "tls", flags


def test_the_capture_server_refuses_mail_without_a_message_id(smtp):
    import smtplib

    raw = b"From: a@x.cl\r\nDate: Tue, 1 Dec 2026 10:00:00 -0300\r\n\r\nhola\r\n"
    client = smtplib.SMTP(smtp.host, smtp.port, timeout=5)
    with client, pytest.raises(smtplib.SMTPDataError, match="Message-ID"):
        client.sendmail("a@x.cl", ["b@x.cl"], raw)
    assert smtp.messages() == []


# -- prepare (worker side): unsubscribe link and the work order PDF ---------------------------
def fake_log(**fields):
    fields.setdefault("pk", 7)
    fields.setdefault("user_id", 3)
    fields.setdefault("priority", "normal")
    fields.setdefault("related_object_type", "")
    fields.setdefault("related_object_id", "")
    fields.setdefault("created_at", timezone.now())
    return SimpleNamespace(**fields)


def test_bulk_reminders_carry_one_click_list_unsubscribe_and_assignments_do_not(smtp):
    reminder = prepare(fake_log(message_type="maintenance_reminder"), notice(priority="normal", context={}))
    assignment = prepare(fake_log(message_type="work_order_assigned", priority="high"), notice(context={}))
    assert "/notifications/email/unsubscribe/" in reminder.context["unsubscribe_url"]
    assert "unsubscribe_url" not in assignment.context
    channel_for(smtp).send("ana@faena.cl", reminder)
    [mail] = smtp.messages()
    assert header(mail, "List-Unsubscribe") == f"<{reminder.context['unsubscribe_url']}>"
    assert header(mail, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert header(mail, "Message-ID") == reminder.context["message_id"]  # the same on every retry


@pytest.mark.django_db
def test_the_work_order_pdf_is_one_page_with_the_order_prediction_and_signatures():
    from cmms.predictions import record_prediction
    from tests.support.cmms import make_asset, make_operator

    make_operator(first_name="Ana", last_name="Rojas")
    asset = make_asset(code="CAM-AB01", name=NAME)
    order = record_prediction(asset=asset, failure_mode="Fuga hidráulica", probability=0.91, risk_level="CRITICAL",
                              time_to_failure_hours=12, model_version="v3").work_order
    document = work_order_pdf.attachment(order.pk)
    assert (document.filename, document.mimetype) == (f"{order.number}.pdf", "application/pdf")
    reader = PdfReader(io.BytesIO(document.content))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for expected in (f"Orden de trabajo {order.number}", NAME, "Mina Norte", "Fuga hidráulica", "91 %",
                     "Ana Rojas", "Crítica", "firma", order.admin_url()):
        assert expected in text, expected
    assert work_order_pdf.attachment(order.pk + 999) is None


@pytest.mark.django_db
def test_the_pdf_qr_code_scans_to_the_order_in_the_cmms():
    import pypdfium2
    import zxingcpp

    from tests.support.cmms import make_work_order

    order = make_work_order(description="Revisar fugas en el circuito hidráulico.")
    document = pypdfium2.PdfDocument(work_order_pdf.attachment(order.pk).content)
    try:
        image = document[0].render(scale=2).to_pil()
    finally:
        document.close()
    assert [code.text for code in zxingcpp.read_barcodes(image)] == [order.admin_url()]


# -- test_email ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_test_email_sends_at_once_and_records_it(smtp):
    out = io.StringIO()
    call_command("test_email", "--to", "Ana@Faena.CL", stdout=out)
    [mail] = smtp.messages(to="Ana@faena.cl")
    assert "Enviado a Ana@faena.cl" in out.getvalue() and mail["subject"].endswith("Correo de prueba del CMMS")


@pytest.mark.django_db
def test_test_email_explains_a_refused_connection_in_spanish(smtp):
    with smtp.down(), pytest.raises(CommandError) as info:
        call_command("test_email", "--to", "ana@faena.cl")
    assert "Conexión rechazada" in str(info.value)


@pytest.mark.django_db
def test_test_email_explains_authentication_tls_and_relay_failures(settings):
    from workers import channels

    with SmtpSandbox(page_port=None, auth={"cmms": "right-password"}, relay_domains=["faena.cl"]) as server:
        settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
        cases = [
            ({"EMAIL_HOST_USER": "cmms", "EMAIL_HOST_PASSWORD": "wrong-password-2"}, "ana@faena.cl",
             "Autenticación fallida"),
            ({"EMAIL_HOST_USER": "cmms", "EMAIL_HOST_PASSWORD": "right-password", "EMAIL_USE_TLS": True},
             "ana@faena.cl", "TLS no coincide"),
            ({"EMAIL_HOST_USER": "cmms", "EMAIL_HOST_PASSWORD": "right-password"}, "ana@otra.cl",
             "Reenvío denegado"),
        ]
        for overrides, to, expected in cases:
            settings.EMAIL_USE_TLS = False
            for name, value in overrides.items():
                setattr(settings, name, value)
            channels.reset()
            with pytest.raises(CommandError) as info:
                call_command("test_email", "--to", to)
            assert expected in str(info.value) and "wrong-password-2" not in str(info.value), overrides
    channels.reset()


# -- the unsubscribe page (RFC 8058) ------------------------------------------------------------
@pytest.fixture
def subscriber(db):
    from notifications.models import UserChannelPreference
    from tests.factories import make_user

    user = make_user()
    return UserChannelPreference.objects.create(user=user, channel_type="EMAIL", channel_user_id="ana@faena.cl")


def unsubscribe_path(pref, category="reminders"):
    from notifications.channels.email import unsubscribe_url

    return unsubscribe_url(pref.user_id, category).split("8000", 1)[-1]


def test_the_unsubscribe_link_asks_first_and_a_get_changes_nothing(client, subscriber):
    response = client.get(unsubscribe_path(subscriber))
    assert response.status_code == 200
    assert "¿Dejar de recibir recordatorios de mantenimiento por correo?" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.notify_reminders


def test_one_click_post_turns_that_category_off_for_email_only(client, subscriber):
    from notifications.models import UserChannelPreference

    telegram = UserChannelPreference.objects.create(user=subscriber.user, channel_type="TELEGRAM", channel_user_id="1")
    response = client.post(unsubscribe_path(subscriber), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and response.content.decode() == "Suscripción cancelada."
    subscriber.refresh_from_db()
    telegram.refresh_from_db()
    assert (subscriber.notify_reminders, subscriber.notify_alerts, telegram.notify_reminders) == (False, True, True)


def test_the_confirm_button_turns_the_category_off_and_says_so(client, subscriber):
    response = client.post(unsubscribe_path(subscriber, "alerts"))
    assert "Listo: ya no recibirá alertas y anuncios por correo." in response.content.decode()
    subscriber.refresh_from_db()
    assert not subscriber.notify_alerts and subscriber.notify_reminders


def test_a_tampered_unsubscribe_token_is_refused_and_changes_nothing(client, subscriber):
    path = unsubscribe_path(subscriber)
    tampered = path.replace("/unsubscribe/", "/unsubscribe/x")
    response = client.post(tampered, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400 and "no es válido" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.notify_reminders


def test_email_is_paced_per_smtp_account_by_the_shared_limiter_and_its_key_carries_no_password(limiter, settings):
    from workers import channels

    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "cmms", "secret-password-3"
    channels.reset()
    account = channels.account_id("EMAIL")
    [pace, recipient] = limiter.scopes_for("EMAIL", "ana@faena.cl", account)
    assert (pace.name, pace.interval_s, pace.burst) == ("account", 1 / 20, 20)  # RATE_LIMIT_EMAIL_ACCOUNT=20/s
    assert recipient.name == "recipient" and recipient.interval_s == 0  # no per-mailbox pace
    import re

    assert re.fullmatch(r"cmms:rl:EMAIL:[0-9a-f]{16}", pace.key)  # a hash of the login and server, never the password
    assert limiter.acquire("EMAIL", "ana@faena.cl", account) == 0
    channels.reset()
