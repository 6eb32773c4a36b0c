"""The newcomer's demo (bootstrap_demo, simulate_predictions) and the Spanish
catalog the messages depend on."""

import ast
import gettext
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from cmms.models import Asset, FailurePrediction, MaintenancePlan, WorkOrder
from notifications.models import MessageLog

pytestmark = pytest.mark.django_db
CATALOG = Path(__file__).resolve().parents[1] / "cmms" / "locale" / "es" / "LC_MESSAGES"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch, settings):
    monkeypatch.setattr("notifications.dispatch.publish", lambda rows, **kw: len(rows))
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # demo users, fast


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_bootstrap_demo_creates_assets_and_plans_once():
    run("bootstrap_demo")
    assets, plans = Asset.objects.count(), MaintenancePlan.objects.count()
    assert Asset.objects.get(code="CAM-001").name == "Camión 001"
    assert Asset.objects.filter(name="Camión <A&B>_01").exists()
    assert plans >= 2 and all(p.assigned_technician.username == "tecnico1" for p in MaintenancePlan.objects.all())
    run("bootstrap_demo")
    assert (Asset.objects.count(), MaintenancePlan.objects.count()) == (assets, plans)


def test_simulate_predictions_is_repeatable_with_a_seed():
    run("bootstrap_demo")
    first = run("simulate_predictions", "--count", "8", "--seed", "7")
    draws = list(FailurePrediction.objects.order_by("id").values_list("asset__code", "failure_mode", "risk_level"))
    FailurePrediction.objects.all().delete()
    MessageLog.objects.all().delete()
    WorkOrder.objects.all().delete()
    second = run("simulate_predictions", "--count", "8", "--seed", "7")
    assert draws == list(FailurePrediction.objects.order_by("id").values_list("asset__code", "failure_mode",
                                                                              "risk_level"))
    assert len(draws) == 8 and first.count("\n") == second.count("\n") == 8


def test_simulate_predictions_with_min_risk_opens_work_orders_and_queues_alerts():
    run("bootstrap_demo")
    out = run("simulate_predictions", "--count", "3", "--seed", "1", "--min-risk", "HIGH", "--asset", "CAM-AB01")
    assert "CAM-AB01" in out and "OT-" in out
    assert WorkOrder.objects.filter(asset__code="CAM-AB01", status="ASSIGNED").exists()
    assert MessageLog.objects.filter(channel_type="TELEGRAM", message_type="prediction_high_risk").exists()


def test_simulate_predictions_needs_assets():
    with pytest.raises(CommandError, match="bootstrap_demo"):
        run("simulate_predictions")


def read_po(path):
    """{(context, msgid): msgstr or first plural form} from a .po file."""
    entries, current, field = {}, {}, None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if current.get("msgid"):
                entries[(current.get("msgctxt"), current["msgid"])] = current.get("msgstr", current.get("msgstr[0]"))
            current, field = {}, None
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            current[field] += ast.literal_eval(line)
        else:
            field, _sep, value = line.partition(" ")
            current[field] = ast.literal_eval(value)
    return entries


def test_every_message_is_translated_and_the_compiled_catalog_is_current():
    """Django reads the .mo: a .po edited without `compilemessages` would ship
    English texts to Spanish users."""
    entries = read_po(CATALOG / "django.po")
    with (CATALOG / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    assert len(entries) > 100
    for (context, msgid), msgstr in entries.items():
        assert msgstr, f"untranslated: {msgid!r}"
        key = f"{context}\x04{msgid}" if context else msgid
        found = compiled._catalog.get(key, compiled._catalog.get((key, 0)))
        assert found == msgstr, f"django.mo is stale for {msgid!r}: run `manage.py compilemessages`"
    with translation.override("es"):
        assert translation.gettext("✅ Accept") == "✅ Aceptar"
