"""Work-order decisions by SMS: ``ACEPTAR OT-00042`` / ``RECHAZAR OT-00042
[reason]`` from the assignee's (or a supervisor's) phone. The same
``actions.decide`` as the Telegram buttons, so the same authorization and
effect; registered with notifications.sms_inbound from CmmsConfig.ready()."""

import re

from django.utils.translation import gettext as _

from . import actions, messages
from .models import WorkOrder

_COMMAND = re.compile(r"^(ACEPTAR|ACEPTO|ACCEPT|RECHAZAR|RECHAZO|REJECT)\s+(OT-?\d+|\d+)\b\s*(.*)$", re.IGNORECASE)
_ACCEPT_WORDS = {"ACEPTAR", "ACEPTO", "ACCEPT"}


def handle(user, text):
    """The reply to send, or None when ``text`` is not a work-order command."""
    match = _COMMAND.match(text.strip())
    if not match:
        return None
    word, reference, reason = match.groups()
    digits = re.sub(r"\D", "", reference)
    decision = actions.ACCEPT if word.upper() in _ACCEPT_WORDS else actions.REJECT
    order = WorkOrder.objects.filter(number=f"OT-{int(digits):05d}").only("pk").first()
    if order is None:
        with messages.default_language():
            return _("Work order %(number)s does not exist.") % {"number": reference.upper()}
    try:
        return actions.decide(order.pk, user, decision, via="SMS", reason=reason).message
    except actions.ActionRefused as exc:
        return str(exc)
