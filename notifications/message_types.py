"""The one registry of message types.

A type names its emoji (shown before the title on chat channels), its
category (which ``UserChannelPreference`` flag lets a user opt out of it) and
its default priority. Add a type with ``register(MessageType(...))`` — here for
the product's own types, or from a project's AppConfig.ready().
"""

from dataclasses import dataclass

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .exceptions import RoutingError
from .models import Priority

# category -> UserChannelPreference boolean field that opts a user in or out.
CATEGORY_FLAGS = {
    "work_orders": "notify_work_orders",
    "predictions": "notify_predictions",
    "reminders": "notify_reminders",
    "alerts": "notify_alerts",
}


class UnknownMessageType(RoutingError):
    pass


@dataclass(frozen=True)
class MessageType:
    key: str
    emoji: str
    category: str
    default_priority: str = Priority.NORMAL
    label: str = ""

    def __post_init__(self):
        if self.category not in CATEGORY_FLAGS:
            raise ValueError(f"Unknown category {self.category!r}; expected one of {sorted(CATEGORY_FLAGS)}")

    @property
    def preference_flag(self):
        return CATEGORY_FLAGS[self.category]


_REGISTRY: dict[str, MessageType] = {}


def register(message_type):
    _REGISTRY[message_type.key] = message_type
    return message_type


def get(key):
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownMessageType(
            gettext("Unknown message type %(key)r. Known types: %(known)s. Register a new one in "
                    "notifications/message_types.py (or from an AppConfig.ready()), so web, worker and beat "
                    "all see it.") % {"key": key, "known": ", ".join(sorted(_REGISTRY))}
        ) from None


def all_types():
    return dict(_REGISTRY)


for _type in (
    MessageType("work_order_assigned", "📋", "work_orders", Priority.HIGH, _("Work order assigned")),
    MessageType("work_order_updated", "📝", "work_orders", Priority.NORMAL, _("Work order updated")),
    MessageType("critical_alert", "🚨", "alerts", Priority.CRITICAL, _("Critical alert")),
    MessageType("prediction_high_risk", "⚠️", "predictions", Priority.HIGH, _("High-risk prediction")),
    MessageType("maintenance_reminder", "🔧", "reminders", Priority.NORMAL, _("Maintenance reminder")),
    MessageType("announcement", "📢", "alerts", Priority.NORMAL, _("Announcement")),
    MessageType("test_message", "✅", "alerts", Priority.NORMAL, _("Test message")),
    # The bot's answer to someone who wrote to it (WhatsApp help, a decision's outcome).
    MessageType("bot_reply", "", "alerts", Priority.NORMAL, _("Bot reply")),
):
    register(_type)

# Maintenance reminders and escalations (cmms.reminders).
register(MessageType("work_order_overdue", "⏰", "reminders", Priority.NORMAL, _("Overdue work order")))
register(MessageType("work_order_overdue_escalation", "🔺", "work_orders", Priority.HIGH,
                     _("Overdue work order (to supervisors)")))
# The answer to an inbound SMS (notifications.sms_inbound): written directly,
# never routed, so its priority and category do not filter it.
register(MessageType("sms_reply", "", "alerts", Priority.CRITICAL, _("SMS reply")))
