"""The inbox's WebSocket against the real ASGI server (uvicorn serving
cmms.asgi, a subprocess) and the real channel layer (a private Redis), with a
real WebSocket client: who may connect, and what each connection hears."""

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.conftest import wait_for_status
from tests.factories import make_user
from tests.support.asgi import session_cookie

pytestmark = pytest.mark.e2e


def open_inbox(server, user=None, origin=None):
    headers = {"Cookie": f"sessionid={session_cookie(user)}"} if user else {}
    return connect(f"{server.ws_url}/ws/inbox/", origin=origin or server.url, additional_headers=headers,
                   open_timeout=10)


def next_event(ws, timeout=15):
    return json.loads(ws.recv(timeout=timeout))


def test_a_connection_without_a_session_is_closed_with_4401(asgi_server, transactional_db):
    with open_inbox(asgi_server) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4401


def test_a_page_from_another_origin_is_refused_even_with_a_valid_session(asgi_server, transactional_db):
    user = make_user(in_app=True)
    with pytest.raises(InvalidStatus) as refused:
        open_inbox(asgi_server, user, origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_a_connection_only_ever_hears_its_own_users_notifications(asgi_server, e2e):
    alice, bob = make_user(in_app=True), make_user(in_app=True)
    with open_inbox(asgi_server, alice) as alice_ws, open_inbox(asgi_server, bob) as bob_ws:
        for_bob = MessageRouter().send_to_user(bob, "Para Bob", "OT-1 asignada").message_ids["IN_APP"]
        assert next_event(bob_ws)["message_id"] == for_bob
        for_alice = MessageRouter().send_to_user(alice, "Para Alice", "OT-2 asignada").message_ids["IN_APP"]
        # Bob's push went out first: had Alice's connection heard it, it would come first here.
        assert next_event(alice_ws)["message_id"] == for_alice
    wait_for_status([for_bob, for_alice], statuses=("SENT",))
    assert MessageLog.objects.get(pk=for_bob).provider_message_id == f"inbox.user.{bob.pk}"


def test_every_open_tab_of_the_user_hears_the_push(asgi_server, e2e):
    user = make_user(in_app=True)
    with open_inbox(asgi_server, user) as tab1, open_inbox(asgi_server, user) as tab2:
        message_id = MessageRouter().send_to_user(user, "Alerta", "Camión 7: riesgo alto").message_ids["IN_APP"]
        assert next_event(tab1)["message_id"] == next_event(tab2)["message_id"] == message_id
