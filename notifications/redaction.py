"""Keep secrets out of logs, exceptions, MessageLog and task results.

A Telegram token travels inside every request URL (``/bot<token>/method``),
so anything that may echo a URL (requests' exceptions, urllib3's debug log)
goes through ``redact`` first.
"""

import logging
import re

_TELEGRAM_TOKEN = re.compile(r"(?<!\d)(\d{3,}):[A-Za-z0-9_-]{10,}")
_known_secrets: set[str] = set()


def register_secret(secret):
    if secret and len(secret) >= 6:
        _known_secrets.add(secret)


def redact(text):
    text = str(text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _TELEGRAM_TOKEN.sub(r"\1:***", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
