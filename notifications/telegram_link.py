"""Linking a user's Telegram chat with a one-time deep link.

``create_link(user)`` makes a random token, stores only its SHA-256 with an
expiry (``TELEGRAM_LINK_TTL_H``, 24 h by default) and returns
``https://t.me/<bot_username>?start=<token>``. Opening it and pressing Start
sends ``/start <token>``; the update is recorded with the token replaced by
its hash (``telegram_updates``), and the bot calls ``consume()``, which links
the chat once: a used, expired or unknown token changes nothing.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import ChannelType, TelegramLinkToken, UserChannelPreference

# token_urlsafe(24): 32 characters of A-Za-z0-9_-, within the deep link's 64.
TOKEN_BYTES = 24


class LinkRefused(Exception):
    """The token cannot link anything; ``str()`` says why, for the person."""


@dataclass
class Linked:
    user: object
    preference: UserChannelPreference
    previous_user: object = None  # who had this chat before, if someone else


def token_hash(token):
    return hashlib.sha256(str(token).encode()).hexdigest()


def create_token(user, now=None):
    now = now or timezone.now()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    TelegramLinkToken.objects.create(
        user=user, token_hash=token_hash(token), created_at=now,
        expires_at=now + timedelta(hours=settings.TELEGRAM_LINK_TTL_H),
    )
    return token


def deep_link(bot_username, token):
    return f"https://t.me/{bot_username}?start={token}"


def create_link(user, bot_username):
    return deep_link(bot_username, create_token(user))


def consume(hashed, chat_id, now=None):
    """Link ``chat_id`` to the token's user; raises LinkRefused."""
    now = now or timezone.now()
    chat_id = str(chat_id)
    with transaction.atomic():
        link = TelegramLinkToken.objects.select_for_update().select_related("user").filter(token_hash=hashed).first()
        if link is None:
            raise LinkRefused(_("This link is not valid. Ask an administrator for a new one."))
        if link.used_at is not None:
            raise LinkRefused(_("This link was already used. Ask an administrator for a new one."))
        if link.expires_at <= now:
            raise LinkRefused(_("This link expired. Ask an administrator for a new one."))
        if not link.user.is_active:
            raise LinkRefused(_("The user of this link is not active."))
        TelegramLinkToken.objects.filter(pk=link.pk).update(used_at=now, used_by_chat=chat_id)
        previous = (
            UserChannelPreference.objects.select_related("user")
            .filter(channel_type=ChannelType.TELEGRAM, channel_user_id=chat_id).exclude(user=link.user).first()
        )
        previous_user = None
        if previous is not None:
            # One chat belongs to one person: the old link would send them someone else's orders.
            previous_user = previous.user
            UserChannelPreference.objects.filter(pk=previous.pk).update(channel_user_id="", is_enabled=False)
        pref, _created = UserChannelPreference.objects.get_or_create(user=link.user, channel_type=ChannelType.TELEGRAM)
        pref.channel_user_id = chat_id
        pref.is_enabled = True
        pref.is_reachable = True
        pref.unreachable_reason = ""
        pref.unreachable_since = None
        pref.save()
        return Linked(link.user, pref, previous_user)


def unlink(chat_id):
    """Forget the chat: the preference keeps its choices but has no address.
    Returns the number of preferences changed."""
    return UserChannelPreference.objects.filter(
        channel_type=ChannelType.TELEGRAM, channel_user_id=str(chat_id)
    ).update(channel_user_id="", is_enabled=False, updated_at=timezone.now())


def preference_for_chat(chat_id):
    """The linked, enabled TELEGRAM preference of a chat (with its user), or None."""
    return (
        UserChannelPreference.objects.select_related("user")
        .filter(channel_type=ChannelType.TELEGRAM, channel_user_id=str(chat_id), user__is_active=True)
        .order_by("-is_enabled", "-updated_at").first()
    )


def bot_username():
    """The bot's @username from getMe (raises ChannelError / ConfigurationError)."""
    from .channels import registry

    return registry.get(ChannelType.TELEGRAM).build().get_me()["username"]
