"""Every delivery channel, registered once.

A channel module (``notifications/channels/<name>.py``) ends with one
``register(ChannelSpec(...))``: how to build its adapter from settings, how an
address is validated and normalized, what a message costs in provider calls,
and which account sends (rate limits count per account). The router and
``workers/`` look channels up here; nothing outside a channel module branches
on a channel type.

Adding a channel: write its module, add it to ``CHANNEL_MODULES``, give it a
queue in ``settings.NOTIFICATION_QUEUES`` and a stand-in in ``sandbox/``.
"""

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .base import Channel, OutgoingMessage

CHANNEL_MODULES = [
    "notifications.channels.telegram",
    "notifications.channels.sms",
    "notifications.channels.email",
    "notifications.channels.in_app",
    "notifications.channels.whatsapp",
]


class InvalidAddress(ValueError):
    """An address the channel can never deliver to (a malformed chat id, phone
    number or e-mail address). Its message is translated and shown as is to
    the person who typed the address and in MessageLog."""


def _strip(address):
    return str(address or "").strip()


def _one(_message):
    return 1


def _no_secret():
    return ""


@dataclass(frozen=True)
class ChannelSpec:
    channel_type: str
    # Builds the adapter from settings (and a secret stored by a setup
    # command). None: the channel has no provider (the in-app inbox row is the
    # delivery), so the router records it SENT when it writes it.
    build: Callable[[], Channel] | None = None
    # Returns the canonical address (E.164, a lower-cased e-mail, a chat id)
    # or raises InvalidAddress.
    normalize_address: Callable[[str], str] = _strip
    # Provider calls one message takes (a long Telegram text is split).
    requests_needed: Callable[[OutgoingMessage], int] = _one
    # The sending account's secret (a token); rate limits count per account,
    # keyed by a non-secret id derived from it.
    account_secret: Callable[[], str] = _no_secret
    # Turns a secret into the account's public id (a Telegram bot id is the
    # token's part before ':'); None: a hash of the secret.
    account_id_from_secret: Callable[[str], str] | None = None
    # Called by the worker before sending, with the MessageLog row and its
    # OutgoingMessage: returns the message to send (it may read the database,
    # e.g. WhatsApp's 24-hour window and templates) or raises SkipDelivery.
    prepare: Callable | None = None
    # Called by the router, inside its transaction, with the MessageLog rows it
    # just created for this channel (the in-app inbox stores its entries).
    on_write: Callable[[list], None] | None = None
    # Off-shift holds (quiet hours) apply to this channel; the in-app inbox is
    # never held: it wakes nobody, and the row is what the user reads later.
    holdable: bool = True

    @property
    def delivered_on_write(self):
        return self.build is None


_specs = {}
_lock = threading.Lock()
_loaded = False


def register(spec):
    _specs[spec.channel_type] = spec
    return spec


def _load():
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for module in CHANNEL_MODULES:
                importlib.import_module(module)
            _loaded = True


def get(channel_type):
    """The spec of a registered channel; KeyError for one without an adapter."""
    _load()
    return _specs[str(channel_type)]


def is_registered(channel_type):
    _load()
    return str(channel_type) in _specs


def channel_types():
    _load()
    return set(_specs)


def normalize_address(channel_type, address):
    """The canonical form of ``address`` for ``channel_type``; raises
    InvalidAddress. A channel without an adapter accepts any address."""
    if not is_registered(channel_type):
        return _strip(address)
    return get(channel_type).normalize_address(address)
