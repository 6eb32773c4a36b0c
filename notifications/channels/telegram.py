"""Telegram Bot API channel: HTML messages with optional inline buttons.

Only talks HTTP. Error classification follows the Bot API's answers
(shared reference: channel-apis.md); the worker decides what to do with them.
"""

import html
import re

import requests
from django.utils.translation import gettext as _

from ..redaction import redact, register_secret
from . import deadline
from . import text as text_utils
from .base import Channel, ChannelError, ChatMigrated, ConfigurationError
from .registry import ChannelSpec, InvalidAddress, register

MAX_TEXT = 4096  # characters after entity parsing (Telegram counts UTF-16 units)
MAX_CALLBACK_DATA_BYTES = 64
CONNECT_TIMEOUT_S = 3.05

# Answers that mean the address is dead, whatever we send.
_UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "chat_id is empty", "group chat was deleted")


def escape(text):
    """Escape user text for parse_mode=HTML (only <, > and & are special)."""
    return html.escape(str(text), quote=False)


def visible_length(text):
    return len(text.encode("utf-16-le")) // 2


def split_text(text, limit):
    """Chunks of at most ``limit`` visible characters (UTF-16 units)."""
    return text_utils.split_text(text, limit, measure=visible_length)


def retry_after_seconds(value):
    """The 429's retry_after as seconds, or None when it is missing or not a
    number at all. An absurd number (years, 1e12, inf) is returned as it is:
    the worker caps it and says so; only NaN and negatives are dropped."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds != seconds or seconds <= 0:
        return None
    return seconds


def inline_keyboard(actions, per_row=3):
    """Turn ``[{'text', 'callback_data'}]`` into Telegram's reply_markup."""
    buttons = []
    for action in actions:
        data = str(action["callback_data"])
        if not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise ValueError(
                f"callback_data must be 1-{MAX_CALLBACK_DATA_BYTES} bytes, got {len(data.encode())}: {data[:80]!r}"
            )
        buttons.append({"text": str(action["text"]), "callback_data": data})
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    return {"inline_keyboard": rows} if rows else None


def render(message):
    """The HTML texts to send for an OutgoingMessage: a bold title line with the
    type's emoji, the body, and an optional link; split when too long."""
    header_plain = " ".join(p for p in (message.emoji, message.title) if p)
    header_html = " ".join(p for p in (message.emoji, f"<b>{escape(message.title)}</b>" if message.title else "") if p)
    footer_plain = footer_html = ""
    if message.link:
        label = message.link_label or message.link
        footer_plain = "\n\n→ " + label
        footer_html = f'\n\n<a href="{html.escape(message.link, quote=True)}">→ {escape(label)}</a>'
    head_len = visible_length(header_plain + "\n\n") if header_plain else 0
    body_chunks = split_text(message.body, MAX_TEXT - head_len - visible_length(footer_plain))
    texts = []
    for i, chunk in enumerate(body_chunks):
        text = escape(chunk)
        if i == 0 and header_html:
            text = f"{header_html}\n\n{text}" if text else header_html
        if i == len(body_chunks) - 1:
            text += footer_html
        texts.append(text)
    return texts


