from .base import Attachment, Channel, ChannelError, ChatMigrated, ConfigurationError, OutgoingMessage, SkipDelivery

__all__ = ["Attachment", "Channel", "ChannelError", "ChatMigrated", "ConfigurationError", "OutgoingMessage", "SkipDelivery"]
