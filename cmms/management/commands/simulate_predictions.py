"""Score the demo assets with random risks, as the ML model would, so that
``make run`` shows the whole path: predictions in admin, work orders assigned,
alerts in the Telegram sandbox, tasks in Flower."""

import random
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cmms.demo import FAILURE_MODES
from cmms.models import Asset, RiskLevel
from cmms.predictions import record_prediction

# (risk, weight, probability range): most scores are harmless, as in real life.
RISKS = [
    (RiskLevel.LOW, 40, (0.05, 0.35)),
    (RiskLevel.MEDIUM, 30, (0.35, 0.6)),
    (RiskLevel.HIGH, 20, (0.6, 0.85)),
    (RiskLevel.CRITICAL, 10, (0.85, 0.99)),
]


class Command(BaseCommand):
    help = gettext_lazy("Record random failure predictions for the demo assets (seedable) through record_prediction.")

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10, help=gettext_lazy("How many predictions (default 10)."))
        parser.add_argument("--seed", type=int, default=None, help=gettext_lazy("Seed for a repeatable run."))
        parser.add_argument("--asset", action="append", default=[], help=gettext_lazy("Only this asset code (repeatable)."))
        parser.add_argument("--min-risk", choices=RiskLevel.values, default=RiskLevel.LOW,
                            help=gettext_lazy("Draw only risks at or above this level."))
        parser.add_argument("--interval", type=float, default=0.0, help=gettext_lazy("Seconds between predictions."))
        parser.add_argument("--model-version", default="demo-random-v1")

    def handle(self, *args, count, seed, asset, min_risk, interval, model_version, **opts):
        if count < 1:
            raise CommandError(_("--count must be at least 1."))
        assets = list(Asset.objects.filter(is_active=True).order_by("code"))
        if asset:
            assets = [a for a in assets if a.code in set(asset)]
        if not assets:
            raise CommandError(_("No active assets. Run `manage.py bootstrap_demo` first."))
        rng = random.Random(seed)
        risks = RISKS[RiskLevel.values.index(min_risk):]
        for n in range(count):
            target = rng.choice(assets)
            mode = rng.choice(FAILURE_MODES)
            (risk, _w, (low, high)), = rng.choices(risks, weights=[r[1] for r in risks])
            probability = round(rng.uniform(low, high), 3)
            hours = round(rng.uniform(4, 240), 1)
            prediction = record_prediction(
                asset=target, failure_mode=mode, probability=probability, risk_level=risk,
                time_to_failure_hours=hours, model_version=model_version,
            )
            order = prediction.work_order
            self.stdout.write(
                f"{target.code:<9} {risk:<8} p={probability:.2f} {mode:<30} "
                f"{prediction.get_action_display()}"
                + (f" {order.number} → {order.assignee or '-'}" if order else "")
                + (" [" + _("alert queued") + "]" if prediction.alerted else "")
            )
            if interval and n < count - 1:
                time.sleep(interval)
