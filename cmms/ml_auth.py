"""Bearer tokens for ML clients.

A token is ``mlk_<prefix>.<secret>``. The prefix is not secret: it finds the
client row. Only SHA-256 of the whole token is stored (the secret is 256 random
bits, so a slow password hash would add cost and no safety), and it is
compared in constant time.
"""

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

TOKEN_SCHEME = "mlk_"
# What new_token() makes; anything else (a NUL byte, non-ASCII) is refused
# before it reaches the database.
_TOKEN_SHAPE = re.compile(r"mlk_([0-9a-f]{1,16})\.[A-Za-z0-9_-]{1,200}")


def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def new_token():
    """Returns (token, prefix, hash)."""
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_SCHEME}{prefix}.{secrets.token_urlsafe(32)}"
    return token, prefix, _hash(token)


def authenticate(authorization_header):
    """The active MLClient for an ``Authorization: Bearer <token>`` header, or None."""
    from .models import MLClient

    scheme, _sep, token = (authorization_header or "").partition(" ")
    token = token.strip()
    shape = _TOKEN_SHAPE.fullmatch(token)
    if scheme.lower() != "bearer" or shape is None:
        return None
    prefix = shape.group(1)
    client = MLClient.objects.filter(token_prefix=prefix, is_active=True).first()
    # Hash and compare even when no client matched, so the answer takes as
    # long for an unknown prefix as for a wrong secret.
    expected = client.token_hash if client else _hash("")
    if not hmac.compare_digest(_hash(token), expected) or client is None:
        return None
    now = timezone.now()
    # At most one write a minute per client: a busy pipeline does not make its row hot.
    MLClient.objects.filter(pk=client.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(minutes=1))
    ).update(last_used_at=now)
    return client
