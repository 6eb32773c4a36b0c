from .base import Channel, ChannelError, ChatMigrated, ConfigurationError, OutgoingMessage, SkipDelivery

__all__ = ["Channel", "ChannelError", "ChatMigrated", "ConfigurationError", "OutgoingMessage", "SkipDelivery"]
