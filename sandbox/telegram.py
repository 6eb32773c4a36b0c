"""TelegramSandbox: a local Telegram Bot API, like Mailpit is for email.

    with TelegramSandbox(latency_ms=200) as sandbox:
        requests.post(f"{sandbox.url}/bot123:abcdefghijk/sendMessage", json={...})
        assert sandbox.messages(chat_id=42)[0]["text"] == "..."

The Python methods mirror the HTTP control API under ``/_sandbox/``.
"""

import threading
import time
import zlib

from .botapi import BotApi
from .config import chat_key, defaults
from .server import SandboxHTTPServer
from .state import SandboxState
from .webhook import WebhookDispatcher

__all__ = ["TelegramSandbox"]


class TelegramSandbox:
    def __init__(self, host="127.0.0.1", port=0, **config):
        self.host = host
        self._requested_port = port
        self._state = SandboxState(**config)
        self._api = BotApi(self._state)
        self._webhook = WebhookDispatcher(self._state)
        self._server = None
        self._thread = None

    # -- lifecycle ----------------------------------------------------------
    def start(self):
        """Serve in background threads; returns self."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._state.stopping.clear()
        self._server = SandboxHTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="telegram-sandbox", daemon=True
        )
        self._thread.start()
        self._webhook.start()
        return self

    def stop(self):
        """Stop serving; wakes long polls and injected sleeps, closes idle connections."""
        server = self._server
        if server is None:
            return
        self._state.stopping.set()
        with self._state.updates_changed:
            self._state.updates_changed.notify_all()
        server.shutdown()
        server.close_connections()
        server.server_close()
        self._thread.join(5)
        self._webhook.join(5)
        self._server = None

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self):
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.server_address[1]

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bot_url(self, token):
        """Base URL of one bot's methods: ``f"{bot_url(token)}/sendMessage"``."""
        return f"{self.url}/bot{token}"

    # -- Bot API ------------------------------------------------------------
    def handle_bot_request(self, token, method, params, files=None, client_gone=None):
        """``(status, body_bytes, content_type)`` for one Bot API call (used by the HTTP server)."""
        return self._api.handle(token, method, params, files, client_gone)

    # -- control API (mirrored over HTTP under /_sandbox/) --------------------
    def messages(self, chat_id=None):
        """Bot messages in arrival order, optionally only those of one chat."""
        return self._state.public_messages(chat_id)

    def recent_messages(self, limit):
        """``(last limit messages, number stored)``: cheap even with many stored."""
        return self._state.recent_messages(limit)

    def stats(self):
        return self._state.public_stats()

    def reset(self, config=False):
        """Clear messages, updates, stats, chat states, webhook, flood buckets and
        any force_429 window. Config is kept unless ``config=True``."""
        state = self._state
        with state.updates_changed:
            if config:
                state.config = defaults()
            state.clear()
            state.updates_changed.notify_all()

    def get_config(self):
        with self._state.lock:
            return self._state.public_config()

    def configure(self, **changes):
        """Partial update of any option; returns the resulting config."""
        return self._state.configure(changes)

    def set_chat(self, chat_id, state="ok", migrate_to_chat_id=None, **details):
        """Set a chat's state: ok, not_found, blocked, deactivated, kicked, deleted,
        migrated (needs migrate_to_chat_id). Details: title, first_name, last_name,
        username, type."""
        return self._state.set_chat(chat_id, state, migrate_to_chat_id, **details)

    def chats(self):
        with self._state.lock:
            return [dict(settings) for settings in self._state.chats.values()]

    def inject_update(self, update):
        """Queue an update from a user; returns the full Telegram Update.

        ``{"message": {"chat_id", "text", "from"?}}`` or
        ``{"callback_query": {"chat_id", "message_id", "data", "from"?}}``.
        """
        if isinstance(update, dict) and set(update) == {"my_chat_member"}:
            return self._inject_membership(update["my_chat_member"])
        if not isinstance(update, dict) or len(update) != 1:
            raise ValueError('an update must be {"message": {...}} or {"callback_query": {...}}')
        (kind, content), = update.items()
        if kind not in ("message", "callback_query") or not isinstance(content, dict):
            raise ValueError('an update must be {"message": {...}} or {"callback_query": {...}}')
        key = chat_key(content.get("chat_id"))
        if key is None:
            raise ValueError("chat_id must be an integer or an @username")
        state = self._state
        with state.updates_changed:
            sender = self._user(key, content.get("from"))
            if kind == "message":
                return state.add_update("message", self._user_message(key, sender, content))
            return state.add_update("callback_query", self._callback_query(key, sender, content))

    def inject_message(self, chat_id, text, sender=None):
        return self.inject_update({"message": {"chat_id": chat_id, "text": text, "from": sender}})

    def inject_callback(self, chat_id, message_id, data, sender=None):
        return self.inject_update(
            {"callback_query": {"chat_id": chat_id, "message_id": message_id, "data": data, "from": sender}}
        )

    def block_bot(self, chat_id):
        """The user blocks the bot: a my_chat_member update (status kicked), and
        later sends to the chat get 403 "bot was blocked by the user"."""
        return self.inject_update({"my_chat_member": {"chat_id": chat_id, "status": "kicked"}})

    def bot_commands(self):
        """{"<scope>/<language>": [BotCommand]} as set with setMyCommands."""
        with self._state.lock:
            return {f"{scope}/{language or '-'}": [dict(c) for c in commands]
                    for (_bot, scope, language), commands in self._state.bot_commands.items()}

    def _inject_membership(self, content):
        """``{"chat_id", "status": "kicked"|"member"}``: the user blocked or unblocked the bot."""
        if not isinstance(content, dict) or content.get("status") not in ("kicked", "member"):
            raise ValueError('my_chat_member needs {"chat_id", "status": "kicked" or "member"}')
        key = chat_key(content.get("chat_id"))
        if not isinstance(key, int) or key <= 0:
            raise ValueError("my_chat_member needs a private chat id")
        self.set_chat(key, state="blocked" if content["status"] == "kicked" else "ok")
        state = self._state
        with state.updates_changed:
            sender = self._user(key, content.get("from"))
            old, new = ("member", "kicked") if content["status"] == "kicked" else ("kicked", "member")
            bot = state.bot_user(100000)
            return state.add_update("my_chat_member", {
                "chat": state.chat_object(key), "from": sender, "date": int(time.time()),
                "old_chat_member": {"user": bot, "status": old}, "new_chat_member": {"user": bot, "status": new},
            })

    def updates(self):
        """Every update injected since the last reset (delivered or not)."""
        with self._state.lock:
            return list(self._state.update_log)

    def callback_answers(self):
        """Every answerCallbackQuery call, with ``ok`` false for the refused ones."""
        with self._state.lock:
            return [dict(answer) for answer in self._state.callback_answers]

    def webhook_info(self):
        return self._state.webhook_info()

    # -- update builders (state lock held) ------------------------------------
    def _user(self, key, given):
        settings = self._state.chats.get(key, {})
        private = isinstance(key, int) and key > 0
        user = {
            "id": key if private else 100_000_001,
            "is_bot": False,
            "first_name": (settings.get("first_name") if private else None) or "Sandbox",
            "language_code": "en",
        }
        if private and settings.get("username"):
            user["username"] = settings["username"]
        if given:
            if not isinstance(given, dict):
                raise ValueError("from must be an object")
            user.update(given)
        return user

    def _user_message(self, key, sender, content):
        state = self._state
        text = content.get("text")
        if not isinstance(text, str):
            raise TypeError("message.text must be a string")
        message = {
            "message_id": state.next_message_id(key),
            "from": sender,
            "chat": state.chat_object(key),
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0] if text.strip() else text
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]
        return message

    def _callback_query(self, key, sender, content):
        state = self._state
        data = content.get("data")
        if not isinstance(data, str):
            raise TypeError("callback_query.data must be a string")
        try:
            message_id = int(content.get("message_id") or 0)
        except (TypeError, ValueError):
            raise ValueError("callback_query.message_id must be an integer") from None
        record = state.by_chat.get(key, {}).get(message_id)
        if record is not None:
            message = state.message_object(record)
        else:
            # An inaccessible message, as Telegram sends for old or deleted ones.
            message = {"chat": state.chat_object(key), "message_id": message_id or 0, "date": 0}
        return {
            "id": state.new_callback_id(),
            "from": sender,
            "message": message,
            "chat_instance": str(zlib.crc32(str(key).encode()) * 7_919),
            "data": data,
        }
