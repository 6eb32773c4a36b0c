"""The inbox pages (/inbox/): the list, marking read, and the small JSON
answer an open page uses to fetch what it has not shown."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from . import inbox, message_types
from .models import InAppNotification


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def _filters(request):
    message_type = request.GET.get("type", "") or request.POST.get("type", "")
    if message_type not in message_types.all_types():
        message_type = ""
    unread = (request.GET.get("unread") or request.POST.get("unread")) == "1"
    return message_type, unread


@login_required
@require_GET
def inbox_page(request):
    message_type, unread = _filters(request)
    paginator = Paginator(inbox.for_user(request.user, message_type, unread), settings.INBOX["PAGE_SIZE"])
    page = paginator.get_page(request.GET.get("page"))
    last_id = InAppNotification.objects.filter(user=request.user).aggregate(last=Max("pk"))["last"] or 0
    types = sorted(((key, t.label or key, t.emoji) for key, t in message_types.all_types().items()),
                   key=lambda item: str(item[1]))
    return render(request, "notifications/inbox/page.html", {
        "page": page,
        "types": types,
        "selected_type": message_type,
        "unread_only": unread,
        "last_id": last_id,
        # New notifications are inserted live only where they would appear on refresh.
        "live": page.number == 1,
    })


@login_required
@require_POST
def mark_read(request, pk):
    note = get_object_or_404(InAppNotification, pk=pk, user=request.user)
    ids = inbox.mark_read(request.user, InAppNotification.objects.filter(pk=note.pk))
    return _answer(request, ids)


@login_required
@require_POST
def mark_all_read(request):
    message_type, _unread = _filters(request)
    ids = inbox.mark_read(request.user, inbox.for_user(request.user, message_type))
    return _answer(request, ids, all_=True)


def _answer(request, ids, all_=False):
    if _wants_json(request):
        return JsonResponse({"ids": ids[:500], "all": all_ and len(ids) > 500, "unread": inbox.unread_count(request.user)})
    # Back to the page the form was on (its filters and page), when it is ours.
    target = request.POST.get("next") or request.headers.get("Referer", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        target = "inbox"
    return redirect(target)


@require_GET
def since(request):
    """``?after=<id>``: the user's notifications newer than the last one the
    page shows, oldest first, each rendered as the page renders it."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "login required"}, status=401)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        return JsonResponse({"error": "after must be a notification id (an integer)"}, status=400)
    notes = inbox.since(request.user, after)
    items = [
        {"id": note.pk, "message_type": note.message_type, "read": note.read_at is not None,
         "html": render_to_string("notifications/inbox/item.html", {"note": note}, request=request)}
        for note in notes
    ]
    return JsonResponse({"items": items, "more": len(notes) >= settings.INBOX["SINCE_LIMIT"],
                         "unread": inbox.unread_count(request.user)})
