"""The Bot API methods, answered from :class:`SandboxState`.

``BotApi.handle`` is the whole request pipeline: token check, injected faults
(latency, 502, slow answers), the method, and the JSON envelope. Validation
and text parsing run outside the state lock; the lock is taken only to read
chat state, check flood limits and store the result.
"""

import hashlib
import ipaddress
import json
import mimetypes
import posixpath
import re
import time
import urllib.parse

from .config import chat_key
from .formatting import ParseError, parse_text
from .state import BotApiError

__all__ = ["BAD_GATEWAY_BODY", "TOKEN_PATTERN", "BotApi"]

TOKEN_PATTERN = re.compile(r"^([0-9]+):[A-Za-z0-9_-]{10,}$")
BAD_GATEWAY_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"

MAX_TEXT = 4096  # characters after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER = 200

_MARKUP_ERROR = "can't parse reply keyboard markup JSON object"
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
# What "message is not modified" compares: the result, not the markup language used to write it.
_COMPARED = ("text", "entities", "reply_markup")


class _Described:
    """A result that also carries Telegram's top-level ``description``."""

    def __init__(self, result, description):
        self.result = result
        self.description = description


# -- parameter helpers -------------------------------------------------------------


def _flag(params, name):
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _integer(params, name, default=None, error=None):
    value = params.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    raise BotApiError(400, error or f"invalid {name} specified")


def _seconds(params, name):
    value = params.get(name)
    if value is None or value == "":
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BotApiError(400, f"invalid {name} specified") from None


def _json_field(params, name, error):
    """Fields such as reply_markup arrive as objects (JSON bodies) or JSON strings (forms)."""
    value = params.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise BotApiError(400, error) from None
    return value


def _chat(params):
    raw = params.get("chat_id")
    if raw is None or raw == "":
        raise BotApiError(400, "chat_id is empty")
    key = chat_key(raw)
    if key is None:
        raise BotApiError(400, "chat not found")
    return key


def _text_param(params, name):
    value = params.get(name)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# -- validation ------------------------------------------------------------------


