"""Small builders for test data (plain functions, no factory library)."""

import itertools

from django.contrib.auth import get_user_model

from notifications.models import ChannelType, UserChannelPreference

_seq = itertools.count(1)


def make_user(role="OPERATOR", telegram=None, in_app=False, **fields):
    n = next(_seq)
    user = get_user_model().objects.create(username=fields.pop("username", f"user{n}"), role=role, **fields)
    if telegram is not None:
        UserChannelPreference.objects.create(user=user, channel_type=ChannelType.TELEGRAM, channel_user_id=str(telegram))
    if in_app:
        UserChannelPreference.objects.create(user=user, channel_type=ChannelType.IN_APP)
    return user
