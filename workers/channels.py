"""Channel adapters, built once per process from settings and ChannelConfig."""

import threading

from django.conf import settings

from notifications import crypto
from notifications.channels import ConfigurationError
from notifications.channels.telegram import TelegramChannel
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


def reset():
    _local.channels = {}
