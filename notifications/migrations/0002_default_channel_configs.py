from django.db import migrations

# Telegram and in-app work out of the box; the others switch on when their
# adapters and credentials exist.
DEFAULTS = {"TELEGRAM": True, "IN_APP": True, "EMAIL": False, "SMS": False, "WHATSAPP": False}


def install(apps, schema_editor):
    ChannelConfig = apps.get_model("notifications", "ChannelConfig")
    for channel_type, enabled in DEFAULTS.items():
        ChannelConfig.objects.get_or_create(channel_type=channel_type, defaults={"is_enabled": enabled})


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]
    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
