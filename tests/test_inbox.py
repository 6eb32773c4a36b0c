"""The in-app inbox: delivery as a push through the channel layer (a real,
private Redis), the /inbox/ pages and what reading does to MessageLog."""

import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import inbox
from notifications.message_router import MessageRouter
from notifications.models import InAppNotification, MessageLog
from tests.factories import make_user
from tests.support.processes import free_port
from workers import delivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def redis_layer(url):
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": [{"address": url, "socket_connect_timeout": 0.3}], "prefix": "test"}}}


@pytest.fixture
def listening(settings, redis_server):
    """The channel layer on the private Redis, and a function that joins a
    user's group and returns what a page of theirs would receive."""
    settings.CHANNEL_LAYERS = redis_layer(redis_server.url)

    def join(user):
        layer = get_channel_layer()
        name = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(inbox.group_for(user.pk), name)

        async def receive():
            import asyncio

            return await asyncio.wait_for(layer.receive(name), 5)

        return lambda: async_to_sync(receive)()

    return join


def notify(user, title="Orden asignada", **kw):
    return MessageRouter().send_to_user(user, title, "Cambio de filtro del Camión 7", message_type="work_order_assigned",
                                        **kw).message_ids["IN_APP"]


def make_notes(user, n, **fields):
    now = timezone.now()
    InAppNotification.objects.bulk_create(
        [InAppNotification(user=user, message_type=fields.get("message_type", "announcement"), title=f"Aviso {i}",
                           body="Texto", created_at=now - timedelta(seconds=n - i)) for i in range(n)],
        batch_size=2000)


# -- delivery ---------------------------------------------------------------------
def test_delivery_pushes_to_the_users_group_and_records_sent(listening):
    user = make_user(in_app=True)
    receive = listening(user)
    message_id = notify(user)
    assert delivery.deliver(message_id) == "sent"
    event = receive()
    assert (event["type"], event["message_id"]) == ("inbox.new", message_id)
    assert MessageLog.objects.get(pk=message_id).status == "SENT"


