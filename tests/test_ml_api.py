"""POST /api/ml/predictions/: authenticated JSON, one prediction or a batch,
all or nothing."""

import json

import pytest
from django.test import Client

from cmms.ml_auth import authenticate
from cmms.models import FailurePrediction, MLClient, WorkOrder
from notifications.models import MessageLog
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator

pytestmark = pytest.mark.django_db
URL = "/api/ml/predictions/"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("notifications.dispatch.publish", lambda rows, **kw: len(rows))


@pytest.fixture
def token():
    client = MLClient(name="engine-model")
    token = client.set_new_token()
    client.save()
    return token


@pytest.fixture
def world():
    make_asset(code="CAM-001", name="Camión 001")
    make_asset(code="CAM-002", name="Camión 002")
    return make_operator(telegram=100001)


@pytest.fixture
def api(token):
    # enforce_csrf_checks: the endpoint must work for clients without a CSRF token.
    client = Client(enforce_csrf_checks=True)

    def post(body, auth=f"Bearer {token}", content_type="application/json"):
        headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return client.post(URL, data=data, content_type=content_type, **headers)

    return post


def item(**overrides):
    data = {"asset": "CAM-001", "failure_mode": "Desgaste de frenos", "probability": 0.8, "risk_level": "HIGH",
            "time_to_failure_hours": 36, "model_version": "brakes-v2"}
    data.update(overrides)
    return data


def test_one_prediction_is_recorded_and_answered(api, world):
    response = api(item())
    assert response.status_code == 200
    body = response.json()
    order = WorkOrder.objects.get()
    prediction = FailurePrediction.objects.get()
    assert body == {
        "prediction_id": prediction.pk, "asset": "CAM-001", "risk_level": "HIGH", "action": "CREATED",
        "alerted": True, "duplicate": False,
        "work_order": {"id": order.pk, "number": order.number, "status": "ASSIGNED"},
    }
    assert prediction.ml_client.name == "engine-model" and prediction.model_version == "brakes-v2"
    assert prediction.time_to_failure.total_seconds() == 36 * 3600
    assert MessageLog.objects.filter(channel_type="TELEGRAM", user=world).count() == 1


def test_a_batch_is_recorded_in_order(api, world):
    response = api([item(), item(asset="CAM-002", risk_level="low", probability=0.1), item(probability=0.85)])
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [r["action"] for r in body["results"]] == ["CREATED", "RECORDED", "UPDATED"]
    assert body["results"][1]["work_order"] is None
    assert FailurePrediction.objects.count() == 3 and WorkOrder.objects.count() == 1


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer nope", "Token mlk_abc.def", "Basic YWRtaW46YWRtaW4="])
def test_missing_or_malformed_tokens_answer_401(api, world, auth):
    response = api(item(), auth=auth)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert FailurePrediction.objects.count() == 0


def test_a_wrong_secret_or_an_inactive_client_answers_401(api, world, token):
    prefix = token.split(".")[0]
    assert api(item(), auth=f"Bearer {prefix}.wrong-secret").status_code == 401
    MLClient.objects.update(is_active=False)
    assert api(item()).status_code == 401
    assert FailurePrediction.objects.count() == 0


def test_only_a_hash_of_the_token_is_stored(token):
    client = MLClient.objects.get()
    assert token not in (client.token_hash, client.token_prefix) and len(client.token_hash) == 64
    assert authenticate(f"Bearer {token}") == client
    assert authenticate(f"bearer {token}") == client
    assert client.last_used_at is None and MLClient.objects.get().last_used_at is not None


def test_field_errors_answer_400_per_field(api, world):
    response = api(item(probability=1.7, risk_level="SEVERE", asset="NOPE-9", colour="red"))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"probability", "risk_level", "asset", "colour"}
    assert "NOPE-9" in errors["asset"][0]
    assert FailurePrediction.objects.count() == 0


def test_numbers_out_of_range_are_field_errors(api, world):
    response = api(item(time_to_failure_hours=1e20, probability=float("nan")))
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"time_to_failure_hours", "probability"}


def test_missing_fields_and_booleans_for_numbers_are_field_errors(api, world):
    response = api({"asset": "CAM-001", "probability": True})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"failure_mode", "probability", "risk_level"}


def test_a_batch_with_one_bad_item_writes_nothing_and_names_the_item(api, world):
    response = api([item(), item(asset="CAM-002"), item(probability=-1), "not an object"])
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"2", "3"}
    assert "probability" in errors["2"] and "__all__" in errors["3"]
    assert FailurePrediction.objects.count() == WorkOrder.objects.count() == MessageLog.objects.count() == 0


def test_an_error_while_recording_a_batch_rolls_all_of_it_back(api, world, monkeypatch):
    from cmms import ml_api

    real = ml_api.record_prediction
    calls = []

    def fail_on_second(**kwargs):
        calls.append(kwargs["asset"])
        if len(calls) == 2:
            raise RuntimeError("database hiccup")
        return real(**kwargs)

    monkeypatch.setattr(ml_api, "record_prediction", fail_on_second)
    with pytest.raises(RuntimeError):
        api([item(), item(asset="CAM-002")])
    assert FailurePrediction.objects.count() == WorkOrder.objects.count() == MessageLog.objects.count() == 0


def test_a_retried_call_with_the_same_external_id_is_not_recorded_twice(api, world):
    first = api(item(external_id="run-7/CAM-001")).json()
    again = api(item(external_id="run-7/CAM-001")).json()
    assert again["prediction_id"] == first["prediction_id"] and again["duplicate"] is True
    assert FailurePrediction.objects.count() == 1
    assert MessageLog.objects.filter(channel_type="TELEGRAM").count() == 1


@pytest.mark.parametrize("body, content_type, status", [
    ("{not json", "application/json", 400),
    ("[]", "application/json", 400),
    ("asset=CAM-001", "application/x-www-form-urlencoded", 415),
])
def test_bad_bodies_are_refused(api, world, body, content_type, status):
    assert api(body, content_type=content_type).status_code == status


def test_batches_above_the_limit_are_refused(api, world, settings):
    settings.CMMS = {**settings.CMMS, "ML_API_MAX_BATCH": 2}
    assert api([item(), item(), item()]).status_code == 400
    assert FailurePrediction.objects.count() == 0


def test_only_post_is_allowed(token):
    assert Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_creating_a_client_in_admin_shows_the_token_once(client):
    client.force_login(make_user(role="ADMIN", is_staff=True, is_superuser=True))
    response = client.post("/admin/cmms/mlclient/add/", {"name": "vibration-model", "is_active": "on"}, follow=True)
    page = response.content.decode()
    created = MLClient.objects.get(name="vibration-model")
    start = page.index("mlk_")
    token = page[start:].split()[0].split("<")[0]
    assert authenticate(f"Bearer {token}") == created
    assert "mlk_" not in client.get(f"/admin/cmms/mlclient/{created.pk}/change/").content.decode()
