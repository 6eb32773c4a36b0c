"""The interactive Telegram bot: what a recorded update does.

``handle_update`` is registered for TELEGRAM inbound events (CmmsConfig.ready)
and runs in a worker for every update the webhook or the poller recorded.
A button press names a WorkOrderOffer token (cmms.offers) and goes through
``cmms.actions.decide``; every press is answered (answerCallbackQuery) even
when the work is slow or fails, and after a decision the messages that offered
it are edited for everyone who received them. Commands: /start <link>,
/ayuda, /ordenes, /ot, /silencio, /desvincular.

Replies are best-effort: a reply that cannot be sent is written in the
event's outcome, and the handler does not fail for it, so a retry never
applies a decision, a link or an unlink twice.
"""

import logging
import re
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import inbound, message_types
from notifications.channels import ChannelError, OutgoingMessage, registry
from notifications.channels import telegram as tg
from notifications.models import ChannelType, InboundEvent, MessageLog, UserChannelPreference
from notifications.telegram_link import LinkRefused, consume, preference_for_chat, unlink

from . import actions, broadcasts, messages, offers
from .models import HELD_STATUSES, WorkOrder, WorkOrderPriority, WorkOrderStatus

logger = logging.getLogger(__name__)
MAX_LISTED_ORDERS = 10
MAX_MUTE = timedelta(days=7)
_local = threading.local()


def bot():
    """The Telegram adapter, one per thread (requests.Session is not thread-safe),
    rebuilt when the token or the API URL changes."""
    spec = registry.get(ChannelType.TELEGRAM)
    key = (settings.TELEGRAM_API_URL, spec.account_secret())
    cached = getattr(_local, "bot", None)
    if cached is None or cached[0] != key:
        cached = _local.bot = (key, spec.build())
    return cached[1]


def handle_update(event):
    with messages.default_language():
        update = event.payload or {}
        if event.kind == "callback_query":
            return on_press(event, update["callback_query"])
        if event.kind == "message":
            return on_message(event, update["message"])
        if event.kind == "my_chat_member":
            return on_membership(update["my_chat_member"])
        raise inbound.Ignore(_("Nothing to do for a %(kind)s update.") % {"kind": event.kind})


def _resolve(event, user):
    if user is not None:
        InboundEvent.objects.filter(pk=event.pk).update(user=user)


def with_one_wait(call, *args, **kwargs):
    """A chat's flood limit (429 with a short retry_after): wait once, then
    let the error through. Replies and edits are not MessageLog rows, so they
    do not go through the delivery worker's limiter."""
    try:
        return call(*args, **kwargs)
    except ChannelError as exc:
        if not exc.retry_after or exc.retry_after > 3:
            raise
        time.sleep(exc.retry_after)
        return call(*args, **kwargs)


def reply(chat_id, text, markup=None):
    """Send an HTML reply; returns '' or what went wrong (for the outcome)."""
    try:
        with_one_wait(bot().send_text, chat_id, text, reply_markup=markup)
    except ChannelError as exc:
        logger.warning("Telegram reply to %s failed: %s", chat_id, exc)
        return " " + _("(reply not sent: %(error)s)") % {"error": exc}
    return ""


# -- button presses -------------------------------------------------------------


class CallbackAnswer:
    """Answers one callback query exactly once. ``say(text)`` answers with the
    outcome; if the work takes longer than TELEGRAM_CALLBACK_ANSWER_AFTER_S a
    timer answers "working on it" first, and the outcome then goes to the chat
    as a message (a query can be answered only once). Leaving the block
    without an answer (an error) answers that it failed."""

    def __init__(self, query, chat_id):
        self.query_id = query.get("id")
        self.chat_id = chat_id
        self.answered = False
        self.lock = threading.Lock()
        self.timer = threading.Timer(settings.TELEGRAM_CALLBACK_ANSWER_AFTER_S, self._early, [_("⏳ Working on it…")])
        self.timer.daemon = True

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.timer.cancel()
        if exc_type is not None and not self.answered:
            self.say(_("Something went wrong; nothing was changed. Try again in a moment."), alert=True)
        return False

    def _answer(self, text, alert):
        try:
            tg.answer_callback_query(bot(), self.query_id, text, show_alert=alert)
            return True
        except ChannelError as exc:
            # Too old or already answered: the person still needs the outcome.
            logger.info("answerCallbackQuery %s failed: %s", self.query_id, exc)
            return False

    def _early(self, text):
        with messages.default_language(), self.lock:
            if not self.answered:
                self.answered = True
                self._answer(text, False)

    def say(self, text, alert=False):
        self.timer.cancel()
        with self.lock:
            if not self.answered:
                self.answered = True
                if self._answer(text, alert):
                    return
        if self.chat_id:
            reply(self.chat_id, tg.escape(text))


