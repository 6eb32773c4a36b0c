"""The escalation step scanner against a growing table of pending steps.

Beat runs ``cmms.escalation.run_due_steps`` every few seconds; its query must
cost the same whether 1,000 or 100,000 steps are waiting (the partial index
on due_at over PENDING rows holds only what is pending, and the scan reads
only the due head of it). Every size is measured in the same run, so the
growth ratio is the headline, not an absolute time.
"""

import time
from datetime import timedelta

from .harness import median

DUE = 50
REPS = 30
SITE = "Bench escalation"


def _site_supervisor():
    from django.contrib.auth import get_user_model

    from cmms.models import Role
    from notifications.models import UserChannelPreference

    user, created = get_user_model().objects.get_or_create(
        username="bench-escalation-supervisor", defaults={"role": Role.SUPERVISOR, "site": SITE, "password": "!"})
    if created:
        UserChannelPreference.objects.create(user=user, channel_type="TELEGRAM", channel_user_id="3900001")
    return user


def _seed_background(count, asset, start_index):
    """``count`` pending steps due tomorrow, 100 per escalation run."""
    from django.utils import timezone

    from cmms.models import Escalation, EscalationStep, WorkOrder

    per_run = 100
    runs = max(count // per_run, 1)
    orders = WorkOrder.objects.bulk_create(
        [WorkOrder(asset=asset, title=f"bench {start_index + i}", priority="critical", status="ASSIGNED")
         for i in range(runs)], batch_size=2000)
    escalations = Escalation.objects.bulk_create(
        [Escalation(work_order=o, priority="critical", chain=[]) for o in orders], batch_size=2000)
    later = timezone.now() + timedelta(days=1)
    steps = [
        EscalationStep(escalation=e, work_order_id=e.work_order_id, index=i, action="NOTIFY_SUPERVISORS",
                       due_at=later + timedelta(seconds=n * per_run + i))
        for n, e in enumerate(escalations) for i in range(per_run)
    ]
    EscalationStep.objects.bulk_create(steps, batch_size=5000)
    return len(steps)


def _seed_due(asset, count):
    """``count`` orders whose single step is due now (each notifies the supervisor)."""
    from django.utils import timezone

    from cmms.models import Escalation, EscalationStep, WorkOrder

    orders = WorkOrder.objects.bulk_create(
        [WorkOrder(asset=asset, title=f"due {i}", priority="critical", status="ASSIGNED") for i in range(count)])
    chain = [{"action": "NOTIFY_SUPERVISORS", "wait_s": 0, "channels": []}]
    runs = Escalation.objects.bulk_create([Escalation(work_order=o, priority="critical", chain=chain) for o in orders])
    now = timezone.now() - timedelta(seconds=1)
    EscalationStep.objects.bulk_create([EscalationStep(escalation=r, work_order_id=r.work_order_id, index=0,
                                                       action="NOTIFY_SUPERVISORS", due_at=now) for r in runs])


def _query_ms():
    from django.db import connection
    from django.utils import timezone

    from cmms.models import EscalationStep, StepStatus

    samples = []
    for _rep in range(REPS):
        started = time.perf_counter()
        list(EscalationStep.objects.filter(status=StepStatus.PENDING, due_at__lte=timezone.now())
             .order_by("due_at").values_list("pk", "work_order_id")[:200])
        samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    return median(samples)


def escalation_scan(bench):
    from cmms import escalation
    from cmms.models import Asset, Escalation, EscalationStep, WorkOrder

    bench.fresh()
    EscalationStep.objects.all().delete()
    Escalation.objects.all().delete()
    WorkOrder.objects.all().delete()
    # A site of its own with one supervisor: other scenarios' populations
    # (thousands of supervisors without a site) must not be notified here.
    asset, _ = Asset.objects.get_or_create(code="BENCH-ESC", defaults={"name": "Camión bench", "site": SITE})
    _site_supervisor()
    results, seeded = {}, 0
    sizes = bench.params["escalation_pending_sizes"]
    for size in sizes:
        seeded += _seed_background(size - seeded, asset, seeded)
        _seed_due(asset, DUE)
        results[f"escalation_scan_query_{size}_ms"] = _query_ms()
        started = time.perf_counter()
        counts = escalation.run_due_steps()
        results[f"escalation_scan_run_{size}_ms"] = (time.perf_counter() - started) * 1000
        if counts["ran"] != DUE:
            raise RuntimeError(f"expected {DUE} due steps to run at {size} pending, got {counts}")
    small, large = sizes[0], sizes[-1]
    return {
        "escalation_pending_steps": seeded,
        **results,
        "escalation_scan_ms": results[f"escalation_scan_query_{large}_ms"],
        "escalation_scan_growth": results[f"escalation_scan_query_{large}_ms"] / results[f"escalation_scan_query_{small}_ms"],
        "escalation_run_50_due_ms": results[f"escalation_scan_run_{large}_ms"],
    }
