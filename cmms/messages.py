"""What users read: every maintenance message text comes from a template in
``notifications/templates/notifications/messages/<message_type>/`` (title.txt
and body.txt), with English source strings and the Spanish catalog in
``cmms/locale/es``.

Texts are rendered in ``settings.LANGUAGE_CODE`` (Spanish by default) whatever
language a request activated: the reader is the recipient, not the ML client
or the admin user who triggered the message. Bodies are plain text; each
channel escapes them for its format (Telegram HTML), so the templates turn
autoescaping off and ``Camión <A&B>_01`` reaches the user as it was typed.
"""

import re

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext, ngettext

TEMPLATE_DIR = "notifications/messages"
# Buttons carried these before offers (cmms.offers); only WhatsApp still reads
# them, from its own signed ids of messages sent before.
ACCEPT_CALLBACK = "wo:accept:{pk}"
REJECT_CALLBACK = "wo:reject:{pk}"


def render(message_type, context):
    """(title, body) for ``message_type`` in the default language."""
    with translation.override(settings.LANGUAGE_CODE):
        title = render_to_string(f"{TEMPLATE_DIR}/{message_type}/title.txt", context)
        body = render_to_string(f"{TEMPLATE_DIR}/{message_type}/body.txt", context)
    title = " ".join(title.split())
    body = "\n".join(line.rstrip() for line in body.strip().splitlines())
    return title[:255], re.sub(r"\n{3,}", "\n\n", body)


def default_language():
    """``with default_language(): _("...")`` for texts outside templates."""
    return translation.override(settings.LANGUAGE_CODE)


def in_default_language(func, *args, **kwargs):
    with default_language():
        return str(func(*args, **kwargs))


def work_order_actions(work_order, label_number=False):
    """The seed's accept/reject buttons for the order's current assignment.
    Each callback_data is the random token of a stored WorkOrderOffer (the
    order, the decision and its assignment_seq), never the order's id, so a
    press can only name an offer we made; the bot (cmms.telegram_bot) still
    checks who pressed. ``label_number`` adds the order's number to the
    labels (several orders in one message)."""
    from .offers import offer_tokens

    tokens = offer_tokens(work_order)
    suffix = f" {work_order.number}" if label_number else ""
    with translation.override(settings.LANGUAGE_CODE):
        return [
            {"text": gettext("✅ Accept") + suffix, "callback_data": tokens["accept"]},
            {"text": gettext("❌ Reject") + suffix, "callback_data": tokens["reject"]},
        ]


def label(choice_enum, value):
    """A choice's label in the default language."""
    return in_default_language(lambda: choice_enum(value).label)


def person(user):
    return (user.get_full_name() or user.username) if user else ""


def duration(delta):
    """'36 h' under two days, else whole days, in the default language."""
    if delta is None:
        return ""
    hours = max(int(delta.total_seconds() // 3600), 0)
    with translation.override(settings.LANGUAGE_CODE):
        if hours < 48:
            return gettext("%(n)d h") % {"n": hours}
        days = hours // 24
        return ngettext("%(n)d day", "%(n)d days", days) % {"n": days}


def template_fields(context, **extra):
    """A message context as plain text fields, for channels with templates
    (WhatsApp): dates formatted, nothing but strings."""
    fields = {}
    for key, value in {**context, **extra}.items():
        if value is None:
            value = ""
        elif hasattr(value, "strftime"):
            value = value.strftime("%d-%m-%Y %H:%M")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            fields[key] = str(value)
    return fields


def work_order_context(work_order, **extra):
    from .models import WorkOrderPriority, WorkOrderStatus

    asset = work_order.asset
    context = {
        "number": work_order.number,
        "title": work_order.title,
        "asset_code": asset.code,
        "asset_name": asset.name,
        "site": asset.site,
        "priority": label(WorkOrderPriority, work_order.priority),
        "status": label(WorkOrderStatus, work_order.status),
        "assignee": person(work_order.assignee),
        "due_at": timezone.localtime(work_order.due_at) if work_order.due_at else None,
        "link": work_order.admin_url(),
    }
    context.update(extra)
    return context
