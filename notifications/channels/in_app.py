"""In-app inbox: the InAppNotification row the router writes is the delivery,
so this channel has no adapter and no provider."""

from .registry import ChannelSpec, register

register(ChannelSpec(channel_type="IN_APP"))