def _check_button(button, inline):
    if not isinstance(button, dict):
        if not inline and isinstance(button, str):
            return
        raise BotApiError(400, "can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise BotApiError(400, "can't parse inline keyboard button: Field \"text\" must be of type String")
    if not inline:
        return
    actions = [name for name in _BUTTON_ACTIONS if name in button]
    if not actions:
        raise BotApiError(400, "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        raise BotApiError(
            400, f"can't parse inline keyboard button: exactly one of the optional fields must be used, got {', '.join(actions)}"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str):
            raise BotApiError(400, "can't parse inline keyboard button: Field \"callback_data\" must be of type String")
        if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
            raise BotApiError(400, "BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not url.strip() or any(c.isspace() for c in url):
            raise BotApiError(400, "BUTTON_URL_INVALID")


def parse_reply_markup(params, inline_only=False):
    markup = _json_field(params, "reply_markup", _MARKUP_ERROR)
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise BotApiError(400, _MARKUP_ERROR)
    if "inline_keyboard" in markup:
        rows, inline = markup["inline_keyboard"], True
    elif inline_only:
        raise BotApiError(400, _MARKUP_ERROR)
    elif "keyboard" in markup:
        rows, inline = markup["keyboard"], False
    elif markup.get("remove_keyboard") is True or markup.get("force_reply") is True:
        return markup
    else:
        raise BotApiError(400, _MARKUP_ERROR)
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BotApiError(400, _MARKUP_ERROR)
    for row in rows:
        for button in row:
            _check_button(button, inline)
    return markup


def _webhook_url(url):
    """Validate a webhook URL: the sandbox only ever calls loopback addresses."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BotApiError(400, "bad webhook: An HTTP URL must be provided for webhook")
    host = parts.hostname.lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in _LOOPBACK_NAMES
    if not loopback:
        raise BotApiError(
            400, "bad webhook: the sandbox only delivers to loopback addresses (127.0.0.1, ::1, localhost)"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or port == 0:
        raise BotApiError(400, "bad webhook: invalid port specified")
    return url


# -- the API -----------------------------------------------------------------------


class BotApi:
    def __init__(self, state):
        self.state = state
        self._methods = {
            name.lower(): (name, getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()))
            for name in (
                "getMe",
                "sendMessage",
                "sendDocument",
                "editMessageText",
                "editMessageReplyMarkup",
                "answerCallbackQuery",
                "getUpdates",
                "setWebhook",
                "deleteWebhook",
                "getWebhookInfo",
                "setMyCommands",
                "getMyCommands",
                "deleteMyCommands",
                "logOut",
                "close",
            )
        }

    def method_name(self, method):
        """The canonical spelling (Telegram method names are case-insensitive)."""
        known = self._methods.get(method.lower())
        return known[0] if known else method

    def handle(self, token, method, params, files=None, client_gone=None):
        """Answer one Bot API call: ``(status, body, content_type)``, or None when
        the client hung up during the injected latency (nothing was processed)."""
        state = self.state
        state.arrival.at = time.monotonic()  # before the injected latency: when the client sent it
        name = self.method_name(method)
        with state.lock:
            config = state.config
            state.stats["requests"] += 1
            by_method = state.stats["by_method"]
            by_method[name] = by_method.get(name, 0) + 1
            delay = config["latency_ms"] / 1000.0
            if config["latency_jitter_ms"]:
                delay += state.random.uniform(0, config["latency_jitter_ms"] / 1000.0)
            fail = config["fail_rate"] > 0 and state.random.random() < config["fail_rate"]
            slow = not fail and config["timeout_rate"] > 0 and state.random.random() < config["timeout_rate"]
            slow_delay = config["timeout_delay_s"]
        if delay > 0:
            state.stopping.wait(delay)
            if client_gone is not None and client_gone():
                with state.lock:
                    state.stats["client_gone"] += 1
                return None
        if fail:
            with state.lock:
                state.stats["failures_injected"] += 1
                state.count_status(502)
            return 502, BAD_GATEWAY_BODY, "text/html"
        try:
            result = self.call(token, method, params, files or {})
        except BotApiError as error:
            status, payload = error.code, error.payload()
        else:
            status, payload = 200, {"ok": True, "result": result}
            if isinstance(result, _Described):
                payload = {"ok": True, "result": result.result, "description": result.description}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if slow:
            # Processed (and delivered) already; only the answer is late.
            with state.lock:
                state.stats["timeouts_injected"] += 1
            state.stopping.wait(slow_delay)
        with state.lock:
            state.count_status(status)
        return status, body, "application/json"

    def call(self, token, method, params, files):
        match = TOKEN_PATTERN.match(token)
        if not match or token in self.state.config["revoked_tokens"]:
            raise BotApiError(401, "")
        known = self._methods.get(method.lower())
        if known is None:
            raise BotApiError(404, "method not found")
        return known[1](int(match.group(1)), params, files)

    # -- helpers --------------------------------------------------------------
    def _formatted(self, text, parse_mode, limit, too_long, allow_empty=False):
        if parse_mode and parse_mode.lower() not in ("html", "markdownv2", "markdown"):
            raise BotApiError(400, "unsupported parse_mode")
        try:
            visible, entities = parse_text(text, parse_mode, self.state.config["strict_html_entities"])
        except ParseError as error:
            raise BotApiError(400, f"can't parse entities: {error}") from None
        if not allow_empty and not visible.strip():
            raise BotApiError(400, "message text is empty")
        if len(visible) > limit:
            raise BotApiError(400, too_long)
        return visible, entities

    def _new_record(self, bot_id, key, method, params, raw_text, visible, entities, markup, now):
        return {
            "chat_id": key,
            "message_id": None,
            "method": method,
            "text": visible,
            "parse_mode": params.get("parse_mode") or None,
            "raw_text": raw_text,
            "entities": entities,
            "reply_markup": markup,
            "received_at": now,
            "token_bot_id": bot_id,
            "edited": False,
            "edited_at": None,
            "edits": [],
            "disable_notification": _flag(params, "disable_notification"),
            "protect_content": _flag(params, "protect_content"),
            "link_preview_options": _json_field(params, "link_preview_options", "can't parse link preview options")
            or ({"is_disabled": True} if _flag(params, "disable_web_page_preview") else None),
        }

    def _deliver(self, bot_id, key, record):
        state = self.state
        with state.lock:
            state.check_chat(key)
            state.check_flood(bot_id, key, record["received_at"])
            state.store_message(record)
            return state.message_object(record)

    # -- methods --------------------------------------------------------------
    def _get_me(self, bot_id, params, files):
        user = self.state.bot_user(bot_id)
        user.update(
            can_join_groups=True,
            can_read_all_group_messages=False,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return user

    def _log_out(self, bot_id, params, files):
        return True

    def _close(self, bot_id, params, files):
        return True

    def _send_message(self, bot_id, params, files):
        key = _chat(params)
        text = _text_param(params, "text")
        if text == "":
            raise BotApiError(400, "message text is empty")
        visible, entities = self._formatted(text, params.get("parse_mode"), MAX_TEXT, "message is too long")
        markup = parse_reply_markup(params)
        record = self._new_record(bot_id, key, "sendMessage", params, text, visible, entities, markup, time.time())
        return self._deliver(bot_id, key, record)

    def _send_document(self, bot_id, params, files):
        key = _chat(params)
        document = self._document(params, files)
        caption = _text_param(params, "caption")
        visible, entities = self._formatted(
            caption, params.get("parse_mode"), MAX_CAPTION, "message caption is too long", allow_empty=True
        )
        markup = parse_reply_markup(params)
        record = self._new_record(bot_id, key, "sendDocument", params, caption, visible, entities, markup, time.time())
        record["document"] = document
        message = self._deliver(bot_id, key, record)
        with self.state.lock:
            self.state.files.setdefault(document["file_id"], document)
        return message

    def _document(self, params, files):
        value = params.get("document")
        upload = files.get("document")
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value[len("attach://"):])
            value = None
        if upload is not None:
            filename, content_type, content = upload
            if not content:
                raise BotApiError(400, "file must be non-empty")
            digest = hashlib.sha256(content).hexdigest()
            return {
                "file_id": "BQACAgIAAxkBAAI" + digest[:40],
                "file_unique_id": "AgAD" + digest[:12],
                "file_name": filename or "document",
                "mime_type": content_type or mimetypes.guess_type(filename or "")[0] or "application/octet-stream",
                "file_size": len(content),
                "sha256": digest,
            }
        if not isinstance(value, str) or not value:
            raise BotApiError(400, "there is no document in the request")
        with self.state.lock:
            known = self.state.files.get(value)
        if known is not None:
            return dict(known)
        if value.startswith(("http://", "https://")):
            # Never fetched: the sandbox contacts no address but loopback webhooks.
            name = posixpath.basename(urllib.parse.urlsplit(value).path) or "document"
            digest = hashlib.sha256(value.encode()).hexdigest()
            return {
                "file_id": "BQACAgIAAxkDAAI" + digest[:40],
                "file_unique_id": "AgAD" + digest[:12],
                "file_name": name,
                "mime_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
                "url": value,
            }
        raise BotApiError(400, "wrong file identifier/HTTP URL specified")

    def _edit_target(self, params):
        if params.get("inline_message_id"):
            raise BotApiError(400, "MESSAGE_ID_INVALID")
        key = _chat(params)
        message_id = _integer(params, "message_id", error="message to edit not found")
        if message_id is None:
            raise BotApiError(400, "message identifier is not specified")
        return key, message_id

    def _apply_edit(self, bot_id, key, message_id, method, changes):
        state = self.state
        now = time.time()
        with state.lock:
            state.check_chat(key)
            record = state.by_chat.get(key, {}).get(message_id)
            if record is None:
                raise BotApiError(400, "message to edit not found")
            if method == "editMessageText" and record["method"] != "sendMessage":
                raise BotApiError(400, "there is no text in the message to edit")
            if all(record[field] == changes[field] for field in _COMPARED if field in changes):
                raise BotApiError(
                    400,
                    "message is not modified: specified new message content and reply markup are exactly the same "
                    "as a current content and reply markup of the message",
                )
            state.check_flood(bot_id, key, now)
            record.update(changes, edited=True, edited_at=now)
            record["edits"].append(dict(changes, method=method, edited_at=now, token_bot_id=bot_id))
            state.stats["edits"] += 1
            return state.message_object(record)

    def _edit_message_text(self, bot_id, params, files):
        key, message_id = self._edit_target(params)
        text = _text_param(params, "text")
        if text == "":
            raise BotApiError(400, "message text is empty")
        parse_mode = params.get("parse_mode") or None
        visible, entities = self._formatted(text, parse_mode, MAX_TEXT, "message is too long")
        markup = parse_reply_markup(params, inline_only=True)
        changes = {"text": visible, "entities": entities, "reply_markup": markup, "raw_text": text, "parse_mode": parse_mode}
        return self._apply_edit(bot_id, key, message_id, "editMessageText", changes)

    def _edit_message_reply_markup(self, bot_id, params, files):
        key, message_id = self._edit_target(params)
        markup = parse_reply_markup(params, inline_only=True)
        return self._apply_edit(bot_id, key, message_id, "editMessageReplyMarkup", {"reply_markup": markup})

    def _answer_callback_query(self, bot_id, params, files):
        state = self.state
        query_id = _text_param(params, "callback_query_id")
        text = _text_param(params, "text")
        if len(text) > MAX_CALLBACK_ANSWER:
            raise BotApiError(400, "MESSAGE_TOO_LONG")
        answer = {
            "callback_query_id": query_id,
            "text": text or None,
            "show_alert": _flag(params, "show_alert"),
            "url": params.get("url") or None,
            "cache_time": _integer(params, "cache_time", 0),
            "answered_at": time.time(),
            "token_bot_id": bot_id,
        }
        with state.lock:
            query = state.callbacks.get(query_id)
            too_old = (
                query is None
                or query["answered"]
                or time.monotonic() - query["created"] > state.config["callback_answer_timeout_s"]
            )
            answer["ok"] = not too_old
            state.callback_answers.append(answer)
            if too_old:
                raise BotApiError(400, "query is too old and response timeout expired or query ID is invalid")
            query["answered"] = True
        return True

    def _get_updates(self, bot_id, params, files):
        state = self.state
        offset = _integer(params, "offset", 0)
        limit = min(max(_integer(params, "limit", 100), 1), 100)
        timeout = min(max(_seconds(params, "timeout"), 0), 50)
        allowed = _json_field(params, "allowed_updates", "can't parse allowed updates")
        deadline = time.monotonic() + timeout
        with state.updates_changed:
            if state.webhook:
                raise BotApiError(
                    409,
                    "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                )
            if isinstance(allowed, list):
                state.allowed_updates = allowed
            state.poll_generation += 1
            generation = state.poll_generation
            state.updates_changed.notify_all()  # an older poll of this bot ends with 409
            state.confirm_updates(offset)
            while True:
                batch = [u for u in state.pending_updates if state.update_allowed(u)][:limit]
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0 or state.stopping.is_set():
                    return batch
                state.updates_changed.wait(remaining)
                if state.webhook:
                    raise BotApiError(409, "terminated by setWebhook request")
                if state.poll_generation != generation:
                    raise BotApiError(
                        409,
                        "terminated by other getUpdates request; make sure that only one bot instance is running",
                    )

    def _set_webhook(self, bot_id, params, files):
        state = self.state
        url = _text_param(params, "url").strip()
        if not url:
            return self._delete_webhook(bot_id, params, files)
        _webhook_url(url)
        secret = _text_param(params, "secret_token")
        if secret and not _SECRET_TOKEN.match(secret):
            raise BotApiError(400, "secret token contains unallowed characters")
        allowed = _json_field(params, "allowed_updates", "can't parse allowed updates")
        if allowed is not None and not isinstance(allowed, list):
            raise BotApiError(400, "can't parse allowed updates")
        max_connections = min(max(_integer(params, "max_connections", 40), 1), 100)
        with state.updates_changed:
            if _flag(params, "drop_pending_updates"):
                state.pending_updates = []
            state.webhook = {
                "url": url,
                "secret_token": secret or None,
                "allowed_updates": allowed,
                "max_connections": max_connections,
                "set_at": time.time(),
            }
            if allowed is not None:
                state.allowed_updates = allowed
            state.webhook_last_error = None
            state.updates_changed.notify_all()
        return _Described(True, "Webhook was set")

    def _delete_webhook(self, bot_id, params, files):
        state = self.state
        with state.updates_changed:
            existed = state.webhook is not None
            state.webhook = None
            state.webhook_last_error = None
            if _flag(params, "drop_pending_updates"):
                state.pending_updates = []
            state.updates_changed.notify_all()
        return _Described(True, "Webhook was deleted" if existed else "Webhook is already deleted")

    def _get_webhook_info(self, bot_id, params, files):
        return self.state.webhook_info()


    # -- bot commands (setMyCommands & co.) ---------------------------------------
    def _commands_key(self, bot_id, params):
        scope = _json_field(params, "scope", "can't parse BotCommandScope") or {"type": "default"}
        if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
            raise BotApiError(400, "can't parse BotCommandScope")
        language = _text_param(params, "language_code")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise BotApiError(400, "invalid language code specified")
        return (bot_id, scope["type"], language)

    def _set_my_commands(self, bot_id, params, files):
        commands = _json_field(params, "commands", "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise BotApiError(400, "can't parse commands JSON object")
        if len(commands) > 100:
            raise BotApiError(400, "too many commands specified")
        clean = []
        for command in commands:
            if not isinstance(command, dict):
                raise BotApiError(400, "can't parse BotCommand")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise BotApiError(400, "BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise BotApiError(400, "BOT_COMMAND_DESCRIPTION_INVALID" if description else "command description is empty")
            clean.append({"command": name, "description": description})
        key = self._commands_key(bot_id, params)
        with self.state.lock:
            self.state.bot_commands[key] = clean
        return True

    def _get_my_commands(self, bot_id, params, files):
        key = self._commands_key(bot_id, params)
        with self.state.lock:
            return [dict(c) for c in self.state.bot_commands.get(key, [])]

    def _delete_my_commands(self, bot_id, params, files):
        key = self._commands_key(bot_id, params)
        with self.state.lock:
            self.state.bot_commands.pop(key, None)
        return True
