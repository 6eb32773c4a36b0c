"""Phone numbers for SMS and WhatsApp: validated and stored in E.164 with
Google's libphonenumber (the ``phonenumbers`` package), so ``9 8765 4321``
typed in Chile becomes ``+56987654321``."""

import phonenumbers
from django.conf import settings
from django.utils.translation import gettext as _

from .channels.registry import InvalidAddress


def to_e164(raw, region=None):
    """The number in E.164 (``+56987654321``); raises InvalidAddress with a
    translated reason. A number without ``+`` is read in ``region``
    (default settings.PHONE_DEFAULT_REGION)."""
    text = str(raw or "").strip()
    if not text:
        raise InvalidAddress(_("The phone number is empty."))
    region = region or settings.PHONE_DEFAULT_REGION
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise InvalidAddress(_("%(number)r is not a phone number.") % {"number": text[:40]}) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidAddress(
            _("%(number)r is not a valid phone number (default region %(region)s).")
            % {"number": text[:40], "region": region}
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
