"""Twilio's webhooks: delivery receipts (status callbacks) and inbound SMS.

Each view checks ``X-Twilio-Signature`` against the URL as Twilio saw it
(``SITE_URL`` plus the path: behind a proxy, SITE_URL is the public
address) before it reads anything else, records the event once
(notifications.inbound) and answers at once; a worker applies it
(notifications.sms_inbound).
"""

import logging

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import inbound, twilio_signature

logger = logging.getLogger(__name__)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _auth_token():
    from .channels import sms

    return sms._token()


def _verified(request):
    """The POST parameters when the signature is right, else None."""
    token = _auth_token()
    if not token:
        logger.warning("Twilio webhook refused: TWILIO_AUTH_TOKEN is not set, so no signature can be checked.")
        return None
    params = {name: request.POST.getlist(name) for name in request.POST}
    url = settings.SITE_URL + request.get_full_path()
    if not twilio_signature.is_valid(token, url, params, request.headers.get("X-Twilio-Signature", "")):
        logger.warning("Twilio webhook refused: bad or missing X-Twilio-Signature for %s", url)
        return None
    return {name: values[-1] for name, values in params.items()}


@csrf_exempt
@require_POST
def status_callback(request):
    """MessageSid + MessageStatus (+ ErrorCode): one event per (sid, status),
    so a repeated callback is stored once and a new status is a new event."""
    params = _verified(request)
    if params is None:
        return HttpResponseForbidden("Invalid Twilio signature.")
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")
    if not sid or not status:
        return HttpResponse("MessageSid and MessageStatus are required.", status=400)
    inbound.record("SMS", f"{sid}:{status}", params, kind="status", sender=params.get("To", ""))
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def inbound_message(request):
    """An SMS someone sent to our number. The reply, if any, is sent by the
    worker as a message of its own (recorded in MessageLog), so the answer
    here is an empty TwiML document."""
    params = _verified(request)
    if params is None:
        return HttpResponseForbidden("Invalid Twilio signature.")
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        return HttpResponse("MessageSid is required.", status=400)
    inbound.record("SMS", sid, params, kind="message", sender=params.get("From", ""))
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
