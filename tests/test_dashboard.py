"""The operations dashboard: who may see it, and that a known set of rows
gives known counts, percentiles, reasons and waiting orders."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cmms import dashboard
from cmms.templatetags.cmms_format import timesince_short
from notifications import stats
from notifications.models import MessageLog, UserChannelPreference
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator, make_work_order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker", "no_broker_queues")]


@pytest.fixture
def no_broker_queues(monkeypatch):
    """Queue depths come from the broker; unit tests read a fixed answer."""
    monkeypatch.setattr("workers.outbox.queue_backlogs", lambda names: {n: 3 if n == "telegram" else 0 for n in names})


def log(channel="TELEGRAM", status="SENT", created_ago=timedelta(minutes=5), latency_s=None, error="", **fields):
    now = timezone.now()
    created = now - created_ago
    sent = created + timedelta(seconds=latency_s) if latency_s is not None else None
    return MessageLog.objects.create(
        channel_type=channel, recipient="1", message_type="announcement", body="x", status=status,
        created_at=created, sent_at=sent, last_error=error,
        failed_at=now if status in ("FAILED", "UNDELIVERED") else None, **fields,
    )


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_operators_get_403(client):
    client.force_login(make_user(role="OPERATOR"))
    assert client.get("/dashboard/").status_code == 403


@pytest.mark.parametrize("role", ["SUPERVISOR", "ADMIN"])
def test_supervisors_and_admins_see_every_section_in_spanish(client, role):
    client.force_login(make_user(role=role))
    response = client.get("/dashboard/")
    html = response.content.decode()
    assert response.status_code == 200
    for section in ("channels", "latency", "queues", "failures", "dead-letters", "unreachable", "waiting-orders"):
        assert f'id="{section}"' in html
    assert "Mensajes por hora" in html
    assert html.count("<svg") == 2


def test_the_fragment_is_only_the_body_for_the_self_refresh(client):
    client.force_login(make_user(role="SUPERVISOR"))
    html = client.get("/dashboard/?fragment=1").content.decode()
    assert html.lstrip().startswith("<main")
    assert "<html" not in html


def test_channel_counts_separate_the_backlog_from_the_last_days_outcomes():
    for _ in range(3):
        log(status="SENT", latency_s=1)
    log(status="DELIVERED", channel="SMS", latency_s=2)
    log(status="FAILED", error="Telegram 403: Forbidden: bot was blocked by the user")
    log(status="QUEUED")
    log(status="QUEUED", created_ago=timedelta(days=3))  # still waiting: counted however old
    log(status="SENT", created_ago=timedelta(days=3), latency_s=1)  # outside the 24 h window
    rows = {r["channel"]: r for r in dashboard.channel_table(timezone.now())}
    assert (rows["TELEGRAM"]["sent"], rows["TELEGRAM"]["failed"], rows["TELEGRAM"]["queued"]) == (3, 1, 2)
    assert rows["SMS"]["delivered"] == 1
    assert rows["TELEGRAM"]["registered"] and rows["TELEGRAM"]["enabled"]


def test_latency_percentiles_are_nearest_rank_per_channel_and_window():
    for seconds in (1, 2, 3, 4, 100):
        log(latency_s=seconds, created_ago=timedelta(minutes=10))
    log(latency_s=50, created_ago=timedelta(hours=5))  # in the day, not the hour
    result = dashboard.latencies(timezone.now())["TELEGRAM"]
    assert (result["hour"]["p50"], result["hour"]["p95"], result["hour"]["n"]) == (3, 100, 5)
    assert (result["day"]["p50"], result["day"]["n"]) == (3, 6)


def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value():
    assert dashboard.percentile([], 50) is None
    assert dashboard.percentile([7.0], 95) == 7.0


def test_top_failure_reasons_are_counted_and_ordered():
    for _ in range(3):
        log(status="FAILED", error="Telegram 400: Bad Request: chat not found")
    log(status="FAILED", error="Gave up after 6 attempts")
    log(status="UNDELIVERED", channel="SMS", error="30003 Unreachable handset")
    reasons = dashboard.failure_reasons(timezone.now())
    assert [(r["last_error"], r["n"]) for r in reasons[:1]] == [("Telegram 400: Bad Request: chat not found", 3)]
    assert len(reasons) == 3


def test_the_hourly_chart_has_24_buckets_and_puts_each_row_in_its_hour():
    log(status="SENT", created_ago=timedelta(minutes=1))
    log(status="FAILED", created_ago=timedelta(hours=2, minutes=1))
    stats.rollup()
    data = dashboard.chart(timezone.now(), "hour")
    assert len(data["buckets"]) == 24
    assert sum(data["series"][("TELEGRAM", "sent")]) == 1
    assert data["series"][("TELEGRAM", "sent")][-1] == 1
    assert sum(data["series"][("TELEGRAM", "failed")]) == 1


def test_the_daily_chart_covers_30_days():
    log(status="SENT", created_ago=timedelta(days=10))
    stats.backfill()
    data = dashboard.chart(timezone.now(), "day")
    assert len(data["buckets"]) == 30
    assert sum(data["series"][("TELEGRAM", "sent")]) == 1


def test_unreachable_addresses_and_dead_letters_are_listed():
    user = make_user(telegram=5)
    UserChannelPreference.objects.filter(user=user).update(
        is_reachable=False, unreachable_reason="bot was blocked", unreachable_since=timezone.now())
    dead = log(status="FAILED", error="x")
    assert [p.user for p in dashboard.unreachable()] == [user]
    assert dashboard.dead_letters()["count"] == 1
    assert dashboard.dead_letters()["latest"][0].pk == dead.pk


def test_orders_waiting_for_acceptance_come_oldest_first_with_their_wait():
    asset = make_asset()
    operator = make_operator()
    older, newer = make_work_order(asset=asset), make_work_order(asset=asset, title="Otro")
    older.assign(operator)
    newer.assign(operator)
    from cmms.models import WorkOrder

    WorkOrder.objects.filter(pk=older.pk).update(assigned_at=timezone.now() - timedelta(hours=3))
    orders = dashboard.waiting_orders(timezone.now())
    assert [o.pk for o in orders] == [older.pk, newer.pk]
    assert orders[0].waiting >= timedelta(hours=3)


def test_queue_depths_come_from_the_broker_per_queue():
    depths = {q["name"]: q["depth"] for q in dashboard.queues()}
    assert depths["telegram"] == 3
    assert {"default", "inbound", "email", "sms", "whatsapp", "inapp"} <= set(depths)


def test_beat_and_workers_are_alive_only_when_the_relay_ran_recently(settings):
    from django_celery_beat.models import PeriodicTask
    from django_celery_results.models import TaskResult

    now = timezone.now()
    assert dashboard.liveness(now)["worker"]["alive"] is False
    PeriodicTask.objects.filter(name="relay-outbox").update(last_run_at=now - timedelta(seconds=5))
    TaskResult.objects.create(task_id="t1", task_name="workers.relay_outbox", status="SUCCESS")
    TaskResult.objects.filter(task_id="t1").update(date_done=now - timedelta(seconds=300))  # date_done is auto_now
    alive = dashboard.liveness(now)
    assert alive["beat"]["alive"] is True
    assert alive["worker"]["alive"] is False  # seen 5 min ago: not alive within 60 s
    assert alive["worker"]["age"] >= timedelta(seconds=300)


@pytest.mark.parametrize(
    "delta, text",
    [(timedelta(days=2, hours=16, minutes=5), "2 d 16 h"), (timedelta(hours=1, minutes=2), "1 h 2 min"),
     (timedelta(minutes=5, seconds=3), "5 min"), (timedelta(seconds=12), "12 s")],
)
def test_durations_read_as_two_units(delta, text):
    assert timesince_short(delta) == text


def test_the_telegram_row_shows_the_bot_and_how_it_receives_updates(client):
    from notifications.telegram_polling import load_offset, remember_mode

    remember_mode("polling", "cmms_faena_bot")
    remember_mode("webhook")  # set by setup_telegram_bot --webhook-url; the username stays
    client.force_login(make_user(role="SUPERVISOR"))
    html = client.get("/dashboard/?fragment=1").content.decode()
    assert "@cmms_faena_bot" in html and "(webhook)" in html
    assert load_offset() == 0  # the poller's offset is untouched
