"""How a MessageLog row's delivery state may move, for every channel.

Receipts (Twilio status callbacks, WhatsApp statuses, the in-app inbox) arrive
late, at least once and out of order, so a state only moves forward:

    QUEUED/RETRYING -> SENDING -> SENT -> DELIVERED -> READ

and FAILED, UNDELIVERED and SKIPPED are terminal. A "delivered" receipt that
arrives after "read" changes nothing; "read" without "delivered" implies it.
Each move is one conditional UPDATE, so concurrent receipts cannot move a
row backwards.
"""

from django.utils import timezone

from .models import MessageLog, MessageStatus

S = MessageStatus
RANK = {S.QUEUED: 0, S.RETRYING: 0, S.SENDING: 1, S.SENT: 2, S.DELIVERED: 3, S.READ: 4}
TERMINAL = frozenset({S.FAILED, S.UNDELIVERED, S.SKIPPED})
# The states a receipt may move a row to.
RECEIPT_STATES = frozenset({S.SENT, S.DELIVERED, S.READ, S.UNDELIVERED, S.FAILED})
# Counted as "sent" in channel statistics: the provider accepted it.
ACCEPTED = frozenset({S.SENT, S.DELIVERED, S.READ})


def can_move(current, new):
    """True when a row in ``current`` may move to ``new``."""
    if current in TERMINAL or current == new:
        return False
    if new in (S.UNDELIVERED, S.FAILED):
        # A failure report for what was already confirmed delivered is a
        # provider's late or out-of-order answer: the delivery stands.
        return RANK.get(current, 0) < RANK[S.DELIVERED]
    return RANK.get(new, -1) > RANK.get(current, 0)


def sources_for(new):
    """The states from which a row may move to ``new`` (for a conditional UPDATE)."""
    return [state for state in S.values if can_move(state, new)]


def advance(queryset, new, at=None, error=""):
    """Move the rows of ``queryset`` to ``new`` where that is a forward move;
    returns how many moved. ``at`` (default now) is recorded in the state's
    timestamp; ``error`` (a failure's reason) in last_error."""
    if new not in RECEIPT_STATES:
        raise ValueError(f"{new!r} is not a state a receipt can set")
    at = at or timezone.now()
    fields = {"status": new, "updated_at": timezone.now()}
    if new == S.SENT:
        fields["sent_at"] = at
    elif new == S.DELIVERED:
        fields["delivered_at"] = at
    elif new == S.READ:
        fields["read_at"] = at
    else:
        fields["failed_at"] = at
        if error:
            fields["last_error"] = str(error)[:2000]
    moved = queryset.filter(status__in=sources_for(new)).update(**fields)
    if new == S.READ and moved:
        # Read implies delivered; keep the earlier receipt's time if it came.
        queryset.filter(status=S.READ, delivered_at__isnull=True).update(delivered_at=at)
    return moved


def advance_by_provider_id(channel_type, provider_message_id, new, at=None, error=""):
    """Apply a receipt that names the provider's message id. Returns
    ``(matched, moved)``: ``matched`` False means no row has that id yet (the
    receipt came before the worker recorded the send: retry it later)."""
    rows = MessageLog.objects.filter(channel_type=channel_type, provider_message_id=str(provider_message_id))
    if not rows.exists():
        return False, 0
    return True, advance(rows, new, at=at, error=error)
