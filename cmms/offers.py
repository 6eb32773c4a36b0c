"""Button payloads for work-order decisions: opaque tokens stored in the
database (WorkOrderOffer), one per (order, decision, assignment).

A token is 22 random URL-safe characters (128 bits), well inside Telegram's
64-byte callback_data, and survives restarts because it is a row, not a
cache entry. The same offer gets the same token each time it is shown.
"""

import secrets

from django.db import IntegrityError, transaction

from .actions import DECISIONS
from .models import WorkOrder, WorkOrderOffer


def offer_tokens(work_order):
    """{'accept': token, 'reject': token} for the order's current assignment."""
    seq = WorkOrder.objects.filter(pk=work_order.pk).values_list("assignment_seq", flat=True).first() or 0
    return {decision: _token(work_order.pk, decision, seq) for decision in DECISIONS}


def _token(work_order_id, decision, seq):
    existing = WorkOrderOffer.objects.filter(work_order_id=work_order_id, decision=decision, assignment_seq=seq)
    token = existing.values_list("token", flat=True).first()
    if token:
        return token
    try:
        with transaction.atomic():
            return WorkOrderOffer.objects.create(
                token=secrets.token_urlsafe(16), work_order_id=work_order_id, decision=decision, assignment_seq=seq
            ).token
    except IntegrityError:  # a concurrent alert made it first
        return existing.values_list("token", flat=True).get()


def find(token):
    """The offer a callback_data names, or None (forged, or never sent)."""
    if not isinstance(token, str) or not 1 <= len(token) <= 32:
        return None
    return WorkOrderOffer.objects.filter(token=token).first()


def tokens_of_offer(work_order_id, seq):
    return set(WorkOrderOffer.objects.filter(work_order_id=work_order_id, assignment_seq=seq)
               .values_list("token", flat=True))
