"""Sandbox options: defaults, and validation of partial updates."""

import copy
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULTS", "chat_key", "defaults", "normalize"]

DEFAULTS = {
    # Faults
    "latency_ms": 0.0,  # sleep before handling every Bot API call
    "latency_jitter_ms": 0.0,  # plus a uniform random 0..jitter
    "fail_rate": 0.0,  # fraction answered 502 (HTML body) without delivering
    "timeout_rate": 0.0,  # fraction delivered, then answered after timeout_delay_s
    "timeout_delay_s": 30.0,
    "seed": None,  # seed of the random.Random behind the fault draws
    "force_429": None,  # {"scope": "bot" | chat_id, "retry_after": N[, "duration_s": S, "answer_retry_after": X]}
    # Strict provider: every byte of a Bot API answer sent this many seconds
    # apart (0: at once). A client with only a per-read timeout hangs on it.
    "answer_drip_s": 0.0,
    # Flood limits (Telegram FAQ: ~30 msg/s per bot, ~1 msg/s per chat, 20 msg/min per group)
    "limits_enabled": True,
    "bot_rate": 30.0,
    "bot_burst": 10,
    # Strict provider: besides the pace above, at most bot_rate x bot_window_s
    # messages in ANY window of bot_window_s seconds (0: off). A 429 from it
    # blocks the bot for its retry_after; requests inside it are counted.
    "bot_window_s": 0.0,
    "chat_rate": 1.0,
    "chat_burst": 3,
    "group_per_min": 20.0,
    "group_burst": 3,
    # Identity and validation
    "bot_username": "cmms_sandbox_bot",
    "bot_first_name": "CMMS Sandbox Bot",
    "revoked_tokens": [],
    "strict_chats": False,  # True: only chats set "ok" through the control API exist
    "strict_html_entities": True,  # False: keep unknown entities and bare "&" as text, like Telegram
    "callback_answer_timeout_s": 15.0,
    # The chat page: "es" or "en" ("" = LANGUAGE_CODE, else es), and the IANA
    # time zone of its times ("" = TIME_ZONE, else America/Santiago).
    "language": "",
    "time_zone": "",
    "max_stored_messages": 200_000,  # beyond this the oldest records are forgotten (long benchmarks)
    # Webhook delivery
    "webhook_max_attempts": 3,
    "webhook_retry_delay_s": 0.5,
    "webhook_timeout_s": 5.0,
}

_FLOATS = {
    "latency_ms", "latency_jitter_ms", "timeout_delay_s", "answer_drip_s", "bot_window_s", "bot_rate", "chat_rate",
    "group_per_min",
    "callback_answer_timeout_s", "webhook_retry_delay_s", "webhook_timeout_s",
}
_RATES = {"fail_rate", "timeout_rate"}
_INTS = {"bot_burst", "chat_burst", "group_burst", "webhook_max_attempts", "max_stored_messages"}
_BOOLS = {"limits_enabled", "strict_chats", "strict_html_entities"}
_STRINGS = {"bot_username", "bot_first_name"}


def defaults():
    return copy.deepcopy(DEFAULTS)


def _bool(name, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be a boolean")


def _number(name, value, kind):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0")
    return number


def _force_429(value):
    if value is None:
        return None
    if not isinstance(value, dict) or "retry_after" not in value:
        raise ValueError('force_429 must be null or {"scope": "bot" | chat_id, "retry_after": N}')
    scope = value.get("scope", "bot")
    if scope != "bot":
        scope = chat_key(scope)
        if scope is None:
            raise ValueError('force_429.scope must be "bot" or a chat id')
    retry_after = _number("force_429.retry_after", value["retry_after"], float)
    duration = _number("force_429.duration_s", value.get("duration_s", retry_after), float)
    force = {"scope": scope, "retry_after": retry_after, "duration_s": duration}
    if value.get("answer_retry_after") is not None:
        # An absurd answer, sent as it is (315360000, 1e12): what a broken or
        # hostile provider may say while the real block lasts duration_s.
        force["answer_retry_after"] = _number("force_429.answer_retry_after", value["answer_retry_after"], float)
    return force


def _time_zone(value):
    if value in (None, ""):
        return ""
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone {value!r} is not an IANA time zone (e.g. America/Santiago)") from None
    return str(value)


def chat_key(value):
    """Normalise a chat id: an int, or "@username" (lower case); None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("@") and len(text) > 1:
            return text.lower()
        try:
            return int(text)
        except ValueError:
            return None
    return None


def normalize(changes):
    """Validate a partial update; returns the cleaned dict or raises ValueError."""
    clean = {}
    for name, value in changes.items():
        if name not in DEFAULTS:
            raise ValueError(f"unknown option: {name}")
        if name in _FLOATS:
            clean[name] = _number(name, value, float)
        elif name in _RATES:
            rate = _number(name, value, float)
            if rate > 1:
                raise ValueError(f"{name} must be between 0 and 1")
            clean[name] = rate
        elif name in _INTS:
            clean[name] = _number(name, value, int)
        elif name in _BOOLS:
            clean[name] = _bool(name, value)
        elif name in _STRINGS:
            clean[name] = str(value)
        elif name == "language":
            if value not in ("", "es", "en"):
                raise ValueError('language must be "es", "en" or ""')
            clean[name] = value
        elif name == "time_zone":
            clean[name] = _time_zone(value)
        elif name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
                raise ValueError("seed must be null, an integer or a string")
            clean[name] = value
        elif name == "revoked_tokens":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple, set)) or not all(isinstance(t, str) for t in value):
                raise ValueError("revoked_tokens must be a list of tokens")
            clean[name] = sorted(set(value))
        elif name == "force_429":
            clean[name] = _force_429(value)
    return clean
