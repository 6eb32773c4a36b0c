"""Web pages of the CMMS for people: the operations dashboard."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.cache import never_cache

from notifications.models import ChannelType

from . import charts, dashboard
from .models import Role

DASHBOARD_ROLES = (Role.SUPERVISOR, Role.ADMIN)


def can_see_dashboard(user):
    return user.is_active and (user.is_superuser or user.role in DASHBOARD_ROLES)


def _outcome_label(outcome):
    return {"sent": pgettext("chart outcome", "sent"), "failed": pgettext("chart outcome", "failed"),
            "skipped": pgettext("chart outcome", "skipped")}.get(outcome, outcome)


def _labels(series):
    return {key: f"{ChannelType(key[0]).label if key[0] in ChannelType.values else key[0]} · {_outcome_label(key[1])}"
            for key in series}


@never_cache
@login_required
def dashboard_view(request):
    """SUPERVISOR and ADMIN only (others 403; anonymous users go to the
    login page). ``?fragment=1`` returns only the body, which the page
    fetches every few seconds to refresh itself without a reload."""
    if not can_see_dashboard(request.user):
        raise PermissionDenied(_("Only supervisors and administrators can see the dashboard."))
    data = dashboard.snapshot()
    data["latency_rows"] = sorted(data["latencies"].items())
    data["refresh_ms"] = settings.DASHBOARD_REFRESH_S * 1000
    for name in ("hourly", "daily"):
        # Every label and number is escaped inside stacked_bars.
        data[f"{name}_svg"] = mark_safe(charts.stacked_bars(data[name], _labels(data[name]["series"])))
    template = "cmms/dashboard_body.html" if request.GET.get("fragment") else "cmms/dashboard.html"
    return render(request, template, data)


@login_required
def after_login(request):
    """Where a login without ``?next=`` lands: the dashboard for those who may
    see it, everyone else their inbox."""
    return redirect("dashboard" if can_see_dashboard(request.user) else "inbox")
