"""Encryption for secrets stored in the database (Fernet: AES + HMAC).

The key comes from FIELD_ENCRYPTION_KEY, or is derived from SECRET_KEY, so a
database dump alone does not reveal a stored token.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet():
    material = settings.FIELD_ENCRYPTION_KEY or settings.SECRET_KEY
    key = base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest())
    return Fernet(key)


def encrypt(plaintext):
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext):
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ValueError("Stored secret cannot be decrypted: was SECRET_KEY or FIELD_ENCRYPTION_KEY changed?") from None
