"""``/whatsapp/webhook/``: Meta's verification handshake and signed event POSTs.

A POST is verified before it is parsed: ``X-Hub-Signature-256`` must be
``sha256=`` + HMAC-SHA256 of the raw body with WHATSAPP_APP_SECRET, compared
in constant time; anything else is 403 (also when no secret is configured:
an unverifiable webhook is refused, loudly). Each status and message is
recorded once as an InboundEvent and processed by a worker; the answer is a
200 at once, since Meta retries slow or failed deliveries.
"""

import hashlib
import hmac
import json
import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import inbound
from .redaction import register_secret
from .whatsapp import events_from_webhook

logger = logging.getLogger(__name__)


def signature_valid(raw_body, header, secret):
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


@csrf_exempt
@require_http_methods(["GET", "POST"])
def webhook(request):
    if request.method == "GET":
        return handshake(request)
    secret = settings.WHATSAPP_APP_SECRET
    register_secret(secret)
    if not secret:
        logger.error("WhatsApp webhook refused: WHATSAPP_APP_SECRET is not set, so no signature can be checked.")
        return HttpResponseForbidden("signature not verifiable")
    if not signature_valid(request.body, request.headers.get("X-Hub-Signature-256", ""), secret):
        logger.warning("WhatsApp webhook refused: bad or missing X-Hub-Signature-256.")
        return HttpResponseForbidden("bad signature")
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return HttpResponseBadRequest("not JSON")
    if not isinstance(body, dict):
        return HttpResponseBadRequest("not a webhook object")
    with transaction.atomic():
        for event_id, kind, sender, payload in events_from_webhook(body):
            inbound.record("WHATSAPP", event_id, payload, kind=kind, sender=sender)
    return HttpResponse("ok")


def handshake(request):
    """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
    expected = settings.WHATSAPP_VERIFY_TOKEN
    given = request.GET.get("hub.verify_token", "")
    if request.GET.get("hub.mode") == "subscribe" and expected and hmac.compare_digest(given, expected):
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
    return HttpResponseForbidden("verification failed")
