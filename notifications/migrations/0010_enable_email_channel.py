from django.db import migrations

# The e-mail adapter exists now (notifications/channels/email.py): the channel
# is on, as Telegram is; an operator switches it off in admin (Channel configs).
# Without EMAIL_URL it sends to the local capture server (127.0.0.1:1025).


def enable(apps, schema_editor):
    ChannelConfig = apps.get_model("notifications", "ChannelConfig")
    config, created = ChannelConfig.objects.get_or_create(channel_type="EMAIL", defaults={"is_enabled": True})
    if not created and not config.is_enabled:
        ChannelConfig.objects.filter(pk=config.pk).update(is_enabled=True)


def disable(apps, schema_editor):
    apps.get_model("notifications", "ChannelConfig").objects.filter(channel_type="EMAIL").update(is_enabled=False)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0009_delivery_progress_and_claimant")]
    operations = [migrations.RunPython(enable, disable)]
