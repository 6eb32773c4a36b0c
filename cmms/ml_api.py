"""POST /api/ml/predictions/: how ML pipelines outside Django report scores.

``Authorization: Bearer <token>`` (an MLClient, managed in admin). The body is
one prediction object or a list of them::

    {"asset": "CAM-001", "failure_mode": "Sobrecalentamiento de motor",
     "probability": 0.87, "risk_level": "HIGH", "time_to_failure_hours": 36,
     "model_version": "engine-v3", "external_id": "run-42/CAM-001", "details": {...}}

A batch is all or nothing: every item is validated first, and all are recorded
in one transaction. Errors answer 400 with messages per field (per item index
for a batch); a missing or wrong token answers 401. See docs/ml-integration.md.
"""

import json
import logging

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import ml_auth
from .models import Asset, RiskLevel
from .predictions import lock_asset, record_prediction

logger = logging.getLogger(__name__)
MAX_TIME_TO_FAILURE_HOURS = 24 * 365 * 10
# Deeper JSON than this is refused before anything looks at it (Python's
# parser and serializer recurse: ~1000 levels raise RecursionError).
MAX_DEPTH = 32


def text_problem(value):
    """Why a string cannot be stored (PostgreSQL refuses NUL; a lone surrogate
    is not UTF-8), or None."""
    if "\x00" in value:
        return _("Contains a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _("Contains a character that is not valid Unicode (a lone surrogate).")
    return None


def storage_errors(value, depth=0):
    """The first reason ``value`` (parsed JSON) cannot be stored, or None: any
    string or key with NUL or a lone surrogate, nesting deeper than MAX_DEPTH.
    Iterative in spirit: the depth bound keeps the recursion short."""
    if depth > MAX_DEPTH:
        return _("Nested deeper than %(n)d levels.") % {"n": MAX_DEPTH}
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) or storage_errors(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = storage_errors(item, depth + 1)
            if problem:
                return problem
    return None


class PredictionForm(forms.Form):
    asset = forms.CharField(max_length=32)
    failure_mode = forms.CharField(max_length=100)
    probability = forms.FloatField(min_value=0.0, max_value=1.0)
    risk_level = forms.CharField(max_length=10)
    time_to_failure_hours = forms.FloatField(required=False, min_value=0.0, max_value=MAX_TIME_TO_FAILURE_HOURS)
    model_version = forms.CharField(required=False, max_length=50)
    external_id = forms.CharField(required=False, max_length=100)
    details = forms.JSONField(required=False)

    def clean_risk_level(self):
        value = self.cleaned_data["risk_level"].strip().upper()
        if value not in RiskLevel.values:
            raise ValidationError(_("One of: %(choices)s.") % {"choices": ", ".join(RiskLevel.values)})
        return value

    def clean_details(self):
        value = self.cleaned_data.get("details")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError(_("An object."))
        return value


def validate_item(item, assets):
    """(cleaned data, None) or (None, {field: [messages]})."""
    if not isinstance(item, dict):
        return None, {"__all__": [_("Each prediction must be a JSON object.")]}
    unstorable = {}
    for field, value in item.items():
        problem = storage_errors(field) or storage_errors(value, 1)
        if problem:
            unstorable[field if not text_problem(field) else "__all__"] = [problem]
    if unstorable:
        return None, unstorable
    unknown = sorted(set(item) - set(PredictionForm.base_fields))
    # JSON numbers arrive as numbers; a form field expects text or numbers,
    # but must not silently accept true/false as 1/0.
    data = {k: v for k, v in item.items() if k in PredictionForm.base_fields}
    form = PredictionForm(data)
    errors = {}
    if not form.is_valid():
        errors = {field: [str(m) for m in msgs] for field, msgs in form.errors.items()}
    for field in ("probability", "time_to_failure_hours"):
        if isinstance(item.get(field), bool):
            errors[field] = [_("Enter a number.")]
    for field in unknown:
        errors[field] = [_("Unknown field.")]
    code = form.cleaned_data.get("asset") if hasattr(form, "cleaned_data") else None
    if code and code not in assets:
        errors["asset"] = [_("Unknown asset %(code)r.") % {"code": code}]
    if errors:
        return None, errors
    return form.cleaned_data, None


def _error(status, message, **extra):
    return JsonResponse({"error": message, **extra}, status=status, json_dumps_params={"ensure_ascii": False})


@csrf_exempt
@require_POST
def predictions(request):
    client = ml_auth.authenticate(request.headers.get("Authorization"))
    if client is None:
        response = _error(401, _("A valid ML client token is required (Authorization: Bearer <token>)."))
        response["WWW-Authenticate"] = 'Bearer realm="ml"'
        return response
    if request.content_type != "application/json":
        return _error(415, _("Send JSON (Content-Type: application/json)."))
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, _("The body is not valid JSON."))
    except RecursionError:
        return _error(400, _("The JSON is nested too deeply."))
    batch = isinstance(payload, list)
    items = payload if batch else [payload]
    if not items:
        return _error(400, _("The list is empty."))
    if len(items) > settings.CMMS["ML_API_MAX_BATCH"]:
        return _error(400, _("At most %(n)d predictions per request.") % {"n": settings.CMMS["ML_API_MAX_BATCH"]})

    codes = {i["asset"] for i in items if isinstance(i, dict) and isinstance(i.get("asset"), str)
             and not text_problem(i["asset"])}
    assets = set(Asset.objects.filter(code__in=codes, is_active=True).values_list("code", flat=True))
    cleaned, errors = [], {}
    for index, item in enumerate(items):
        data, item_errors = validate_item(item, assets)
        if item_errors:
            errors[str(index)] = item_errors
        cleaned.append(data)
    if errors:
        return _error(400, _("Invalid prediction."), errors=errors if batch else errors["0"])

    try:
        recorded = _record_all(cleaned, client)
    except ValidationError as exc:  # only a race (an asset deleted meanwhile) gets here
        return _error(400, _("Invalid prediction."), errors=exc.message_dict)
    except IntegrityError:
        # Two requests of this client with the same external_id at the same
        # moment (for different assets, which do not share a lock): the other
        # one won; a retry of this one answers duplicate: true.
        message = _("Another request with this external_id is being recorded; retry to get its result.")
        return _error(400, _("Invalid prediction."), errors={"external_id": [message]})
    results = [_result(p) for p in recorded]
    body = {"count": len(results), "results": results} if batch else results[0]
    return JsonResponse(body, safe=False, json_dumps_params={"ensure_ascii": False})


def _record_all(cleaned, client):
    with transaction.atomic():
        # Lock every asset of the batch in one order, so that two batches
        # touching the same assets cannot deadlock.
        for code in sorted({d["asset"] for d in cleaned}):
            lock_asset(code)
        return [
            record_prediction(
                asset=d["asset"],
                failure_mode=d["failure_mode"],
                probability=d["probability"],
                risk_level=d["risk_level"],
                time_to_failure_hours=d["time_to_failure_hours"],
                model_version=d["model_version"],
                external_id=d["external_id"] or None,
                details=d["details"],
                ml_client=client,
            )
            for d in cleaned
        ]


def _result(prediction):
    order = prediction.work_order
    return {
        "prediction_id": prediction.pk,
        "asset": prediction.asset.code,
        "risk_level": prediction.risk_level,
        "action": prediction.action,
        "alerted": prediction.alerted,
        "duplicate": getattr(prediction, "duplicate", False),
        "work_order": {"id": order.pk, "number": order.number, "status": order.status} if order else None,
    }
