"""``{% load inbox %}{% inbox_badge %}``: the unread count, linked to the
inbox, kept current over the WebSocket on any page that includes it."""

from django import template
from django.db.models import Max

from notifications import inbox, message_types
from notifications.models import InAppNotification

register = template.Library()


@register.inclusion_tag("notifications/inbox/badge.html", takes_context=True)
def inbox_badge(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    last_id = context.get("last_id")
    if last_id is None:
        last_id = InAppNotification.objects.filter(user=user).aggregate(last=Max("pk"))["last"] or 0
    return {"show": True, "unread": inbox.unread_count(user), "last_id": last_id}


@register.filter
def type_emoji(message_type):
    try:
        return message_types.get(message_type).emoji
    except message_types.UnknownMessageType:
        return "🔔"


@register.filter
def web_link(url):
    """Only http(s) and site-relative links become an href (never javascript:)."""
    url = str(url or "").strip()
    return url if url.startswith(("https://", "http://", "/")) and not url.startswith("//") else ""
