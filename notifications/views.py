"""Pages a message's reader reaches without logging in."""

from django.core import signing
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import message_types
from .channels.email import UNSUBSCRIBE_SALT
from .models import ChannelType, UserChannelPreference

CATEGORY_LABELS = {
    "work_orders": gettext_lazy("work orders"),
    "predictions": gettext_lazy("failure predictions"),
    "reminders": gettext_lazy("maintenance reminders"),
    "alerts": gettext_lazy("alerts and announcements"),
}


@csrf_exempt  # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" with no session; the token is the proof
@require_http_methods(["GET", "POST"])
def email_unsubscribe(request, token):
    """GET: a page that asks to confirm (link scanners follow GETs, so a GET
    changes nothing). POST (the button, or the mail client's one-click):
    turns the category off on the user's EMAIL preference."""
    try:
        user_id, category = signing.loads(token, salt=UNSUBSCRIBE_SALT)
        flag = message_types.CATEGORY_FLAGS[category]
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return render(request, "notifications/email_unsubscribe.html", {"invalid": True}, status=400)
    context = {"category": CATEGORY_LABELS[category], "token": token}
    if request.method == "POST":
        UserChannelPreference.objects.filter(user_id=user_id, channel_type=ChannelType.EMAIL).update(**{flag: False})
        if request.POST.get("List-Unsubscribe") == "One-Click":
            return HttpResponse(_("Unsubscribed."), content_type="text/plain; charset=utf-8")
        context["done"] = True
    return render(request, "notifications/email_unsubscribe.html", context)
