"""Provider secrets: the environment wins; else a secret a setup command
stored, Fernet-encrypted, on the channel's ChannelConfig row."""

from . import crypto


def channel_secret(channel_type, from_environment=""):
    if from_environment:
        return from_environment
    from .models import ChannelConfig

    stored = (
        ChannelConfig.objects.filter(channel_type=channel_type).values_list("secret_encrypted", flat=True).first()
    )
    return crypto.decrypt(stored) if stored else ""