def test_a_push_the_channel_layer_does_not_take_is_retried_and_the_entry_stays_readable(settings, listening,
                                                                                      redis_server):
    user = make_user(in_app=True)
    settings.CHANNEL_LAYERS = redis_layer(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    message_id = notify(user)
    assert delivery.deliver(message_id) == "retrying"
    log = MessageLog.objects.get(pk=message_id)
    assert log.status == "RETRYING" and "In-app push not sent" in log.last_error
    client = Client()
    client.force_login(user)
    assert "Orden asignada" in client.get("/inbox/").content.decode()  # the row is the truth

    settings.CHANNEL_LAYERS = redis_layer(redis_server.url)  # the channel layer is back
    receive = listening(user)
    MessageLog.objects.filter(pk=message_id).update(next_attempt_at=timezone.now())
    assert delivery.deliver(message_id) == "sent"
    assert receive()["message_id"] == message_id


def test_a_notification_read_before_its_push_is_not_pushed(listening):
    user = make_user(in_app=True)
    message_id = notify(user)
    inbox.mark_read(user, InAppNotification.objects.filter(message_log_id=message_id))
    assert delivery.deliver(message_id) == "not-claimed"
    assert MessageLog.objects.get(pk=message_id).status == "READ"


# -- the pages ----------------------------------------------------------------------
@pytest.fixture
def user():
    return make_user(in_app=True, username="ana")


@pytest.fixture
def browser_client(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf(client):
    client.get("/inbox/")
    return client.cookies["csrftoken"].value


def test_the_inbox_lists_newest_first_with_emoji_priority_age_and_work_order_link(browser_client, user):
    first = notify(user, "Primera")
    InAppNotification.objects.filter(message_log_id=first).update(created_at=timezone.now() - timedelta(minutes=3))
    notify(user, "Segunda", priority="critical", related_object_type="work_order", related_object_id="7",
           link="http://127.0.0.1:8000/admin/cmms/workorder/7/change/")
    html = browser_client.get("/inbox/").content.decode()
    assert html.index("Segunda") < html.index("Primera")
    assert "📋" in html and "Crítica" in html and "hace 3 minutos" in html and ">ahora<" in html
    assert 'href="http://127.0.0.1:8000/admin/cmms/workorder/7/change/">Abrir la orden de trabajo' in html
    assert html.count('class="note priority-') == 2 and html.count(" unread\"") == 2
    assert re.search(r'data-unread-count>2<', html)


def test_the_inbox_is_in_english_when_asked(browser_client, user):
    notify(user, "Primera")
    html = browser_client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Mark as read" in html and "Marcar como leída" not in html


def test_the_inbox_needs_a_login(client):
    response = client.get("/inbox/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    login_page = client.get(response["Location"]).content.decode()
    assert "Iniciar sesión" in login_page and "Contraseña" in login_page


def test_reading_one_sets_read_at_and_moves_its_message_to_read(browser_client, user):
    message_id = notify(user)
    note = InAppNotification.objects.get(message_log_id=message_id)
    response = browser_client.post(f"/inbox/{note.pk}/read/", {"csrfmiddlewaretoken": csrf(browser_client)},
                                   HTTP_ACCEPT="application/json")
    assert response.json() == {"ids": [note.pk], "all": False, "unread": 0}
    note.refresh_from_db()
    log = MessageLog.objects.get(pk=message_id)
    assert note.read_at is not None and log.status == "READ" and log.read_at == note.read_at


def test_reading_never_moves_a_message_backwards(browser_client, user):
    message_id = notify(user)
    MessageLog.objects.filter(pk=message_id).update(status="FAILED")
    note = InAppNotification.objects.get(message_log_id=message_id)
    browser_client.post(f"/inbox/{note.pk}/read/", {"csrfmiddlewaretoken": csrf(browser_client)})
    assert MessageLog.objects.get(pk=message_id).status == "FAILED"


def test_marking_read_without_the_csrf_token_is_refused(browser_client, user):
    note = InAppNotification.objects.get(message_log_id=notify(user))
    assert browser_client.post(f"/inbox/{note.pk}/read/").status_code == 403
    assert browser_client.post("/inbox/read-all/").status_code == 403
    note.refresh_from_db()
    assert note.read_at is None


def test_another_users_notification_cannot_be_read_or_marked(browser_client):
    other = make_user(in_app=True)
    note = InAppNotification.objects.get(message_log_id=notify(other, "Secreto de otro"))
    token = csrf(browser_client)
    assert browser_client.post(f"/inbox/{note.pk}/read/", {"csrfmiddlewaretoken": token}).status_code == 404
    assert "Secreto de otro" not in browser_client.get("/inbox/").content.decode()
    assert browser_client.get(f"/inbox/api/since/?after={note.pk - 1}").json()["items"] == []
    note.refresh_from_db()
    assert note.read_at is None


def test_mark_all_read_marks_only_the_users_own_and_the_chosen_type(browser_client, user):
    other = make_user(in_app=True)
    notify(other)
    notify(user)
    MessageRouter().send_to_user(user, "Aviso", "Corte de agua", message_type="announcement")
    response = browser_client.post("/inbox/read-all/", {"csrfmiddlewaretoken": csrf(browser_client),
                                                        "type": "work_order_assigned"})
    assert response.status_code == 302
    assert list(InAppNotification.objects.filter(user=user, read_at__isnull=True).values_list("message_type", flat=True)) \
        == ["announcement"]
    assert InAppNotification.objects.get(user=other).read_at is None
    browser_client.post("/inbox/read-all/", {"csrfmiddlewaretoken": csrf(browser_client)})
    assert inbox.unread_count(user) == 0
    assert set(MessageLog.objects.filter(user=user).values_list("status", flat=True)) == {"READ"}


def test_filters_by_type_and_unread(browser_client, user):
    notify(user, "Orden uno")
    MessageRouter().send_to_user(user, "Aviso general", "Corte de agua", message_type="announcement")
    inbox.mark_read(user, InAppNotification.objects.filter(title="Orden uno"))
    by_type = browser_client.get("/inbox/?type=announcement").content.decode()
    assert "Aviso general" in by_type and "Orden uno" not in by_type
    unread = browser_client.get("/inbox/?unread=1").content.decode()
    assert "Aviso general" in unread and "Orden uno" not in unread


def test_since_returns_what_the_page_has_not_shown_oldest_first(browser_client, user):
    first = InAppNotification.objects.get(message_log_id=notify(user, "Uno"))
    notify(user, "Dos")
    notify(user, "Tres")
    data = browser_client.get(f"/inbox/api/since/?after={first.pk}").json()
    assert [item["html"].count(title) for item, title in zip(data["items"], ("Dos", "Tres"), strict=True)] == [1, 1]
    assert data["unread"] == 3 and data["more"] is False
    assert browser_client.get("/inbox/api/since/?after=x").status_code == 400
    assert Client().get("/inbox/api/since/?after=0").status_code == 401


def test_ten_thousand_notifications_page_with_a_constant_number_of_queries_off_the_index(browser_client, user):
    make_notes(user, 25)
    with CaptureQueriesContext(connection) as few:
        assert browser_client.get("/inbox/?page=1").status_code == 200
    make_notes(user, 10_000)
    with CaptureQueriesContext(connection) as many:
        html = browser_client.get("/inbox/?page=200").content.decode()
    assert "Página 200 de 401" in html
    assert len(many) == len(few)
    page_query = next(q["sql"] for q in many if "LIMIT" in q["sql"] and "notifications_inappnotification" in q["sql"])
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {page_query}")
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "inapp_user_newest" in plan and "TEMP B-TREE" not in plan  # no sort of the 10,000 rows


def test_marking_read_without_javascript_goes_back_to_the_same_filtered_page(browser_client, user):
    note = InAppNotification.objects.get(message_log_id=notify(user))
    response = browser_client.post(f"/inbox/{note.pk}/read/", {"csrfmiddlewaretoken": csrf(browser_client)},
                                   HTTP_REFERER="http://testserver/inbox/?type=work_order_assigned&page=1")
    assert response["Location"] == "http://testserver/inbox/?type=work_order_assigned&page=1"
    response = browser_client.post(f"/inbox/{note.pk}/read/", {"csrfmiddlewaretoken": csrf(browser_client)},
                                   HTTP_REFERER="https://evil.example/phish")
    assert response["Location"] == "/inbox/"


def test_a_link_that_is_not_a_web_address_is_not_made_clickable(browser_client, user):
    notify(user, "Con enlace raro", link="javascript:alert(1)")
    html = browser_client.get("/inbox/").content.decode()
    assert "Con enlace raro" in html and "javascript:alert" not in html


def test_a_prediction_filed_for_a_user_without_an_in_app_preference_is_pushed_too(listening,
                                                                                  django_capture_on_commit_callbacks):
    from cmms.predictions import record_prediction
    from tests.support.cmms import make_asset, make_operator

    operator = make_operator(telegram=100001, in_app=False)
    receive = listening(operator)
    with django_capture_on_commit_callbacks(execute=True):
        record_prediction(asset=make_asset(), failure_mode="Falla de frenos", probability=0.9, risk_level="HIGH")
    assert InAppNotification.objects.get(user=operator).message_log_id is None  # filed directly, no delivery task
    assert receive()["type"] == "inbox.new"


def test_a_login_without_next_lands_operators_in_their_inbox_and_supervisors_on_the_dashboard():
    for role, landing in (("OPERATOR", "/inbox/"), ("SUPERVISOR", "/dashboard/")):
        person = make_user(role=role, in_app=True)
        person.set_password("clave-segura-123")
        person.save()
        client = Client()
        response = client.post("/accounts/login/", {"username": person.username, "password": "clave-segura-123"},
                               follow=True)
        assert response.redirect_chain[-1][0] == landing and response.status_code == 200


def test_any_page_can_include_the_unread_badge(user):
    notify(user)
    supervisor = make_user(role="SUPERVISOR", in_app=True)
    notify(supervisor)
    client = Client()
    client.force_login(supervisor)
    html = client.get("/dashboard/").content.decode()
    assert re.search(r"data-unread-count>1<", html) and "notifications/inbox.js" in html
