"""Formatting for people: durations as "2 d 16 h", "5 min", "12 s"."""

from django import template
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def timesince_short(delta):
    """A timedelta (or seconds) in its two largest units."""
    if delta is None or delta == "":
        return ""
    seconds = int(delta.total_seconds() if hasattr(delta, "total_seconds") else float(delta))
    seconds = max(seconds, 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return _("%(d)d d %(h)d h") % {"d": days, "h": hours}
    if hours:
        return _("%(h)d h %(m)d min") % {"h": hours, "m": minutes}
    if minutes:
        return _("%(m)d min") % {"m": minutes}
    return _("%(s)d s") % {"s": secs}
