"""Twilio's request signature (``X-Twilio-Signature``), as twilio-python's
RequestValidator computes it: base64(HMAC-SHA1(auth token, the full URL
followed by every POST parameter's name and value, sorted by name)).

Our own dozen lines rather than the ``twilio`` package for one function; the
sandbox signs with its own implementation, so each checks the other.
"""

import base64
import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


def compute(auth_token, url, params):
    """The signature of a form POST to ``url`` with ``params`` ({name: value
    or [values]})."""
    data = url
    for name in sorted(set(params)):
        values = params[name]
        if not isinstance(values, (list, tuple)):
            values = [values]
        for value in sorted({str(v) for v in values}):
            data += f"{name}{value}"
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url):
    """The URL as given, and with the port added or removed: Twilio signs the
    URL as it was configured, and a proxy may add or drop a default port."""
    parts = urlsplit(url)
    variants = [url]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if parts.port is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    elif parts.scheme in _DEFAULT_PORTS:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{_DEFAULT_PORTS[parts.scheme]}")))
    return variants


def is_valid(auth_token, url, params, signature):
    """True when ``signature`` matches ``url`` (with or without its port) and
    ``params``; compared in constant time."""
    if not auth_token or not signature:
        return False
    valid = False
    for candidate in url_variants(url):
        # Every variant is compared, so the time does not tell which one matched.
        valid |= hmac.compare_digest(compute(auth_token, candidate, params).encode(), str(signature).encode())
    return valid