def on_press(event, query):
    message = query.get("message") or {}
    chat_id = (message.get("chat") or {}).get("id") or (query.get("from") or {}).get("id")
    presser = (query.get("from") or {}).get("id")
    with CallbackAnswer(query, chat_id) as answer:
        if broadcasts.confirmation_id(query.get("data")) is not None:
            return _confirm_broadcast(event, query, presser, answer)
        offer = offers.find(query.get("data"))
        if offer is None:
            answer.say(_("This button is not valid: the bot did not offer it. Nothing was changed."), alert=True)
            return _("Refused: unknown button data.")
        pref = preference_for_chat(presser) if presser else None
        if pref is None or not pref.is_enabled:
            answer.say(_("This chat is not linked to a CMMS user; only linked people can act on work orders."),
                       alert=True)
            return _("Refused: the chat that pressed is not linked.")
        user = pref.user
        _resolve(event, user)
        try:
            result = actions.decide(offer.work_order_id, user, offer.decision, via=ChannelType.TELEGRAM,
                                    offered_seq=offer.assignment_seq)
        except actions.ActionRefused as exc:
            answer.say(str(exc), alert=True)
            return _("Refused: %(why)s") % {"why": exc}
        answer.say(result.message)
        edited = ""
        if result.changed:
            edited = update_offer_messages(result.work_order, offer.assignment_seq, pressed=(chat_id, message))
        return f"{result.message}{edited}"


def _confirm_broadcast(event, query, presser, answer):
    """"Confirmar lectura" on a broadcast: recorded for the linked presser."""
    pref = preference_for_chat(presser) if presser else None
    if pref is None or not pref.is_enabled:
        answer.say(_("This chat is not linked to a CMMS user; only linked people can act on work orders."), alert=True)
        return _("Refused: the chat that pressed is not linked.")
    _resolve(event, pref.user)
    recorded, text = broadcasts.confirm_press(broadcasts.confirmation_id(query.get("data")), pref.user,
                                              via=ChannelType.TELEGRAM)
    answer.say(text, alert=not recorded)
    return text


def decision_line(order):
    when = timezone.localtime(order.decided_at).strftime("%H:%M") if order.decided_at else ""
    who = messages.person(order.decided_by)
    if order.status == WorkOrderStatus.ACCEPTED:
        return _("✅ Accepted by %(person)s, %(time)s") % {"person": who, "time": when}
    return _("❌ Rejected by %(person)s, %(time)s") % {"person": who, "time": when}


def _outgoing(log):
    try:
        emoji = message_types.get(log.message_type).emoji
    except message_types.UnknownMessageType:
        emoji = ""
    payload = log.payload or {}
    return OutgoingMessage(title=log.title, body=log.body, emoji=emoji, priority=log.priority,
                           link=payload.get("link", ""), link_label=_("Open in the CMMS"))


EDIT_TASK = "cmms.edit_offer_messages"
EDIT_ATTEMPTS = 4


def schedule_edit_retry(order_id, seq, attempt, delay):
    """Edits that failed for a passing reason (a flood limit, a network error)
    are tried again by a task; a repeat of one that went through is answered
    "message is not modified", which is expected."""
    from celery import current_app

    from notifications.dispatch import run_bounded

    def _send():
        current_app.send_task(EDIT_TASK, args=[order_id, seq, attempt], countdown=delay,
                              queue=settings.NOTIFICATION_QUEUES[ChannelType.TELEGRAM])

    return run_bounded(_send, what=f"edits of work order {order_id}")


