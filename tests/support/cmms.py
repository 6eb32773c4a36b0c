"""Builders for maintenance-domain test data (plain functions)."""

import itertools
from datetime import timedelta

from django.utils import timezone

from cmms.models import Asset, MaintenancePlan, WorkOrder
from tests.factories import make_user

_seq = itertools.count(1)


def make_asset(code=None, name=None, site="Mina Norte", **fields):
    n = next(_seq)
    return Asset.objects.create(code=code or f"CAM-{n:03d}", name=name or f"Camión {n:03d}", site=site, **fields)


def make_operator(site="Mina Norte", telegram=None, in_app=True, **fields):
    return make_user(role="OPERATOR", site=site, telegram=telegram, in_app=in_app, **fields)


def make_work_order(asset=None, **fields):
    fields.setdefault("title", "Cambio de neumático")
    fields.setdefault("due_at", timezone.now() + timedelta(days=1))
    return WorkOrder.objects.create(asset=asset or make_asset(), **fields)


def make_plan(asset=None, technician=None, due_in_days=1, **fields):
    fields.setdefault("task", "Cambio de aceite y filtros")
    fields.setdefault("interval_days", 14)
    return MaintenancePlan.objects.create(
        asset=asset or make_asset(),
        assigned_technician=technician,
        next_due_date=timezone.localdate() + timedelta(days=due_in_days),
        **fields,
    )
