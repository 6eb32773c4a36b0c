from .base import Channel, ChannelError, ChatMigrated, ConfigurationError, OutgoingMessage

__all__ = ["Channel", "ChannelError", "ChatMigrated", "ConfigurationError", "OutgoingMessage"]