def update_offer_messages(order, seq, pressed=None, attempt=1):
    """Edit every sent Telegram message that offered this decision: the
    buttons go, the decision line is added. Returns a summary for the outcome."""
    order = WorkOrder.objects.select_related("decided_by").get(pk=order.pk)
    tokens = offers.tokens_of_offer(order.pk, seq)
    line = decision_line(order)
    rows = MessageLog.objects.filter(
        channel_type=ChannelType.TELEGRAM, related_object_type="work_order", related_object_id=str(order.pk),
    ).exclude(provider_message_id="")
    edited, failed, done, retry_in = 0, [], set(), None
    for row in rows:
        if not any(a.get("callback_data") in tokens for a in (row.payload or {}).get("actions") or []):
            continue
        message_id = row.provider_message_id.split(",")[-1]  # the buttons ride on the last part
        text = tg.render(_outgoing(row))[-1] + "\n\n" + tg.escape(line)
        done.add((str(row.recipient), str(message_id)))
        try:
            with_one_wait(tg.edit_message_text, bot(), row.recipient, message_id, text)
            edited += 1
        except ChannelError as exc:
            if not tg.is_expected_edit_error(exc):
                failed.append(str(exc))
                if not exc.permanent:
                    retry_in = max(retry_in or 0, exc.retry_after or 2.0 ** attempt)
    if pressed and pressed[1].get("message_id"):
        chat_id, message = pressed
        if (str(chat_id), str(message["message_id"])) not in done:
            # A list (/ordenes, /ot) rather than an alert: drop only this offer's buttons.
            failed += _strip_buttons(chat_id, message, tokens, line)
    summary = " " + _("%(n)d message(s) edited.") % {"n": edited}
    if failed:
        summary += " " + _("Edits failed: %(errors)s") % {"errors": "; ".join(failed)[:150]}
        if retry_in is not None and attempt < EDIT_ATTEMPTS and schedule_edit_retry(order.pk, seq, attempt + 1, retry_in):
            summary += " " + _("Trying again in %(s)d s.") % {"s": int(retry_in)}
    return summary


def _strip_buttons(chat_id, message, tokens, line):
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    kept = [[b for b in row if b.get("callback_data") not in tokens] for row in rows]
    kept = [row for row in kept if row]
    try:
        with_one_wait(tg.edit_message_reply_markup, bot(), chat_id, message["message_id"],
                      {"inline_keyboard": kept} if kept else None)
    except ChannelError as exc:
        if not tg.is_expected_edit_error(exc):
            return [str(exc)]
    return []


# -- messages and commands --------------------------------------------------------

_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@\w+)?(?:\s+(.*))?$", re.S)


def on_message(event, message):
    chat_id = (message.get("chat") or {}).get("id")
    text = (message.get("text") or "").strip()
    if chat_id is None:
        raise inbound.Ignore(_("A message without a chat."))
    match = _COMMAND.match(text)
    command, argument = (match.group(1).lower(), (match.group(2) or "").strip()) if match else ("", "")
    if command == "start":
        return cmd_start(event, chat_id, argument)
    pref = preference_for_chat(chat_id)
    if pref is None or not pref.is_enabled:
        return _("Not linked: sent the linking instructions.") + reply(chat_id, link_instructions(chat_id))
    _resolve(event, pref.user)
    handler = COMMANDS.get(command)
    if handler is None:
        return _("Sent the help.") + reply(chat_id, help_text(pref.user))
    return handler(chat_id, pref, argument)


def link_instructions(chat_id):
    return _(
        "This chat is not linked to a CMMS user yet. Ask an administrator for a link "
        "(the “Link Telegram” action on your user) and open it here.\n\n"
        "Your chat id is <code>%(chat_id)s</code> (for an administrator who links it by hand)."
    ) % {"chat_id": tg.escape(chat_id)}


def help_text(user=None):
    hello = _("Hello, %(person)s.") % {"person": tg.escape(messages.person(user))} + "\n\n" if user else ""
    return hello + _(
        "What I can do:\n"
        "/ordenes: your open work orders, with their buttons\n"
        "/ot OT-00042: one work order\n"
        "/silencio 2h: mute non-critical messages for a while (/silencio off ends it)\n"
        "/desvincular: unlink this chat\n"
        "/ayuda: this help\n\n"
        "On an alert, ✅ accepts the work order and ❌ rejects it."
    )


