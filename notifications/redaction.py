"""Keep secrets out of logs, exceptions, MessageLog and task results.

A Telegram token travels inside every request URL (``/bot<token>/method``),
so anything that may echo a URL (requests' exceptions, urllib3's debug log)
goes through ``redact`` first.
"""

import logging
import re
from urllib.parse import quote, quote_plus

# A bot token as it appears in a URL: "123456:ABC..." or URL-encoded "123456%3AABC...".
_TELEGRAM_TOKEN = re.compile(r"(?<!\d)(\d{3,})(:|%3[Aa])[A-Za-z0-9_-]{10,}")
_known_secrets: set[str] = set()
_MIN_SECRET = 6


def register_secret(secret):
    """Remember a secret, and the forms it can be echoed in: URL-encoded, and
    for a Telegram token its secret half on its own (the bot id before ":" is
    public)."""
    if not secret or len(secret) < _MIN_SECRET:
        return
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    head, sep, tail = secret.partition(":")
    if sep and head.isdigit() and len(tail) >= 10:
        forms.add(tail)
    _known_secrets.update(forms)


def redact(text):
    text = str(text)
    # Longest first: a token is replaced whole before its secret half is.
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return _TELEGRAM_TOKEN.sub(r"\1\2***", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
