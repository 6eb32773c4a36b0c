"""Everything the sandbox remembers, behind one lock.

The lock guards plain in-memory bookkeeping only: nobody sleeps, waits for
the network or parses text while holding it. Long polls wait on the
condition, which releases the lock.
"""

import collections
import math
import random
import threading
import time
import zlib

from .config import chat_key, defaults, normalize
from .ratelimit import FloodLimiter

__all__ = ["CHAT_STATES", "BotApiError", "SandboxState", "mask_token"]

CHAT_STATES = ("ok", "not_found", "blocked", "deactivated", "kicked", "migrated", "deleted")

_DOCUMENT_FIELDS = ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")

_PREFIXES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
}

# Update ids and callback ids keep growing across resets, like Telegram's, so a
# poller that kept its offset does not silently skip the updates after a reset.
_FIRST_UPDATE_ID = 1
_CALLBACK_ID_BASE = 4_000_000_000_000_000_000


class BotApiError(Exception):
    """An error answer of the Bot API: HTTP status == error_code."""

    def __init__(self, code, text, **parameters):
        self.code = code
        self.description = f"{_PREFIXES[code]}: {text}" if text else _PREFIXES[code]
        self.parameters = parameters
        super().__init__(self.description)

    def payload(self):
        body = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def mask_token(token):
    """``bot<id>:***``: never show the secret half of a token."""
    bot_id = str(token).split(":", 1)[0]
    return f"bot{bot_id}:***" if bot_id.isdigit() else "bot***"


def _empty_stats():
    return {
        "requests": 0,
        "by_method": {},
        "delivered": 0,
        "edits": 0,
        "responses_by_status": {},
        "rate_limited": 0,
        "force_429_rejections": 0,
        "failures_injected": 0,
        "timeouts_injected": 0,
        "client_gone": 0,
        "webhook_deliveries": 0,
        "webhook_failures": 0,
        "requests_while_force_429": [],
        # Requests that arrived while a bot-wide 429 of the sliding window was
        # in force: each one is a client sending inside retry_after.
        "requests_inside_retry_after": 0,
    }


