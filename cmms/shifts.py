"""Shifts and quiet hours: who is on shift, and what waits for them.

A ``ShiftPattern`` (a user's own, else their site's) lists weekly on-shift
windows in a time zone. ``held_until`` is the hold decider registered with
``notifications.holds``: a message below the pattern's override priority
(critical by default) for someone off shift is written HELD until their
next shift starts. ``release_held_messages`` (beat) sends what came due: one
message alone as it was, several as one digest per user and channel
("3 avisos mientras estabas fuera de turno"), each held row pointing at the
digest that carried it.

Issue 9's ``/silencio`` can register its own decider the same way (a
preference's ``muted_until``): the router keeps the latest hold.
"""

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from notifications import dispatch, message_types
from notifications.models import PRIORITY_RANK, MessageLog, MessageStatus

from . import messages
from .models import ShiftPattern

logger = logging.getLogger(__name__)
DIGEST_TYPE = "off_shift_digest"
CHUNK = 900  # SQLite's bound-parameter limit is the tightest we meet

message_types.register(message_types.MessageType(DIGEST_TYPE, "🌙", "alerts", "normal", "Off-shift digest"))


def _zone(pattern):
    try:
        return ZoneInfo(pattern.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("Shift pattern %s has an unknown time zone %r; using UTC.", pattern.pk, pattern.time_zone)
        return ZoneInfo("UTC")


def next_shift_start(pattern, at, windows=None):
    """None when ``at`` falls inside a window (on shift) or the pattern has
    no window; else the start of the next window."""
    windows = list(pattern.windows.all()) if windows is None else windows
    if not windows:
        return None
    zone = _zone(pattern)
    local = at.astimezone(zone)
    upcoming = []
    for offset in range(-1, 8):
        day = local.date() + timedelta(days=offset)
        for w in windows:
            if w.weekday != day.weekday():
                continue
            starts = datetime.combine(day, w.starts, zone)
            ends = datetime.combine(day + timedelta(days=1 if w.ends <= w.starts else 0), w.ends, zone)
            if starts <= local < ends:
                return None
            if starts > local:
                upcoming.append(starts)
    return min(upcoming) if upcoming else None


def patterns_for(user_ids):
    """{user_id: ShiftPattern} (their own, else their site's), windows prefetched."""
    user_ids = list(user_ids)
    if not user_ids or not ShiftPattern.objects.exists():
        return {}
    result = {}
    site_patterns = {p.site: p for p in ShiftPattern.objects.filter(user__isnull=True).prefetch_related("windows")}
    for start in range(0, len(user_ids), CHUNK):
        chunk = user_ids[start:start + CHUNK]
        own = {p.user_id: p for p in ShiftPattern.objects.filter(user_id__in=chunk).prefetch_related("windows")}
        sites = dict(get_user_model().objects.filter(pk__in=chunk).values_list("pk", "site")) if site_patterns else {}
        for user_id in chunk:
            pattern = own.get(user_id) or site_patterns.get(sites.get(user_id) or None)
            if pattern is not None:
                result[user_id] = pattern
    return result


def held_until(user_ids, priority, now):
    """The decider for notifications.holds: {user_id: next shift start} for
    recipients off shift, for messages below their pattern's override."""
    held = {}
    for user_id, pattern in patterns_for(user_ids).items():
        if PRIORITY_RANK[priority] >= PRIORITY_RANK[pattern.override_priority]:
            continue
        start = next_shift_start(pattern, now, list(pattern.windows.all()))
        if start is not None:
            held[user_id] = start
    return held


def on_shift(user, at=None):
    at = at or timezone.now()
    pattern = patterns_for([user.pk]).get(user.pk)
    return pattern is None or next_shift_start(pattern, at) is None


def on_shift_now(users, at=None):
    """{user_id: True/False} for ``users`` at ``at`` (now)."""
    at = at or timezone.now()
    patterns = patterns_for([u.pk for u in users])
    return {u.pk: u.pk not in patterns or next_shift_start(patterns[u.pk], at, list(patterns[u.pk].windows.all()))
            is None for u in users}


# -- release ---------------------------------------------------------------------
def release_held_messages(now=None, batch=500):
    """Send the held rows that came due, per (user, channel): one as it is,
    several as a digest. Returns counts."""
    now = now or timezone.now()
    groups = list(
        MessageLog.objects.filter(status=MessageStatus.HELD, next_attempt_at__lte=now)
        .values_list("user_id", "channel_type").distinct().order_by()[:batch]
    )
    released = digests = 0
    for user_id, channel_type in groups:
        n, digest = _release(user_id, channel_type, now)
        released += n
        digests += 1 if digest else 0
    return {"released": released, "digests": digests}


def _release(user_id, channel_type, now):
    with messages.default_language(), transaction.atomic():
        rows = list(
            MessageLog.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.HELD, next_attempt_at__lte=now, user_id=user_id, channel_type=channel_type)
            .order_by("created_at", "id")
        )
        if not rows:
            return 0, None
        ids = [r.pk for r in rows]
        if len(rows) == 1:
            if MessageLog.objects.filter(pk=ids[0], status=MessageStatus.HELD).update(
                    status=MessageStatus.QUEUED, next_attempt_at=now, updated_at=now):
                dispatch.publish_on_commit([(ids[0], channel_type)])
            return 1, None
        latest = rows[-1]
        title = ngettext("%(n)d notice while you were off shift", "%(n)d notices while you were off shift",
                         len(rows)) % {"n": len(rows)}
        lines = [f"• {r.title or r.body[:80]}" for r in rows]
        digest = MessageLog.objects.create(
            user_id=user_id, channel_type=channel_type, recipient=latest.recipient, message_type=DIGEST_TYPE,
            title=title, body="\n".join(lines), priority=max((r.priority for r in rows), key=PRIORITY_RANK.get),
            status=MessageStatus.QUEUED, next_attempt_at=now, created_at=now, updated_at=now,
            idempotency_key=f"digest:{latest.pk}",
        )
        MessageLog.objects.filter(pk__in=ids, status=MessageStatus.HELD).update(
            status=MessageStatus.SKIPPED, digest=digest, updated_at=now,
            last_error=_("Sent in the off-shift digest #%(id)d.") % {"id": digest.pk})
        dispatch.publish_on_commit([(digest.pk, channel_type)])
        return len(rows), digest
