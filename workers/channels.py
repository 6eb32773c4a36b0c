"""Channel adapters, built once per process and thread from the channel
registry (notifications.channels.registry)."""

import hashlib
import threading

from notifications.channels import ConfigurationError, registry

_local = threading.local()


def telegram_token():
    """TELEGRAM_BOT_TOKEN wins; else the token stored (encrypted) by
    ``setup_telegram_bot --token``."""
    return registry.get("TELEGRAM").account_secret()


def build(channel_type):
    if not registry.is_registered(channel_type) or registry.get(channel_type).build is None:
        raise ConfigurationError(f"No delivery adapter for channel {channel_type}.", permanent=True)
    return registry.get(channel_type).build()


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
    """Which provider account sends (rate limits count per account): an id
    that is not secret (a Telegram bot's numeric id), else a hash of the
    secret. Cached with the adapter."""
    cache = getattr(_local, "accounts", None)
    if cache is None:
        cache = _local.accounts = {}
    if channel_type not in cache:
        spec = registry.get(channel_type) if registry.is_registered(channel_type) else None
        secret = spec.account_secret() if spec else ""
        public = spec.account_id_from_secret(secret) if spec and spec.account_id_from_secret else ""
        cache[channel_type] = public or hashlib.sha256(secret.encode()).hexdigest()[:16]
    return cache[channel_type]


def requests_needed(channel_type, message):
    """How many provider calls one message takes (a long Telegram text is split)."""
    if not registry.is_registered(channel_type):
        return 1
    return registry.get(channel_type).requests_needed(message)


def prepare(log, message):
    """The channel's last word before sending (registry ``prepare`` hook)."""
    spec = registry.get(log.channel_type) if registry.is_registered(log.channel_type) else None
    return spec.prepare(log, message) if spec and spec.prepare else message


def reset():
    _local.channels = {}
    _local.accounts = {}