class SandboxState:
    def __init__(self, **config):
        self.lock = threading.Lock()
        self.updates_changed = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self.arrival = threading.local()  # .at: when the request being handled reached the server (monotonic)
        self.limiter = FloodLimiter()
        self.config = defaults()
        self.config.update(normalize(config))
        self.next_update_id = _FIRST_UPDATE_ID
        self.next_callback_id = 1
        force = self.config["force_429"]
        self.clear()
        if force:
            self.config["force_429"] = force
            self.force_429_until = time.monotonic() + force["duration_s"]

    def clear(self):
        """Forget every message, update, chat setting and counter (config stays)."""
        self.messages = collections.deque()  # bot messages in arrival order
        self.by_chat = {}  # chat key -> {message_id: record}
        self.last_message_id = {}  # chat key -> last message id used in that chat
        self.chats = {}  # chat key -> settings set through the control API
        self.pending_updates = []  # injected, not yet confirmed (getUpdates) or posted (webhook)
        self.update_log = []  # every injected update
        self.allowed_updates = None
        self.callbacks = {}  # callback query id -> {"created": monotonic, "answered": bool}
        self.callback_answers = []
        self.webhook = None
        self.webhook_last_error = None  # (unix date, message)
        self.poll_generation = 0
        self.files = {}  # file_id -> document dict
        self.bot_commands = {}  # (bot id, scope type, language) -> [BotCommand]
        self.stats = _empty_stats()
        self.limiter.reset()
        self.window = {}  # bot id -> deque of accepted monotonic times (bot_window_s)
        self.bot_blocked = {}  # bot id -> (monotonic instant a window 429 was answered, end of its retry_after)
        self.random = random.Random(self.config["seed"])
        self.config["force_429"] = None
        self.force_429_until = None

    # -- config -------------------------------------------------------------
    def configure(self, changes):
        clean = normalize(changes)
        with self.lock:
            self.config.update(clean)
            if "seed" in clean:
                self.random = random.Random(clean["seed"])
            if "force_429" in clean:
                force = clean["force_429"]
                self.force_429_until = time.monotonic() + force["duration_s"] if force else None
            return self.public_config()

    def public_config(self):
        """The config as shown to clients: tokens masked, force_429 with its expiry."""
        config = dict(self.config)
        config["revoked_tokens"] = [mask_token(t) for t in config["revoked_tokens"]]
        force = self.active_force_429(time.monotonic())
        if force:
            remaining = self.force_429_until - time.monotonic()
            config["force_429"] = dict(force, expires_at=round(time.time() + remaining, 3))
        return config

    def active_force_429(self, now):
        force = self.config["force_429"]
        if force and now >= self.force_429_until:
            self.config["force_429"] = force = None
            self.force_429_until = None
        return force

    # -- chats --------------------------------------------------------------
    def set_chat(self, chat_id, state="ok", migrate_to_chat_id=None, **details):
        key = chat_key(chat_id)
        if key is None:
            raise ValueError("chat_id must be an integer or an @username")
        if state not in CHAT_STATES:
            raise ValueError(f"state must be one of {', '.join(CHAT_STATES)}")
        target = None
        if state == "migrated":
            target = chat_key(migrate_to_chat_id)
            if not isinstance(target, int):
                raise ValueError("state 'migrated' needs an integer migrate_to_chat_id")
        unknown = set(details) - {"title", "first_name", "last_name", "username", "type"}
        if unknown:
            raise ValueError(f"unknown chat field(s): {', '.join(sorted(unknown))}")
        settings = {"chat_id": key, "state": state, "migrate_to_chat_id": target}
        settings.update({k: v for k, v in details.items() if v is not None})
        with self.lock:
            self.chats[key] = settings
            if target is not None and target not in self.chats:
                # The supergroup exists once the group is upgraded, even with strict_chats.
                self.chats[target] = {"chat_id": target, "state": "ok", "migrate_to_chat_id": None}
            return dict(settings)

    def chat_type(self, key):
        settings = self.chats.get(key)
        if settings and settings.get("type"):
            return settings["type"]
        if isinstance(key, str):
            return "channel"
        if key > 0:
            return "private"
        return "supergroup" if str(key).startswith("-100") else "group"

    def chat_object(self, key):
        settings = self.chats.get(key, {})
        kind = self.chat_type(key)
        if isinstance(key, str):
            # An @username answers with the numeric id Telegram would resolve it to.
            chat = {"id": -1_000_000_000_000 - zlib.crc32(key.encode()) % 1_000_000_000, "username": key[1:]}
            chat["title"] = settings.get("title") or key[1:]
        elif kind == "private":
            chat = {"id": key, "first_name": settings.get("first_name") or f"User {key}"}
            for field in ("last_name", "username"):
                if settings.get(field):
                    chat[field] = settings[field]
        else:
            chat = {"id": key, "title": settings.get("title") or f"Sandbox group {key}"}
            if settings.get("username"):
                chat["username"] = settings["username"]
        chat["type"] = kind
        return chat

    def check_chat(self, key):
        """Raise the error Telegram gives for a chat in a non-ok state."""
        settings = self.chats.get(key)
        state = settings["state"] if settings else ("not_found" if self.config["strict_chats"] else "ok")
        if state == "ok":
            return
        if state == "not_found":
            raise BotApiError(400, "chat not found")
        if state == "blocked":
            raise BotApiError(403, "bot was blocked by the user")
        if state == "deactivated":
            raise BotApiError(403, "user is deactivated")
        if state == "kicked":
            raise BotApiError(403, f"bot was kicked from the {self.chat_type(key)} chat")
        if state == "deleted":
            raise BotApiError(403, "the group chat was deleted")
        if state == "migrated":
            raise BotApiError(
                400,
                "group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=settings["migrate_to_chat_id"],
            )

    def next_message_id(self, key):
        message_id = self.last_message_id.get(key, 0) + 1
        self.last_message_id[key] = message_id
        return message_id

    # -- flood control ------------------------------------------------------
    def check_flood(self, bot_id, key, now_wall):
        """Raise 429 when force_429 or a flood limit refuses a message to ``key``."""
        now = time.monotonic()
        force = self.active_force_429(now)
        if force and force["scope"] in ("bot", key):
            self.stats["requests_while_force_429"].append(now_wall)
            self.stats["force_429_rejections"] += 1
            self.stats["rate_limited"] += 1
            retry_after = max(1, int(-(-(self.force_429_until - now) // 1)))
            answered = force.get("answer_retry_after")
            if answered is not None:
                answered = int(answered) if float(answered).is_integer() and answered < 1e15 else answered
                raise BotApiError(429, f"retry after {answered}", retry_after=answered)
            raise BotApiError(429, f"retry after {retry_after}", retry_after=retry_after)
        config = self.config
        if not config["limits_enabled"]:
            return
        scopes = [(("bot", bot_id), config["bot_rate"], config["bot_burst"])]
        if self.chat_type(key) == "private":
            scopes.append((("chat", bot_id, key), config["chat_rate"], config["chat_burst"]))
        else:
            scopes.append((("group", bot_id, key), config["group_per_min"] / 60.0, config["group_burst"]))
        retry_after = self.limiter.check(scopes, now)
        if retry_after:
            self.stats["rate_limited"] += 1
            raise BotApiError(429, f"retry after {retry_after}", retry_after=retry_after)
        self.check_window(bot_id, now)

    def check_window(self, bot_id, now):
        """The strict sliding window (bot_window_s): at most bot_rate x window
        messages in any window, and nothing while its 429 lasts."""
        span = self.config["bot_window_s"]
        if not span:
            return
        answered, blocked = self.bot_blocked.get(bot_id, (0.0, 0.0))
        if now < blocked:
            # Sent after the client had the 429 (it reached us after the
            # answer left), not merely in flight when the 429 was answered.
            if getattr(self.arrival, "at", now) >= answered:
                self.stats["requests_inside_retry_after"] += 1
            self.stats["rate_limited"] += 1
            raise BotApiError(429, f"retry after {math.ceil(blocked - now)}", retry_after=math.ceil(blocked - now))
        accepted = self.window.setdefault(bot_id, collections.deque())
        while accepted and accepted[0] <= now - span:
            accepted.popleft()
        if len(accepted) >= self.config["bot_rate"] * span:
            retry_after = max(1, math.ceil(accepted[0] + span - now))
            self.bot_blocked[bot_id] = (now, now + retry_after)
            self.stats["rate_limited"] += 1
            self.stats["window_429"] = self.stats.get("window_429", 0) + 1
            raise BotApiError(429, f"retry after {retry_after}", retry_after=retry_after)
        accepted.append(now)

    # -- messages -----------------------------------------------------------
    def bot_user(self, bot_id):
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": self.config["bot_first_name"],
            "username": self.config["bot_username"],
        }

    def message_object(self, record):
        """The Telegram Message for a stored bot message."""
        message = {
            "message_id": record["message_id"],
            "from": self.bot_user(record["token_bot_id"]),
            "chat": self.chat_object(record["chat_id"]),
            "date": int(record["received_at"]),
        }
        if record["edited_at"] is not None:
            message["edit_date"] = int(record["edited_at"])
        if record["method"] == "sendDocument":
            document = record["document"]
            message["document"] = {k: document[k] for k in _DOCUMENT_FIELDS if k in document}
            if record["text"]:
                message["caption"] = record["text"]
                if record["entities"]:
                    message["caption_entities"] = record["entities"]
        else:
            message["text"] = record["text"]
            if record["entities"]:
                message["entities"] = record["entities"]
        markup = record["reply_markup"]
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup  # Message.reply_markup only ever holds inline keyboards
        return message

    def store_message(self, record):
        record["message_id"] = self.next_message_id(record["chat_id"])
        self.messages.append(record)
        self.by_chat.setdefault(record["chat_id"], {})[record["message_id"]] = record
        self.stats["delivered"] += 1
        limit = self.config["max_stored_messages"]
        while limit and len(self.messages) > limit:
            old = self.messages.popleft()
            self.by_chat[old["chat_id"]].pop(old["message_id"], None)
        return record

    def recent_messages(self, limit):
        """The last ``limit`` bot messages (for the chat page; cheap with many stored)."""
        with self.lock:
            count = len(self.messages)
            return [_public_record(self.messages[i]) for i in range(max(0, count - limit), count)], count

    def public_messages(self, chat_id=None):
        key = None if chat_id is None else chat_key(chat_id)
        with self.lock:
            records = self.messages if key is None else self.by_chat.get(key, {}).values()
            return [_public_record(r) for r in records]

    # -- updates ------------------------------------------------------------
    def add_update(self, kind, content):
        """Queue a new update (caller holds the lock) and wake pollers and the webhook."""
        update = {"update_id": self.next_update_id, kind: content}
        self.next_update_id += 1
        self.pending_updates.append(update)
        self.update_log.append(update)
        self.updates_changed.notify_all()
        return update

    def new_callback_id(self):
        callback_id = str(_CALLBACK_ID_BASE + self.next_callback_id)
        self.next_callback_id += 1
        self.callbacks[callback_id] = {"created": time.monotonic(), "answered": False}
        return callback_id

    def confirm_updates(self, offset):
        """getUpdates' offset: forget updates below it (negative: keep the last -offset)."""
        if offset > 0:
            self.pending_updates = [u for u in self.pending_updates if u["update_id"] >= offset]
        elif offset < 0:
            self.pending_updates = self.pending_updates[offset:]

    def update_allowed(self, update, allowed=None):
        allowed = self.allowed_updates if allowed is None else allowed
        if not allowed:
            return True
        return any(kind in update for kind in allowed)

    def webhook_info(self):
        with self.lock:
            info = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self.pending_updates)}
            hook = self.webhook
            if hook:
                info["url"] = hook["url"]
                info["max_connections"] = hook["max_connections"]
                info["ip_address"] = "127.0.0.1"
                if hook["allowed_updates"] is not None:
                    info["allowed_updates"] = hook["allowed_updates"]
            if self.webhook_last_error:
                info["last_error_date"], info["last_error_message"] = self.webhook_last_error
            return info

    # -- stats --------------------------------------------------------------
    def count(self, field, amount=1):
        self.stats[field] += amount

    def count_status(self, status):
        by_status = self.stats["responses_by_status"]
        key = str(status)
        by_status[key] = by_status.get(key, 0) + 1

    def public_stats(self):
        with self.lock:
            stats = dict(self.stats)
            stats["by_method"] = dict(stats["by_method"])
            stats["responses_by_status"] = dict(stats["responses_by_status"])
            stats["requests_while_force_429"] = list(stats["requests_while_force_429"])
            stats["pending_updates"] = len(self.pending_updates)
            return stats


def _public_record(record):
    public = dict(record)
    public["edits"] = [dict(edit) for edit in record["edits"]]
    return public
