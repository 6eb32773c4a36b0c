"""POST /telegram/webhook/: Telegram's webhook, verified, recorded, answered.

Telegram echoes the ``secret_token`` given to setWebhook in the
``X-Telegram-Bot-Api-Secret-Token`` header (the body is not signed). A request
without the matching header is refused with 403 before its body is read, and
so is every request while TELEGRAM_WEBHOOK_SECRET is empty. A verified update
is recorded (deduplicated by update_id: Telegram retries a delivery that got
no 2xx) and processed by a worker; the view answers 200 at once.
"""

import hmac
import json
import logging

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .telegram_updates import BadUpdate, record_update

logger = logging.getLogger(__name__)
SECRET_HEADER = "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"


def secret_matches(given):
    expected = settings.TELEGRAM_WEBHOOK_SECRET
    if not expected:
        logger.warning("Telegram webhook called but TELEGRAM_WEBHOOK_SECRET is not set: refusing it.")
        return False
    return hmac.compare_digest(str(given or "").encode(), expected.encode())


@csrf_exempt
@require_POST
def telegram_webhook(request):
    if not secret_matches(request.META.get(SECRET_HEADER)):
        return HttpResponseForbidden("forbidden", content_type="text/plain")
    try:
        update = json.loads(request.body)
        _event, _created = record_update(update)
    except (ValueError, BadUpdate) as exc:
        # A 4xx is not retried usefully; say what was wrong and keep nothing.
        return JsonResponse({"ok": False, "error": f"not a Telegram update: {exc}"[:200]}, status=400)
    return HttpResponse(status=200)
