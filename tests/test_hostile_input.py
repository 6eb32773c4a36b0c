"""Hostile input to the two ways in: MessageRouter (Python producers) and the
ML API (HTTP). Each call ends in success or the typed error (RoutingError; a
400 with a JSON field error, or 401), never an exception from the database
or the encoder, and nothing is written on error. The same on SQLite and
PostgreSQL: PostgreSQL refuses NUL and lone surrogates that SQLite stores,
so the checks happen before the database is asked."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cmms.models import FailurePrediction, MLClient, WorkOrder
from notifications.exceptions import RoutingError
from notifications.message_router import MessageRouter
from notifications.models import MessageLog
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]
URL = "/api/ml/predictions/"
EXAMPLES = hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any text Python can hold: NUL, control characters, lone surrogates, emoji.
hostile_text = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)


def writes():
    return (MessageLog.objects.count(), FailurePrediction.objects.count(), WorkOrder.objects.count())


# -- MessageRouter ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message", "Orden\x00 asignada"),
        ("title", "OT\x00-1"),
        ("message", "texto \ud800 suelto"),
        ("title", "\udfff"),
        ("message_type", ["announcement"]),
        ("message_type", {"type": "announcement"}),
        ("priority", ["high"]),
        ("message", ["una", "lista"]),
        ("related_object_id", "7\x00"),
        ("idempotency_key", "clave\ud83d"),
        ("link", "https://cmms.example/\x00"),
        ("actions", [{"text": "Aceptar\x00", "callback_data": "wo:1:accept"}]),
        ("actions", [{"text": "Aceptar", "callback_data": "wo:\ud800"}]),
    ],
)
def test_the_router_refuses_text_no_database_stores_alike_with_a_routing_error(field, value):
    user = make_user(telegram="4242")
    call = {"title": "OT-1", "message": "Orden asignada", "message_type": "announcement", field: value}
    before = writes()
    with pytest.raises(RoutingError):
        MessageRouter().send_to_user(user, **call)
    assert writes() == before


def test_the_router_refuses_a_user_whose_row_no_longer_exists():
    user = make_user(telegram="4242")
    type(user).objects.filter(pk=user.pk).delete()
    with pytest.raises(RoutingError, match="no existe"):
        MessageRouter().send_to_user(user, "OT-1", "Orden asignada")
    assert MessageLog.objects.count() == 0


@EXAMPLES
@given(title=hostile_text | st.integers() | st.none(), message=hostile_text | st.lists(hostile_text, max_size=2),
       message_type=hostile_text | st.sampled_from(["announcement", "critical_alert"]) | st.lists(hostile_text),
       priority=st.none() | hostile_text | st.sampled_from(["low", "high"]) | st.integers())
def test_the_router_accepts_or_raises_routing_error_for_any_input(title, message, message_type, priority):
    user = make_user(telegram="4242")
    before = writes()
    try:
        result = MessageRouter().send_to_user(user, title, message, message_type=message_type, priority=priority)
    except RoutingError:
        assert writes() == before
    else:
        assert result == {"TELEGRAM": True}
        row = MessageLog.objects.get(pk=result.message_ids["TELEGRAM"])
        assert row.body == message and "\x00" not in row.body


# -- ML API ----------------------------------------------------------------------


@pytest.fixture
def token():
    client = MLClient(name="engine-model")
    token = client.set_new_token()
    client.save()
    return token


@pytest.fixture
def api(token):
    client = Client()

    def post(body, auth=f"Bearer {token}"):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return client.post(URL, data=data, content_type="application/json", HTTP_AUTHORIZATION=auth)

    return post


@pytest.fixture
def world():
    make_asset(code="CAM-001")
    return make_operator(telegram=100001)


def item(**overrides):
    return {"asset": "CAM-001", "failure_mode": "Desgaste de frenos", "probability": 0.9, "risk_level": "CRITICAL",
            **overrides}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (item(asset="CAM\x00001"), "asset"),
        (item(asset="CAM-\ud800"), "asset"),
        (item(failure_mode="Frenos\x00"), "failure_mode"),
        (item(details={"sensor": "T1\x00"}), "details"),
        (item(details={"k\x00": 1}), "details"),
        (item(details={"sensor": "\udc00"}), "details"),
        (item(external_id="run-1\x00"), "external_id"),
        (item(details={"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}), "details"),
    ],
)
def test_the_ml_api_answers_400_with_the_field_for_text_no_database_stores(api, world, body, field):
    before = writes()
    response = api(body)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert field in response.json()["errors"]
    assert writes() == before


def test_the_ml_api_answers_400_to_json_nested_past_the_parser(api, world):
    response = api("[" * 5000 + "]" * 5000)
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.parametrize("auth", ["Bearer mlk_abc\x00def.secret", "Bearer mlk_\ud800.x", "Bearer mlk_0123456789ab.se\x00"])
def test_the_ml_api_answers_401_to_a_token_no_database_can_look_up(api, world, auth):
    # Django's test client sends headers as latin-1; a surrogate is sent as its escape.
    response = api(item(), auth=auth.encode("utf-8", "backslashreplace").decode("latin-1"))
    assert response.status_code == 401 and response.json()["error"]


@EXAMPLES
@given(payload=json_values | st.lists(st.dictionaries(
    st.sampled_from(["asset", "failure_mode", "probability", "risk_level", "details", "external_id",
                     "time_to_failure_hours", "model_version"]), json_values), max_size=3))
def test_the_ml_api_answers_200_or_a_json_4xx_for_any_json(api, world, payload):
    before = writes()
    response = api(json.dumps(payload))  # any JSON text, also a bare string or number
    assert response.status_code in (200, 400)
    assert response["Content-Type"] == "application/json"
    if response.status_code == 400:
        assert writes() == before


@EXAMPLES
@given(asset=hostile_text, details=json_values, external_id=hostile_text)
def test_the_ml_api_never_fails_on_hostile_values_in_a_valid_shape(api, world, asset, details, external_id):
    before = writes()
    response = api(item(asset=asset, details={"x": details}, external_id=external_id))
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert writes() == before


# -- external_id per client ------------------------------------------------------


def test_an_external_id_used_by_another_client_does_not_swallow_a_prediction(api, world):
    other = MLClient(name="another-pipeline")
    other_token = other.set_new_token()
    other.save()
    first = api(item(risk_level="LOW", probability=0.1, external_id="run-1"), auth=f"Bearer {other_token}")
    assert first.status_code == 200 and first.json()["work_order"] is None

    response = api(item(external_id="run-1"))  # CRITICAL, same id, another client
    body = response.json()
    assert response.status_code == 200 and body["duplicate"] is False
    assert body["risk_level"] == "CRITICAL" and body["work_order"] is not None and body["alerted"]
    assert FailurePrediction.objects.count() == 2

    again = api(item(external_id="run-1")).json()  # its own retry is still a duplicate
    assert again["duplicate"] is True and again["prediction_id"] == body["prediction_id"]


def test_two_requests_racing_with_one_external_id_give_a_400_not_a_500(api, world, monkeypatch):
    # The race itself (two assets, one id, two transactions) ends in the
    # database's unique constraint; what the loser's client gets is this.
    from django.db import IntegrityError

    def lose_the_race(cleaned, client):
        raise IntegrityError("duplicate key value violates unique constraint prediction_unique_client_external_id")

    monkeypatch.setattr("cmms.ml_api._record_all", lose_the_race)
    response = api(item(external_id="run-9"))
    assert response.status_code == 400 and "external_id" in response.json()["errors"]
