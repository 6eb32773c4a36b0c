"""What a WhatsApp user's messages do: the handler of "WHATSAPP" inbound events.

Statuses go to ``notifications.whatsapp.apply_status``. A message from a
known number opens that user's 24-hour window; a pressed reply button (an
interactive ``button_reply`` in the window, a template's quick reply
outside it) accepts or rejects the work order through ``actions.decide``,
with the same authorization as every channel: the sender is resolved from
their number, and the button's id must be one we signed for a message sent
to that very number. Any other message gets the help reply.
"""

from django.utils.translation import gettext as _

from notifications import inbound
from notifications import whatsapp as wa

from . import actions, messages, offers

_DECISIONS = {
    messages.ACCEPT_CALLBACK.split("{")[0]: actions.ACCEPT,
    messages.REJECT_CALLBACK.split("{")[0]: actions.REJECT,
}


def handle(event):
    if event.kind == "status":
        return wa.apply_status(event)
    message = event.payload
    pref = wa.preference_for_phone(message.get("from", ""))
    if pref is None:
        raise inbound.Ignore(f"Message from a number no user has: {event.sender[-4:].rjust(len(event.sender), '*')}")
    wa.open_window(pref, wa.timestamp(message.get("timestamp")))
    pressed = pressed_button_id(message)
    with messages.default_language():
        if pressed is None:
            wa.reply(pref, help_text())
            return _("Help sent to %(user)s; window open.") % {"user": pref.user}
        text = decide(pref, pressed)
        wa.reply(pref, text)
        return text[:255]


def pressed_button_id(message):
    kind = message.get("type")
    if kind == "interactive":
        reply = (message.get("interactive") or {}).get("button_reply") or {}
        return str(reply.get("id", ""))
    if kind == "button":  # a template's quick-reply button
        return str((message.get("button") or {}).get("payload", ""))
    return None


def decide(pref, pressed):
    offer = wa.resolve_reply(pressed)
    if offer is None:
        return _("That button is not valid (any more); nothing was changed.")
    log, action = offer
    if log.recipient != wa.to_e164(pref.channel_user_id):
        return _("That button was sent to another number; nothing was changed.")
    data = str(action.get("callback_data", ""))
    stored = offers.find(data)
    if stored is not None:
        pk, decision, seq = stored.work_order_id, stored.decision, stored.assignment_seq
    else:
        prefix, _sep, pk = data.rpartition(":")
        decision = _DECISIONS.get(prefix + ":")
        if decision is None or not pk.isdigit():
            return _("That button does nothing here.")
        seq = ((log.payload or {}).get("context") or {}).get("assignment_seq")
    try:
        return actions.decide(int(pk), pref.user, decision, via="WHATSAPP", offered_seq=seq).message
    except actions.ActionRefused as exc:
        return str(exc)


def help_text():
    return _("This is the maintenance bot. Work orders assigned to you arrive here with ✅ Accept and ❌ Reject "
             "buttons; press one to answer. Your messages let us write to you freely for 24 hours.")


def register():
    inbound.register_handler("WHATSAPP", handle)