def cmd_start(event, chat_id, argument):
    if not argument:
        pref = preference_for_chat(chat_id)
        if pref is not None and pref.is_enabled:
            _resolve(event, pref.user)
            return _("Already linked: sent the help.") + reply(chat_id, help_text(pref.user))
        return _("Start without a link: sent the linking instructions.") + reply(chat_id, link_instructions(chat_id))
    hashed = argument[len("hash:"):] if argument.startswith("hash:") else ""
    try:
        if not hashed:
            raise LinkRefused(_("This link is not valid. Ask an administrator for a new one."))
        linked = consume(hashed, chat_id)
    except LinkRefused as exc:
        return _("Link refused: %(why)s") % {"why": exc} + reply(chat_id, tg.escape(str(exc)))
    _resolve(event, linked.user)
    text = _("✅ Done, %(person)s: this chat is now linked to your CMMS user %(username)s.") % {
        "person": tg.escape(messages.person(linked.user)), "username": f"<b>{tg.escape(linked.user.username)}</b>"}
    outcome = _("Linked chat %(chat)s to %(username)s.") % {"chat": chat_id, "username": linked.user.username}
    if linked.previous_user is not None:
        outcome += " " + _("It was linked to %(username)s before.") % {"username": linked.previous_user.username}
    return outcome + reply(chat_id, text + "\n\n" + help_text())


def _order_line(order):
    parts = [f"<b>{tg.escape(order.number)}</b>", tg.escape(order.title), tg.escape(order.asset.code),
             tg.escape(messages.label(WorkOrderStatus, order.status))]
    if order.due_at:
        parts.append(_("due %(when)s") % {"when": timezone.localtime(order.due_at).strftime("%d/%m %H:%M")})
    return "• " + " · ".join(parts)


def cmd_orders(chat_id, pref, argument):
    orders = list(
        WorkOrder.objects.select_related("asset").filter(assignee=pref.user, status__in=HELD_STATUSES)
        .order_by(F("due_at").asc(nulls_last=True), "pk")[:MAX_LISTED_ORDERS + 1]
    )
    if not orders:
        return _("Listed no open work orders.") + reply(chat_id, _("You have no open work orders."))
    shown = orders[:MAX_LISTED_ORDERS]
    lines = [_order_line(o) for o in shown]
    if len(orders) > MAX_LISTED_ORDERS:
        lines.append(_("… and more; the CMMS has the full list."))
    keyboard = [_buttons(o) for o in shown if o.status == WorkOrderStatus.ASSIGNED]
    text = _("📋 Your open work orders:") + "\n\n" + "\n".join(lines)
    markup = {"inline_keyboard": keyboard} if keyboard else None
    return _("Listed %(n)d open work order(s).") % {"n": len(shown)} + reply(chat_id, text, markup)


def _buttons(order):
    return [{"text": a["text"], "callback_data": a["callback_data"]}
            for a in messages.work_order_actions(order, label_number=True)]


_NUMBER = re.compile(r"^(?:OT)?[-\s]*0*(\d{1,9})$", re.I)


def cmd_order(chat_id, pref, argument):
    match = _NUMBER.match(argument.strip())
    if not match:
        return _("Asked for an order without a number.") + reply(chat_id, _("Which one? For example: /ot OT-00042"))
    number = f"OT-{int(match.group(1)):05d}"
    order = WorkOrder.objects.select_related("asset", "assignee").filter(number=number).first()
    if order is None or not actions.may_act_on(order, pref.user):
        # The same answer whether it does not exist or is not theirs: numbers are guessable.
        return _("Order %(number)s not shown (missing or not theirs).") % {"number": number} + reply(
            chat_id, _("I found no work order %(number)s that you can see.") % {"number": number})
    lines = [
        f"📋 <b>{tg.escape(order.number)}</b> · {tg.escape(order.title)}",
        _("Asset: %(code)s · %(name)s") % {"code": tg.escape(order.asset.code), "name": tg.escape(order.asset.name)},
        _("Status: %(status)s") % {"status": tg.escape(messages.label(WorkOrderStatus, order.status))},
        _("Priority: %(priority)s") % {"priority": tg.escape(messages.label(WorkOrderPriority, order.priority))},
        _("Assignee: %(person)s") % {"person": tg.escape(messages.person(order.assignee) or "-")},
    ]
    if order.due_at:
        lines.append(_("Due: %(when)s") % {"when": timezone.localtime(order.due_at).strftime("%d/%m/%Y %H:%M")})
    if order.description:
        lines.append("\n" + tg.escape(order.description[:1500]))
    lines.append(f'\n<a href="{tg.escape(order.admin_url())}">→ {tg.escape(_("Open in the CMMS"))}</a>')
    markup = {"inline_keyboard": [_buttons(order)]} if order.status == WorkOrderStatus.ASSIGNED else None
    return _("Showed %(number)s.") % {"number": number} + reply(chat_id, "\n".join(lines), markup)


