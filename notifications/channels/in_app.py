"""In-app inbox: the router stores the InAppNotification row (readable at
once, the truth) and the delivery task pushes a hint to the user's open pages
through the channel layer (Django Channels over Redis). SENT means stored and
pushed; a push the channel layer did not take is retried like any delivery.

No provider and no database here: the push names the MessageLog row and the
page fetches the rows it has not shown (notifications.inbox).
"""

import time

from .base import Channel, ChannelError
from .registry import ChannelSpec, register


class InAppChannel(Channel):
    channel_type = "IN_APP"

    def send(self, address, message):
        from .. import inbox

        if message.user_id is None:
            raise ChannelError("In-app: the message has no user to push to", permanent=True)
        event = {
            "type": inbox.NEW,
            "message_id": message.message_id,
            "priority": message.priority,
            # When the worker pushed (epoch seconds): the benchmark's clock.
            "pushed_at": time.time(),
        }
        try:
            inbox.push(message.user_id, event)
        except inbox.PushFailed as exc:
            raise ChannelError(f"In-app push not sent: {exc}") from None
        return inbox.group_for(message.user_id)


def _store_inbox_entries(rows):
    """The inbox entries for the IN_APP rows the router just wrote, in its
    transaction: they are readable before (and whether or not) a push goes out."""
    from ..models import InAppNotification

    InAppNotification.objects.bulk_create(
        [
            InAppNotification(
                user_id=row.user_id,
                message_log=row,
                message_type=row.message_type,
                title=row.title,
                body=row.body,
                priority=row.priority,
                related_object_type=row.related_object_type,
                related_object_id=row.related_object_id,
                link=(row.payload or {}).get("link", ""),
                created_at=row.created_at,
            )
            for row in rows
        ],
        batch_size=1000,
    )


register(ChannelSpec(channel_type="IN_APP", build=InAppChannel, on_write=_store_inbox_entries, holdable=False))