class TelegramChannel(Channel):
    channel_type = "TELEGRAM"
    sends_in_chunks = True  # send() takes start / before_chunk / after_chunk

    def __init__(self, token, api_url="https://api.telegram.org", timeout=10.0, session=None, total_timeout=None):
        if not token:
            raise ConfigurationError(_(
                "Telegram is not configured: set TELEGRAM_BOT_TOKEN (environment or .env) or run "
                "`manage.py setup_telegram_bot --token`."
            ))
        register_secret(token)
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        # The whole call, connection to last byte (a server dripping its answer
        # would otherwise hold the thread: requests' timeout is per read).
        self.total_timeout = total_timeout or CONNECT_TIMEOUT_S + timeout
        self.session = deadline.install(session or requests.Session())
        self.session.headers.setdefault("User-Agent", "cmms-omnichannel-bot")

    def __repr__(self):
        return f"<TelegramChannel {self.api_url} bot{self._token.split(':')[0]}:***>"

    # -- public API ---------------------------------------------------------
    def send(self, address, message, start=0, before_chunk=None, after_chunk=None):
        """Send an OutgoingMessage to chat ``address``; returns the message id
        (comma-separated ids when a long text was split).

        A long text goes out in chunks. ``start`` skips the chunks already
        delivered by an earlier attempt; ``before_chunk(i)`` runs before chunk
        ``i`` is sent (the worker paces each chunk within the chat's limit and
        may raise to stop), ``after_chunk(i, message_id)`` after it was
        delivered (the worker records the progress), so that a retry resumes
        at the first unsent chunk and each chunk reaches the chat once."""
        markup = inline_keyboard(message.actions) if message.actions else None
        texts = render(message)
        ids = []
        for i in range(start, len(texts)):
            if before_chunk:
                before_chunk(i)
            params = {"chat_id": address, "text": texts[i], "parse_mode": "HTML"}
            params["link_preview_options"] = {"is_disabled": True}
            if message.priority == "low":
                params["disable_notification"] = True
            if markup and i == len(texts) - 1:
                params["reply_markup"] = markup
            result = self.call("sendMessage", **params)
            message_id = self._message_id(result)
            ids.append(message_id)
            if after_chunk:
                after_chunk(i, message_id)
        return ",".join(ids)

    @staticmethod
    def _message_id(result):
        """A 200 whose result carries no message id is not a success, and the
        message may have been delivered all the same."""
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if isinstance(message_id, bool) or not isinstance(message_id, (int, str)) or not str(message_id).strip():
            raise ChannelError(
                _("Telegram: HTTP 200 without a message id (%(result)s); the message may have been delivered")
                % {"result": redact(repr(result))[:100]},
                maybe_delivered=True,
            )
        return str(message_id)

    def send_text(self, chat_id, text, reply_markup=None):
        params = {"chat_id": chat_id, "text": text, "parse_mode": "HTML"}
        if reply_markup:
            params["reply_markup"] = reply_markup
        return self.call("sendMessage", **params)

    def get_me(self):
        return self.call("getMe")

    def call(self, method, **params):
        url = f"{self.api_url}/bot{self._token}/{method}"
        try:
            response = deadline.post(
                self.session, url, self.total_timeout, json=params, timeout=(CONNECT_TIMEOUT_S, self.timeout)
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise ChannelError(_("Telegram: connection timed out (%(error)s)") % {"error": redact(exc)}) from None
        except (requests.exceptions.ReadTimeout, deadline.DeadlineExceeded) as exc:
            seconds = exc.seconds if isinstance(exc, deadline.DeadlineExceeded) else self.timeout
            raise ChannelError(
                _("Telegram: no complete answer within %(seconds)g s (the message may have been delivered)")
                % {"seconds": seconds},
                maybe_delivered=True,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ChannelError(
                _("Telegram: connection failed (%(error)s)") % {"error": f"{type(exc).__name__}: {redact(exc)}"}
            ) from None
        return self._result(response)

    # -- answers ------------------------------------------------------------
    def _result(self, response):
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if 200 <= status < 300:
                # Something between us and Telegram (a proxy, a captive portal)
                # answered; the request may have reached the Bot API.
                raise ChannelError(
                    _("Telegram: HTTP %(status)s without a Bot API answer; the message may have been delivered")
                    % {"status": status},
                    maybe_delivered=True, code=status,
                )
            if status >= 500:
                raise ChannelError(_("Telegram: HTTP %(status)s from the server") % {"status": status}, code=status)
            raise ConfigurationError(
                _("Telegram: unexpected HTTP %(status)s without a Bot API answer; check TELEGRAM_API_URL")
                % {"status": status},
                code=status,
            )
        if data.get("ok"):
            return data.get("result")
        try:
            code = int(data.get("error_code") or status)
        except (TypeError, ValueError, OverflowError):
            code = status
        description = redact(data.get("description") or f"HTTP {status}")
        parameters = data.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        text = f"Telegram {code}: {description}"
        if code == 429:
            raise ChannelError(text, retry_after=retry_after_seconds(parameters.get("retry_after")), code=code)
        if parameters.get("migrate_to_chat_id"):
            raise ChatMigrated(text, parameters["migrate_to_chat_id"])
        if code in (401, 404):
            raise ConfigurationError(
                _("%(answer)s — the bot token is wrong or was revoked; check TELEGRAM_BOT_TOKEN") % {"answer": text},
                code=code,
            )
        if code == 403:
            raise ChannelError(text, unreachable=True, code=code)
        if code == 400 and any(marker in description.lower() for marker in _UNREACHABLE_400):
            raise ChannelError(text, unreachable=True, code=code)
        if code >= 500:
            raise ChannelError(text, code=code)
        raise ChannelError(text, permanent=True, code=code)


# -- registration ---------------------------------------------------------------
_CHAT_ID = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")


def normalize_chat_id(address):
    """A numeric chat id (negative for groups) or a public @channelusername."""
    chat_id = str(address or "").strip()
    if not _CHAT_ID.match(chat_id):
        raise InvalidAddress(_("Invalid Telegram chat_id %(chat_id)r.") % {"chat_id": str(address or "")})
    return chat_id


def _bot_id(token):
    head, sep, _rest = token.partition(":")
    return head if sep and head.isdigit() else ""


def _token():
    from django.conf import settings

    from ..channel_secrets import channel_secret

    return channel_secret("TELEGRAM", settings.TELEGRAM_BOT_TOKEN)


def _build():
    from django.conf import settings

    return TelegramChannel(token=_token(), api_url=settings.TELEGRAM_API_URL, timeout=settings.TELEGRAM_TIMEOUT_S,
                           total_timeout=settings.TELEGRAM_TOTAL_TIMEOUT_S)


register(
    ChannelSpec(
        channel_type="TELEGRAM",
        build=_build,
        normalize_address=normalize_chat_id,
        requests_needed=lambda message: len(render(message)),
        account_secret=_token,
        account_id_from_secret=_bot_id,
    )
)


# -- the two-way bot: Bot API methods beyond sending -------------------------------
# Plain functions over TelegramChannel.call(), so the adapter's send path stays
# as it is; the bot (cmms.telegram_bot) and the poller use them.

# Edit answers that mean "nothing left to do", not a failure (Grafana OnCall
# treats them the same way): the message already shows that, or it is gone.
_EXPECTED_EDIT_ERRORS = ("message is not modified", "message to edit not found", "message can't be edited")


def is_expected_edit_error(exc):
    return isinstance(exc, ChannelError) and any(m in str(exc).lower() for m in _EXPECTED_EDIT_ERRORS)


def answer_callback_query(channel, callback_query_id, text="", show_alert=False):
    params = {"callback_query_id": str(callback_query_id)}
    if text:
        params["text"] = str(text)[:200]
    if show_alert:
        params["show_alert"] = True
    return channel.call("answerCallbackQuery", **params)


def edit_message_text(channel, chat_id, message_id, text, reply_markup=None):
    """Edit with HTML text; no ``reply_markup`` removes the buttons."""
    params = {"chat_id": chat_id, "message_id": int(message_id), "text": text, "parse_mode": "HTML",
              "link_preview_options": {"is_disabled": True}}
    if reply_markup:
        params["reply_markup"] = reply_markup
    return channel.call("editMessageText", **params)


def edit_message_reply_markup(channel, chat_id, message_id, reply_markup=None):
    params = {"chat_id": chat_id, "message_id": int(message_id)}
    if reply_markup:
        params["reply_markup"] = reply_markup
    return channel.call("editMessageReplyMarkup", **params)


def set_my_commands(channel, commands, language_code=""):
    """``commands``: [(command, description)]."""
    params = {"commands": [{"command": c, "description": d} for c, d in commands]}
    if language_code:
        params["language_code"] = language_code
    return channel.call("setMyCommands", **params)


def set_webhook(channel, url, secret_token, allowed_updates):
    return channel.call("setWebhook", url=url, secret_token=secret_token, allowed_updates=list(allowed_updates))


def delete_webhook(channel):
    return channel.call("deleteWebhook")


def get_webhook_info(channel):
    return channel.call("getWebhookInfo")


def get_updates(channel, offset, timeout, allowed_updates, limit=100):
    """Long poll; the channel's HTTP timeout must exceed ``timeout``."""
    return channel.call("getUpdates", offset=int(offset), timeout=int(timeout), limit=int(limit),
                        allowed_updates=list(allowed_updates))
