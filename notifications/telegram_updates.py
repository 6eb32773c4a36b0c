"""Telegram updates in: one recording step for the webhook and the poller.

``record_update(update)`` is all either path does with an update: it stores
it once per ``update_id`` (Telegram retries webhooks and a poller may fetch
again after a crash) through ``notifications.inbound.record``, whose worker
task runs the handler ``cmms`` registered for TELEGRAM. A ``/start <token>``
is stored with the token replaced by its hash, so no usable link token sits
in the database or the admin.
"""

import copy
import re

from django.utils.translation import gettext_lazy

from . import inbound
from .telegram_link import token_hash

PROVIDER = "TELEGRAM"
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
_START = re.compile(r"^/start(@\w+)?\s+(\S+)")


class BadUpdate(ValueError):
    """Not a Telegram Update (no integer update_id)."""


def describe(update):
    """(kind, chat id) of an update."""
    for kind in ("callback_query", "message", "edited_message", "my_chat_member", "channel_post"):
        content = update.get(kind)
        if isinstance(content, dict):
            chat = (content.get("message") or {}).get("chat") if kind == "callback_query" else content.get("chat")
            chat_id = (chat or {}).get("id") or (content.get("from") or {}).get("id") or ""
            return kind, str(chat_id)
    kinds = [k for k in update if k != "update_id"]
    return (kinds[0] if kinds else "unknown"), ""


def without_secrets(update):
    """The update as stored: a /start token becomes ``hash:<sha256>``."""
    message = update.get("message")
    text = message.get("text") if isinstance(message, dict) else None
    if not isinstance(text, str):
        return update
    match = _START.match(text)
    if not match:
        return update
    clean = copy.deepcopy(update)
    clean["message"]["text"] = f"/start hash:{token_hash(match.group(2))}"
    clean["message"].pop("entities", None)
    return clean


def record_update(update, publish=True):
    """Store one update; returns ``(event, created)``."""
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise BadUpdate("A Telegram update needs an integer update_id.")
    kind, chat_id = describe(update)
    return inbound.record(PROVIDER, update["update_id"], without_secrets(update), kind=kind, sender=chat_id,
                          publish=publish)


# The bot's menu (setMyCommands). Implemented by cmms.telegram_bot; listed here
# so the setup and polling commands can register it without importing cmms.
BOT_COMMANDS = (
    ("ordenes", gettext_lazy("My open work orders")),
    ("ot", gettext_lazy("Show one work order: /ot OT-00042")),
    ("silencio", gettext_lazy("Mute non-critical messages: /silencio 2h")),
    ("desvincular", gettext_lazy("Unlink this chat from the CMMS")),
    ("ayuda", gettext_lazy("What this bot can do")),
)


def register_commands(channel):
    """setMyCommands in the default language, and in English for clients set to English."""
    from django.conf import settings
    from django.utils import translation

    from .channels.telegram import set_my_commands

    with translation.override(settings.LANGUAGE_CODE):
        set_my_commands(channel, [(c, str(d)) for c, d in BOT_COMMANDS])
    if not settings.LANGUAGE_CODE.startswith("en"):
        with translation.override("en"):
            set_my_commands(channel, [(c, str(d)) for c, d in BOT_COMMANDS], language_code="en")
