"""The contract every channel adapter keeps.

A channel is given an ``OutgoingMessage`` and an address, sends it, and returns
the provider's message id; or raises ``ChannelError``. No database and no
Celery in here: ``workers`` decides what an error means for the row.
"""

from dataclasses import dataclass, field


class ChannelError(Exception):
    """A send that did not succeed.

    ``permanent``: retrying the same message will not help.
    ``unreachable``: the address itself is dead (blocked bot, unknown chat):
    the worker marks the user's preference so nobody keeps paying for it.
    ``retry_after``: seconds the provider asked us to wait (HTTP 429).
    ``maybe_delivered``: the request left and no answer came back (read
    timeout); the provider may have delivered it.
    ``opted_out``: the recipient asked not to get messages (SMS STOP): the
    worker records the opt-out on the preference until they opt in again.
    ``scope``: which rate-limit scope ``retry_after`` applies to ("recipient"
    or "account"), when the provider says (WhatsApp's error codes do); None
    leaves it to the RATE_LIMIT["RETRY_AFTER_SCOPE"] setting.
    """

    def __init__(
        self, message, *, permanent=False, unreachable=False, retry_after=None, maybe_delivered=False, code=None,
        opted_out=False, scope=None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent or unreachable or opted_out
        self.unreachable = unreachable
        self.opted_out = opted_out
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered
        self.code = code
        self.scope = scope

    def __str__(self):
        return self.message


class ConfigurationError(ChannelError):
    """Our side is misconfigured (missing or revoked token): not the recipient's
    fault, so the address is never marked, and the message is retried in case
    an operator fixes the configuration."""


class ChatMigrated(ChannelError):
    """Telegram upgraded a group to a supergroup: resend to ``new_chat_id``."""

    def __init__(self, message, new_chat_id):
        super().__init__(message)
        self.new_chat_id = str(new_chat_id)


class SkipDelivery(Exception):
    """Raised by a channel's ``prepare`` hook: this message must not be sent
    on this channel (WhatsApp outside the 24-hour window without an approved
    template). The row becomes SKIPPED with the message as its reason."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str = "application/octet-stream"


@dataclass
class OutgoingMessage:
    title: str
    body: str
    emoji: str = ""
    priority: str = "normal"
    actions: list = field(default_factory=list)
    link: str = ""
    link_label: str = ""
    # The message type's key: channels with a rendering per type (SMS) use it.
    message_type: str = ""
    # Filled by a channel's prepare hook (e.g. WhatsApp: text or template).
    extras: dict = field(default_factory=dict)
    # What a channel's prepare() hook gathered in the worker before the send
    # (the adapter itself reads no database): files to attach (a work order's
    # PDF), and facts for its templates (message type, an unsubscribe link).
    attachments: list = field(default_factory=list)
    context: dict = field(default_factory=dict)
    # Who and which MessageLog row it is for (the in-app push names both).
    user_id: int | None = None
    message_id: int | None = None


class Channel:
    channel_type = ""

    def send(self, address, message):  # pragma: no cover - interface
        raise NotImplementedError
