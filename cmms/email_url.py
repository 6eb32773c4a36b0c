"""``EMAIL_URL`` -> Django's ``EMAIL_*`` settings (12-factor, like DATABASE_URL).

Our own dozen lines rather than dj-email-url: there ``smtps://`` means
STARTTLS, while operators (and this project's docs) read it as implicit TLS
on port 465, and it does not know ``smtp+tls://``.

    smtp://127.0.0.1:1025              plain (a local relay or the capture server)
    smtp+tls://user:pass@host:587      STARTTLS (also submission://)
    smtps://user:pass@host:465         implicit TLS
    ...?timeout=5                      EMAIL_TIMEOUT in seconds
"""

from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = {
    "smtp": (False, False, 25),
    "smtp+tls": (True, False, 587),
    "submission": (True, False, 587),
    "smtps": (False, True, 465),
    "smtp+ssl": (False, True, 465),
}


def parse(url):
    """A dict of EMAIL_* settings; ValueError (without the password) for a bad URL."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"EMAIL_URL: unknown scheme {scheme!r}; use one of {', '.join(sorted(SCHEMES))}")
    use_tls, use_ssl, default_port = SCHEMES[scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError("EMAIL_URL: the port is not a number") from None
    if not parts.hostname:
        raise ValueError("EMAIL_URL: the host is missing")
    config = {
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_USE_SSL": use_ssl,
    }
    query = parse_qs(parts.query)
    if "timeout" in query:
        config["EMAIL_TIMEOUT"] = float(query["timeout"][-1])
    return config