_DURATION = re.compile(r"^(\d{1,4})\s*(m|min|h|d)?$", re.I)


def parse_duration(text):
    match = _DURATION.match(text.strip())
    if not match:
        return None
    amount, unit = int(match.group(1)), (match.group(2) or "h").lower()
    delta = {"m": timedelta(minutes=amount), "min": timedelta(minutes=amount), "h": timedelta(hours=amount),
             "d": timedelta(days=amount)}[unit]
    return min(delta, MAX_MUTE) if amount > 0 else None


def cmd_mute(chat_id, pref, argument):
    now = timezone.now()
    if argument.lower() in ("off", "no", "0", "fin"):
        UserChannelPreference.objects.filter(pk=pref.pk).update(muted_until=None, updated_at=now)
        return _("Unmuted.") + reply(chat_id, _("🔔 Messages are no longer muted."))
    if not argument:
        if pref.muted_until and pref.muted_until > now:
            until = timezone.localtime(pref.muted_until).strftime("%d/%m %H:%M")
            return _("Told the mute status.") + reply(
                chat_id, _("🔕 Muted until %(until)s; only critical messages arrive. /silencio off ends it.")
                % {"until": until})
        return _("Told the mute status.") + reply(chat_id, _("Not muted. For example: /silencio 2h (or 30m, 1d)."))
    delta = parse_duration(argument)
    if delta is None:
        return _("Mute refused: bad duration.") + reply(
            chat_id, _("I did not understand %(text)s. For example: /silencio 2h (or 30m, 1d; at most 7 days).")
            % {"text": tg.escape(argument[:40])})
    until = now + delta
    UserChannelPreference.objects.filter(pk=pref.pk).update(muted_until=until, updated_at=now)
    shown = timezone.localtime(until).strftime("%d/%m %H:%M")
    return _("Muted until %(until)s.") % {"until": shown} + reply(
        chat_id, _("🔕 Muted until %(until)s: only critical messages will arrive here. /silencio off ends it.")
        % {"until": shown})


def cmd_unlink(chat_id, pref, argument):
    unlink(chat_id)
    return _("Unlinked chat %(chat)s from %(username)s.") % {"chat": chat_id, "username": pref.user.username} + reply(
        chat_id, _("This chat is no longer linked to the CMMS; you will not get its messages here."))


def cmd_help(chat_id, pref, argument):
    return _("Sent the help.") + reply(chat_id, help_text(pref.user))


COMMANDS = {"ayuda": cmd_help, "help": cmd_help, "ordenes": cmd_orders, "ot": cmd_order, "silencio": cmd_mute,
            "desvincular": cmd_unlink}


def on_membership(change):
    chat_id = (change.get("chat") or {}).get("id")
    status = (change.get("new_chat_member") or {}).get("status")
    prefs = UserChannelPreference.objects.filter(channel_type=ChannelType.TELEGRAM, channel_user_id=str(chat_id))
    if status in ("kicked", "left"):
        count = prefs.update(is_reachable=False, unreachable_reason="Forbidden: bot was blocked by the user",
                             unreachable_since=timezone.now())
        return _("The bot was blocked in chat %(chat)s: %(n)d preference(s) marked unreachable.") % {
            "chat": chat_id, "n": count}
    if status in ("member", "administrator"):
        count = prefs.filter(is_reachable=False).update(is_reachable=True, unreachable_reason="",
                                                        unreachable_since=None)
        return _("The bot was unblocked in chat %(chat)s: %(n)d preference(s) reachable again.") % {
            "chat": chat_id, "n": count}
    raise inbound.Ignore(_("Membership change to %(status)s needs nothing.") % {"status": status})
