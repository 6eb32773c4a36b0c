"""Demo assets and maintenance plans for ``bootstrap_demo`` (idempotent), and
the failure modes ``simulate_predictions`` draws from."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from .models import Asset, Criticality, MaintenancePlan

DEMO_ASSETS = [
    # code, name, type, site, criticality
    ("CAM-001", "Camión 001", "Camión de extracción", "Mina Norte", Criticality.HIGH),
    ("CAM-002", "Camión 002", "Camión de extracción", "Mina Norte", Criticality.HIGH),
    # A name with <, & and _ shows that every channel escapes user text.
    ("CAM-AB01", "Camión <A&B>_01", "Camión de extracción", "Mina Norte", Criticality.MEDIUM),
    ("PAL-001", "Pala 001", "Pala hidráulica", "Mina Norte", Criticality.CRITICAL),
    ("CHA-001", "Chancador primario", "Chancador", "Planta Sur", Criticality.CRITICAL),
    ("CIN-001", "Correa transportadora 1", "Correa transportadora", "Planta Sur", Criticality.MEDIUM),
]

DEMO_PLANS = [
    # asset code, task, interval days, first due in days, technician username
    ("CAM-001", "Cambio de aceite y filtros", 14, 2, "tecnico1"),
    ("PAL-001", "Inspección de cables y poleas", 7, 1, "tecnico1"),
    ("CHA-001", "Revisión de revestimientos", 30, 10, "tecnico1"),
]

FAILURE_MODES = [
    "Sobrecalentamiento de motor",
    "Desgaste de frenos",
    "Falla de rodamiento",
    "Fuga hidráulica",
    "Vibración anormal",
]


def create_demo_assets():
    """Create the demo assets and plans that are missing; returns
    ``{"assets": [codes], "plans": ["code: task"]}`` of what was created
    (empty lists on a second run)."""
    created = {"assets": [], "plans": []}
    for code, name, asset_type, site, criticality in DEMO_ASSETS:
        _asset, new = Asset.objects.get_or_create(
            code=code, defaults={"name": name, "asset_type": asset_type, "site": site, "criticality": criticality}
        )
        if new:
            created["assets"].append(code)
    technicians = {u.username: u for u in get_user_model().objects.filter(username__in={p[4] for p in DEMO_PLANS})}
    today = timezone.localdate()
    for code, task, interval, due_in, technician in DEMO_PLANS:
        _plan, new = MaintenancePlan.objects.get_or_create(
            asset=Asset.objects.get(code=code),
            task=task,
            defaults={
                "interval_days": interval,
                "next_due_date": today + timedelta(days=due_in),
                "assigned_technician": technicians.get(technician),
            },
        )
        if new:
            created["plans"].append(f"{code}: {task}")
    return created
