"""Channel adapters, built once per process from settings and ChannelConfig."""

import hashlib
import threading

from django.conf import settings

from notifications import crypto
from notifications.channels import ConfigurationError
from notifications.channels.telegram import TelegramChannel, render
from notifications.models import ChannelConfig

_local = threading.local()


def telegram_token():
    """TELEGRAM_BOT_TOKEN wins; else the token stored (encrypted) by
    ``setup_telegram_bot --token``."""
    if settings.TELEGRAM_BOT_TOKEN:
        return settings.TELEGRAM_BOT_TOKEN
    stored = ChannelConfig.objects.filter(channel_type="TELEGRAM").values_list("secret_encrypted", flat=True).first()
    return crypto.decrypt(stored) if stored else ""


def build(channel_type):
    if channel_type == "TELEGRAM":
        return TelegramChannel(
            token=telegram_token(), api_url=settings.TELEGRAM_API_URL, timeout=settings.TELEGRAM_TIMEOUT_S
        )
    raise ConfigurationError(f"No delivery adapter for channel {channel_type}.", permanent=True)


def get(channel_type):
    """One adapter (and so one HTTP connection pool) per thread and channel:
    requests.Session is not documented as thread-safe."""
    cache = getattr(_local, "channels", None)
    if cache is None:
        cache = _local.channels = {}
    if channel_type not in cache:
        cache[channel_type] = build(channel_type)
    return cache[channel_type]


def account_id(channel_type):
    """Which provider account sends (rate limits count per account): a
    Telegram bot's numeric id, the part of the token before ':' that is not
    secret. Cached with the adapter."""
    cache = getattr(_local, "accounts", None)
    if cache is None:
        cache = _local.accounts = {}
    if channel_type not in cache:
        secret = telegram_token() if channel_type == "TELEGRAM" else ""
        head, sep, _rest = secret.partition(":")
        cache[channel_type] = head if sep and head.isdigit() else hashlib.sha256(secret.encode()).hexdigest()[:16]
    return cache[channel_type]


def requests_needed(channel_type, message):
    """How many provider calls one message takes (a long Telegram text is split)."""
    if channel_type == "TELEGRAM":
        return len(render(message))
    return 1


def reset():
    _local.channels = {}
    _local.accounts = {}
