"""The scenarios. Each takes the run's Bench and returns {key: value}; every
figure comes with a baseline measured in the same run (these machines are
shared and noisy), and the headline numbers are ratios or medians.

Chat id ranges per population keep scenarios apart in the sandbox's records.
"""

import itertools
import threading
import time

from .escalation_scan import escalation_scan
from .harness import cpu_seconds, median, percentile, rss_mb
from .multihost import multihost
from .whatsapp import whatsapp

TITLE = "Orden de trabajo OT-12345"
BODY = "Se te ha asignado la OT-12345: cambio de aceite del Camión <A&B>_01 en la faena Norte."
MESSAGE_TYPE = "work_order_assigned"
CHAT_BASE = {"OPERATOR": 1_000_000, "TECHNICIAN": 2_000_000, "SUPERVISOR": 3_000_000}
# A limit far beyond reach: the shared limiter still runs its Redis round
# trip for every message, as in production, but never paces the pipeline.
LIMITER_OUT_OF_REACH = {"RATE_LIMIT_TELEGRAM_ACCOUNT": "1000000/s"}


# -- helpers --------------------------------------------------------------------
def _users(pks):
    from django.contrib.auth import get_user_model

    by_pk = get_user_model().objects.in_bulk(pks)
    return [by_pk[pk] for pk in pks]


def _wait_rows(queryset, done, timeout, interval=0.02):
    """Poll ``queryset.count()`` until ``done(count)``; returns (count, seconds waited, finished)."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        count = queryset.count()
        if done(count) or time.perf_counter() > deadline:
            return count, time.perf_counter() - started, done(count)
        time.sleep(interval)


def _unfinished():
    from notifications.models import MessageLog, MessageStatus

    return MessageLog.objects.filter(status__in=(MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRYING))


def _sent():
    from notifications.models import MessageLog, MessageStatus

    return MessageLog.objects.filter(status=MessageStatus.SENT)


def _channel(bench):
    from notifications.channels import OutgoingMessage
    from notifications.channels.telegram import TelegramChannel
    from tests.conftest import SANDBOX_TOKEN

    return TelegramChannel(token=SANDBOX_TOKEN, api_url=bench.sandbox.url), OutgoingMessage(
        title=TITLE, body=BODY, emoji="📋", priority="high")


def raw_http(bench, total, threads, chats):
    """The plain loop the pipeline is compared with: ``threads`` threads (the
    worker's pool size), each with its own TelegramChannel (one
    requests.Session), sending the same rendered message to the same chats;
    no Celery, Redis or database. Returns messages per second."""
    from notifications.channels import ChannelError

    counter = itertools.count()
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)
    errors = []

    def run():
        channel, outgoing = _channel(bench)
        barrier.wait()
        while True:
            with lock:
                i = next(counter)
            if i >= total:
                return
            try:
                channel.send(str(chats[i % len(chats)]), outgoing)
            except ChannelError as exc:  # reported after the loop
                errors.append(exc)

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"raw HTTP loop: {len(errors)} errors, first: {errors[0]}")
    return total / elapsed


# -- 1. producer cost -----------------------------------------------------------
def producer(bench):
    """send_to_user latency with the sandbox answering at once, then at 10 s.
    Calls are paced (one every 10 ms) so that neither phase saturates the
    CPU: the question is whether a slow provider reaches the producer."""
    from notifications.message_router import MessageRouter

    p = bench.params
    bench.fresh()
    # A user (a chat) per call: a chat's own limit (about 1/s) must not hold deliveries back.
    users = _users(bench.population("OPERATOR", p["warmup"] + p["producer_calls"], CHAT_BASE["OPERATOR"]))
    router = MessageRouter()

    def timed_calls(label):
        samples = []
        for i in range(p["warmup"] + p["producer_calls"]):
            started = time.perf_counter()
            router.send_to_user(users[i % len(users)], TITLE, f"{BODY} ({label} {i})", message_type=MESSAGE_TYPE)
            elapsed = time.perf_counter() - started
            if i >= p["warmup"]:
                samples.append(elapsed * 1000)
            time.sleep(max(0.0, 0.010 - elapsed))
        return samples

    with bench.workers(profile="producer", **LIMITER_OUT_OF_REACH):
        fast = timed_calls("fast")
        _wait_rows(_unfinished(), lambda n: n == 0, timeout=120)
        bench.sandbox.configure(latency_ms=10_000)
        slow = timed_calls("slow")
    return {
        "producer_p50_ms": median(fast),
        "producer_p99_ms": percentile(fast, 99),
        "producer_slow_p50_ms": median(slow),
        "producer_slow_p99_ms": percentile(slow, 99),
        "producer_slow_over_fast": percentile(slow, 99) / percentile(fast, 99),
    }


# -- 2. pipeline throughput -----------------------------------------------------
def pipeline(bench):
    """Router -> broker -> worker -> sandbox until every MessageLog row is
    SENT, against the plain HTTP loop in the same run, alternated in rounds;
    the ratio is the median of the rounds' ratios."""
    from notifications.message_router import MessageRouter

    p = bench.params
    pks = bench.population("OPERATOR", p["pipeline_messages"], CHAT_BASE["OPERATOR"])
    chats = [CHAT_BASE["OPERATOR"] + i for i in range(len(pks))]
    router = MessageRouter()
    raw_rates, pipe_rates, ratios = [], [], []
    worker_cpu, sandbox_cpu, raw_sandbox_cpu, raw_client_cpu, expander_cpu = [], [], [], [], []
    # As the README deploys them: the delivery worker on its channel's queue,
    # and the broadcast's expansion (producer-side work since issue 16: it was
    # the bench process' insert before) on the default queue, in another process.
    with bench.workers(queues=["telegram"], profile="pipeline", **LIMITER_OUT_OF_REACH) as (worker,), \
            bench.workers(queues=["default"], concurrency=4, **LIMITER_OUT_OF_REACH) as (expander,):
        for _round in range(p["pipeline_rounds"]):
            bench.fresh()
            sandbox_before, client_before = cpu_seconds(bench.sandbox.pid), time.process_time()
            raw = raw_http(bench, len(pks), bench.concurrency, chats)
            raw_sandbox_cpu.append((cpu_seconds(bench.sandbox.pid) - sandbox_before) / len(pks) * 1000)
            raw_client_cpu.append((time.process_time() - client_before) / len(pks) * 1000)
            bench.fresh()
            sandbox_before, worker_before = cpu_seconds(bench.sandbox.pid), cpu_seconds(worker.pid)
            expander_before = cpu_seconds(expander.pid)
            started = time.perf_counter()
            result = router.broadcast_to_role("OPERATOR", TITLE, BODY, priority="high", message_type=MESSAGE_TYPE)
            total = result["total"]
            sent, waited, finished = _wait_rows(_sent(), lambda n, t=total: n >= t, timeout=300)
            if not finished:
                raise RuntimeError(f"pipeline: only {sent} of {total} messages SENT after {waited:.0f} s")
            rate = total / (time.perf_counter() - started)
            worker_cpu.append((cpu_seconds(worker.pid) - worker_before) / total * 1000)
            expander_cpu.append((cpu_seconds(expander.pid) - expander_before) / total * 1000)
            sandbox_cpu.append((cpu_seconds(bench.sandbox.pid) - sandbox_before) / total * 1000)
            raw_rates.append(raw)
            pipe_rates.append(rate)
            ratios.append(rate / raw)
            bench.log(f"  pipeline round: {rate:.0f} msg/s vs raw HTTP {raw:.0f} msg/s ({total} messages)")
    return {
        "pipeline_msgs_per_s": median(pipe_rates),
        "raw_http_msgs_per_s": median(raw_rates),
        "pipeline_over_raw_http": median(ratios),
        # Where the time goes: CPU per message of the worker's process tree
        # against the plain loop's client, and of the sandbox in both.
        "pipeline_worker_cpu_ms_per_msg": median(worker_cpu),
        # The broadcast's expansion into rows (plan, insert, publish), in the default-queue worker.
        "pipeline_expansion_cpu_ms_per_msg": median(expander_cpu),
        "raw_http_client_cpu_ms_per_msg": median(raw_client_cpu),
        "pipeline_sandbox_cpu_ms_per_msg": median(sandbox_cpu),
        "raw_http_sandbox_cpu_ms_per_msg": median(raw_sandbox_cpu),
    }


# -- 3. rate-limit efficiency -------------------------------------------------
TELEGRAM_LIMIT = 30.0


def _strict_paced_broadcast(bench, n, **workers):
    """A broadcast to ``n`` chats with the sandbox as strict as the issue-17
    stand-in (30/s per bot, burst 10, AND at most 30 in any 1-s sliding
    window whose 429 blocks the bot; arrivals at 150 ms + 0-100 ms of
    jitter), the shared limiter at 30/s, through the workers asked for.
    Rate = (n-1) / span of the sandbox's received_at; the limit is the baseline."""
    from notifications.message_router import MessageRouter

    limit = TELEGRAM_LIMIT
    bench.fresh(limits_enabled=True, bot_rate=limit, latency_ms=150, latency_jitter_ms=100, bot_window_s=1.0)
    base = CHAT_BASE["TECHNICIAN"]
    bench.population("TECHNICIAN", n, base)
    with bench.workers(**workers, RATE_LIMIT_TELEGRAM_ACCOUNT=f"{limit:g}/s"):
        MessageRouter().broadcast_to_role("TECHNICIAN", TITLE, BODY, priority="high", message_type=MESSAGE_TYPE)
        _wait_expanded()
        _wait_rows(_unfinished(), lambda left: left == 0, timeout=max(60.0, 4 * n / limit))
    unfinished = _unfinished().count()
    received = sorted(m["received_at"] for m in bench.sandbox.messages() if base <= int(m["chat_id"]) < base + n)
    stats = bench.sandbox.stats()
    rate = (len(received) - 1) / (received[-1] - received[0]) if len(received) > 1 else 0.0
    # Diagnosis: the pace between the 5th and 95th percentile of arrivals,
    # apart from a slow start or a tail of late (deferred) messages.
    lo, hi = int(0.05 * (len(received) - 1)), int(0.95 * (len(received) - 1))
    steady = (hi - lo) / (received[hi] - received[lo]) if hi > lo and received[hi] > received[lo] else 0.0
    return {
        "efficiency": rate / limit,
        "429": stats.get("responses_by_status", {}).get("429", 0),
        "sent_inside_retry_after": stats.get("requests_inside_retry_after", 0),
        "rate_per_s": rate,
        "steady_rate_per_s": steady,
        "span_s": received[-1] - received[0] if received else 0.0,
        "delivered": len(received) / n,
        "unfinished": unfinished,
    }


def ratelimit(bench):
    """Two worker processes (-c 16 each: 30/s x 0.2 s = 6 requests in flight
    are needed, and fewer threads hold fewer PostgreSQL connections on a
    shared server) against the strict provider."""
    result = _strict_paced_broadcast(bench, bench.params["ratelimit_chats"], count=2, concurrency=16,
                                     profile="ratelimit")
    return {f"ratelimit_{key}": value for key, value in result.items()}


def default_worker(bench):
    """The same strict provider, delivered by ONE worker started as a user
    first types it, `celery -A celery_app worker` with no -P/-c (the settings
    choose the pool); baseline: Celery's own default, prefork with one
    process per core (CELERY_WORKER_POOL=prefork, CELERY_WORKER_CONCURRENCY
    unset = os.cpu_count()), in the same run."""
    import os

    n = bench.params["default_worker_chats"]
    plain = _strict_paced_broadcast(bench, n, plain=True)
    prefork = _strict_paced_broadcast(bench, n, plain=True, CELERY_WORKER_POOL="prefork",
                                      CELERY_WORKER_CONCURRENCY=str(os.cpu_count() or 1))
    margin = _telegram_margin()
    return {
        "default_worker_ratelimit_efficiency": plain["efficiency"],
        "default_worker_429": plain["429"],
        # Against the pace the limiter aims at (the limit x RATE_LIMIT_MARGIN).
        "default_worker_over_paced": plain["efficiency"] / margin,
        "default_worker_delivered": plain["delivered"],
        "celery_default_prefork_efficiency": prefork["efficiency"],
        "celery_default_prefork_429": prefork["429"],
        "default_worker_over_celery_default": plain["efficiency"] / prefork["efficiency"]
        if prefork["efficiency"] else 0.0,
    }


def _telegram_margin():
    from django.conf import settings

    return settings.RATE_LIMIT["MARGIN"].get("TELEGRAM", 1.0)


# -- 4. broadcast fan-out -----------------------------------------------------
def _broadcast_queued():
    """Every row of the broadcast exists (the record is expanded) and every
    QUEUED row has been published."""
    from notifications.models import MessageLog, RoleBroadcast

    return (not RoleBroadcast.objects.filter(expanded_at__isnull=True).exists()
            and not MessageLog.objects.filter(status="QUEUED", published_at__isnull=True).exists())


def _wait_expanded(timeout=120):
    """Until every RoleBroadcast is expanded into its MessageLog rows (a
    worker's task), so a scenario that waits on rows sees them all."""
    from notifications.models import RoleBroadcast

    pending = RoleBroadcast.objects.filter(expanded_at__isnull=True)
    left, waited, finished = _wait_rows(pending, lambda c: c == 0, timeout=timeout)
    if not finished:
        raise RuntimeError(f"{left} broadcast(s) still not expanded after {waited:.0f} s")


def broadcast(bench):
    """broadcast_to_role to N users: until the call returns (it writes one
    RoleBroadcast), and until a worker has expanded it into every row and
    published them (published_at on every row). The worker consumes only the
    default queue (expansion tasks), so deliveries do not compete. Then the
    call's return at 100,000 recipients. Baselines: one bulk_create of N
    equivalent rows, and publishing N tasks directly."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from notifications.message_router import MessageRouter
    from notifications.models import MessageLog
    from workers.tasks import deliver_message

    n, big = bench.params["broadcast_users"], bench.params["broadcast_big_users"]
    bench.fresh()
    pks = bench.population("SUPERVISOR", n, CHAT_BASE["SUPERVISOR"])

    now = timezone.now()
    rows = [MessageLog(user_id=pk, channel_type="TELEGRAM", recipient=str(pk), message_type="announcement",
                       title=TITLE, body=BODY, created_at=now, updated_at=now, next_attempt_at=now) for pk in pks]
    started = time.perf_counter()
    with transaction.atomic():
        MessageLog.objects.bulk_create(rows, batch_size=1000)
    insert_s = time.perf_counter() - started
    MessageLog.objects.all().delete()

    def returns(samples=3):
        """(median seconds of ``samples`` calls, recipients) with no worker
        running; each call's record is deleted and its expansion task flushed
        with the broker."""
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            recipients = MessageRouter().broadcast_to_role("SUPERVISOR", TITLE, BODY, priority="normal")["total"]
            times.append(time.perf_counter() - started)
            bench.fresh()
        return median(times), recipients

    return_s, _total = returns()
    with bench.workers(queues=["default"], profile="broadcast"):
        started = time.perf_counter()
        result = MessageRouter().broadcast_to_role("SUPERVISOR", TITLE, BODY, priority="normal")
        return_with_worker_s = time.perf_counter() - started
        total = result["total"]
        deadline = started + 300
        while not _broadcast_queued() and time.perf_counter() < deadline:
            time.sleep(0.02)
        queued_s = time.perf_counter() - started
        written = MessageLog.objects.count()
        if not _broadcast_queued() or written != total:
            raise RuntimeError(f"broadcast: {written} of {total} rows written, "
                               f"{MessageLog.objects.filter(published_at__isnull=True).count()} unpublished "
                               f"after {queued_s:.0f} s")
        from workers import broker

        broker_len = broker.queue_depths(["telegram"])["telegram"]

    bench.fresh()
    started = time.perf_counter()
    for pk in pks:
        deliver_message.apply_async(args=[pk], queue="telegram")
    publish_s = time.perf_counter() - started
    bench.fresh()

    # The call at 100,000 recipients (no worker: only the return is measured).
    # The extra users go afterwards: other scenarios broadcast to this role.
    started = time.perf_counter()
    big_pks = bench.population("SUPERVISOR", big, CHAT_BASE["SUPERVISOR"])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # as autovacuum would have, for a table this size
            cursor.execute("ANALYZE cmms_user; ANALYZE notifications_userchannelpreference")
    bench.log(f"  broadcast: {len(big_pks)} users ready in {time.perf_counter() - started:.1f} s")
    big_return_s, big_total = returns()
    started = time.perf_counter()
    get_user_model().objects.filter(role="SUPERVISOR", pk__gt=pks[-1]).delete()
    bench.log(f"  broadcast: {len(big_pks) - len(pks)} extra users deleted in {time.perf_counter() - started:.1f} s")
    bench.fresh()
    return {
        "broadcast_10k_return_s": return_s,
        "broadcast_100k_return_s": big_return_s,
        # The timed call of the all-queued measurement, with the expanding worker running.
        "broadcast_10k_return_with_worker_s": return_with_worker_s,
        "broadcast_10k_all_queued_s": queued_s,
        "broadcast_10k_bulk_insert_s": insert_s,
        "broadcast_10k_direct_publish_s": publish_s,
        "broadcast_return_over_insert": return_s / insert_s,
        "broadcast_queued_over_direct_publish": queued_s / publish_s,
        "broadcast_users": total,
        "broadcast_100k_users": big_total,
        "broadcast_broker_queue_len": broker_len,
    }


# -- 5. latency at light load -------------------------------------------------
def latency(bench):
    """One message at a time: from before send_to_user to the sandbox's
    received_at (same clock: one machine). Baseline: the same HTTP call made
    directly, one at a time, in the same run."""
    from notifications.message_router import MessageRouter

    n = bench.params["latency_samples"]
    bench.fresh()
    # One user (one chat) per sample, as at light load: a chat's own limit
    # (about 1/s) must not pace the samples.
    users = _users(bench.population("OPERATOR", n + 1, CHAT_BASE["OPERATOR"]))
    chat = str(CHAT_BASE["OPERATOR"])
    channel, outgoing = _channel(bench)
    raw = []
    for _ in range(n):
        started = time.perf_counter()
        channel.send(chat, outgoing)
        raw.append((time.perf_counter() - started) * 1000)
        time.sleep(0.005)
    bench.fresh()
    router = MessageRouter()
    sent_at = {}
    with bench.workers(profile="latency", **LIMITER_OUT_OF_REACH):
        router.send_to_user(users[n], TITLE, "calentamiento")  # first task: imports, connections
        _wait_rows(_unfinished(), lambda c: c == 0, timeout=30)
        for i in range(n):
            sent_at[i] = time.time()
            result = router.send_to_user(users[i], TITLE, f"muestra {i:05d}", message_type=MESSAGE_TYPE)
            _wait_rows(_sent().filter(pk__in=result.message_ids.values()), lambda c: c == 1, timeout=30, interval=0.001)
            time.sleep(0.02)
    e2e = []
    for message in bench.sandbox.messages():
        text = message["raw_text"]
        if "muestra " in text:
            i = int(text.rsplit("muestra ", 1)[1][:5])
            e2e.append((message["received_at"] - sent_at[i]) * 1000)
    if len(e2e) != n:
        raise RuntimeError(f"latency: {len(e2e)} of {n} samples reached the sandbox")
    return {
        "e2e_p50_ms": median(e2e),
        "e2e_p99_ms": percentile(e2e, 99),
        "raw_http_p50_ms": median(raw),
        "raw_http_p99_ms": percentile(raw, 99),
    }


# -- 6. memory ----------------------------------------------------------------
def memory(bench):
    """Resident memory of a fresh worker's process tree after delivering N
    messages; baseline: the same worker idle after start."""
    from notifications.message_router import MessageRouter

    n = bench.params["memory_messages"]
    bench.fresh()
    bench.population("SUPERVISOR", n, CHAT_BASE["SUPERVISOR"])
    with bench.workers(profile="memory", **LIMITER_OUT_OF_REACH) as (worker,):
        time.sleep(1.0)
        idle = rss_mb(worker.pid)
        total = MessageRouter().broadcast_to_role("SUPERVISOR", TITLE, BODY)["total"]
        timeout = max(120.0, total / 20)
        _wait_rows(_sent(), lambda c: c >= total // 2, timeout=timeout, interval=0.2)
        half = rss_mb(worker.pid)  # growth that stops by here is warm-up, not a leak
        sent, waited, finished = _wait_rows(_sent(), lambda c: c >= total, timeout=timeout, interval=0.2)
        if not finished:
            raise RuntimeError(f"memory: only {sent} of {total} messages SENT after {waited:.0f} s")
        after = rss_mb(worker.pid)
    return {
        "worker_rss_mb": after,
        "worker_rss_idle_mb": idle,
        "worker_rss_half_mb": half,
        "worker_rss_growth": after / idle,
        "memory_messages": total,
    }


# -- 7. the dashboard and /metrics over a large history --------------------------
def dashboard(bench):
    """The dashboard page and /metrics with N MessageLog rows spread over 30
    days (a mix of channels and outcomes, a backlog of queued rows). Each is
    timed five times in-process (Django's test client), median reported.
    Baseline: one plain ``COUNT(*)`` over the whole table in the same run."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from notifications.models import MessageLog

    n = bench.params["dashboard_rows"]
    bench.fresh()
    now = timezone.now()
    channels = ("TELEGRAM", "TELEGRAM", "EMAIL", "SMS", "IN_APP")
    statuses = ("SENT", "SENT", "DELIVERED", "READ", "FAILED", "SKIPPED", "SENT", "DELIVERED")
    step = timedelta(days=30) / n
    batch = []
    for i in range(n):
        created = now - step * i
        status = "QUEUED" if i < 200 else statuses[i % len(statuses)]
        batch.append(MessageLog(
            channel_type=channels[i % len(channels)], recipient=str(i), message_type="announcement", title=TITLE,
            body=BODY, status=status, created_at=created, updated_at=created,
            sent_at=created + timedelta(milliseconds=200 + i % 900) if status not in ("QUEUED", "FAILED", "SKIPPED") else None,
            failed_at=created if status == "FAILED" else None,
            last_error=f"Telegram 400: Bad Request: chat not found ({i % 7})" if status == "FAILED" else "",
        ))
        if len(batch) == 20_000:
            MessageLog.objects.bulk_create(batch)
            batch = []
    MessageLog.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would give a table this size
    from notifications import stats

    started = time.perf_counter()
    stats.backfill()  # what beat's rollup-message-stats keeps up to date
    backfill_s = time.perf_counter() - started
    started = time.perf_counter()
    stats.rollup()
    rollup_ms = (time.perf_counter() - started) * 1000
    supervisor = get_user_model().objects.create(username="bench-supervisor", role="SUPERVISOR")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(supervisor)

    def timed(fn, times=5):
        samples = []
        for _ in range(times):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1000)
        return median(samples)

    def page():
        assert client.get("/dashboard/").status_code == 200

    def scrape():
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200

    page()  # warm the templates and the translation catalogs
    dashboard_ms, metrics_ms = timed(page), timed(scrape)
    count_ms = timed(lambda: MessageLog.objects.count())
    with connection.cursor() as cursor:  # one statement: Django's delete() would load a million ids
        cursor.execute(f"DELETE FROM {MessageLog._meta.db_table}")
    bench.fresh()
    return {
        "dashboard_1m_ms": dashboard_ms,
        "metrics_1m_ms": metrics_ms,
        "dashboard_count_baseline_ms": count_ms,
        "dashboard_over_count": dashboard_ms / max(count_ms, 0.001),
        "dashboard_rows": n,
        "stats_backfill_s": backfill_s,
        "stats_rollup_ms": rollup_ms,
    }

# -- 8. SMS ---------------------------------------------------------------------
def sms(bench):
    """SMS under the sending number's limit: a critical broadcast to N users
    with one phone each, the Twilio sandbox refusing (20429) anything faster
    than the limit in segments/s; rate = (n - 1) / span of the sandbox's
    arrivals, baseline the configured limit. Then the status-callback view:
    signed POSTs through Django's request handling against the baseline of
    recording the same event directly (inbound.record)."""
    from notifications.message_router import MessageRouter

    from .harness import TwilioSandboxProcess

    n, limit = bench.params["sms_messages"], 10.0
    bench.fresh()
    pks = _sms_population(n)
    # The sandbox tolerates 0.4 s of jitter (burst 5 at 10/s), as the Telegram
    # scenario's sandbox does (burst 10 at 30/s): a worker thread woken late on
    # a loaded machine must not turn into a 429, a wrong pace must.
    twilio = TwilioSandboxProcess(sender_rate=limit, sender_burst=5).start()
    try:
        with bench.workers(concurrency=8, profile="sms", RATE_LIMIT_SMS_ACCOUNT=f"{limit:g}/s", **twilio.env()):
            MessageRouter().broadcast_to_role("ADMIN", "Alerta crítica", "Motor sobrecalentado en CAM-07",
                                              priority="critical", message_type="critical_alert")
            _wait_expanded()
            _wait_rows(_unfinished(), lambda left: left == 0, timeout=max(60.0, 4 * n / limit))
        unfinished = _unfinished().count()
        received = sorted(m["received_at"] for m in twilio.get("messages")["messages"])
        stats = twilio.get("stats")
    finally:
        twilio.stop()
    rate = (len(received) - 1) / (received[-1] - received[0]) if len(received) > 1 else 0.0
    return {
        "sms_efficiency": rate / limit,
        "sms_429": stats.get("responses_by_status", {}).get("429", 0),
        "sms_rate_per_s": rate,
        "sms_delivered": len(received) / len(pks),
        "sms_unfinished": unfinished,
        **_status_callback_latency(bench.params["callback_samples"]),
    }


def _sms_population(n):
    """``n`` ADMIN users (no other scenario uses the role), each with an SMS
    phone of its own (the preference's default: critical only)."""
    from django.contrib.auth import get_user_model

    from notifications.models import UserChannelPreference

    User = get_user_model()
    existing = list(User.objects.filter(role="ADMIN").order_by("pk").values_list("pk", flat=True))
    if len(existing) >= n:
        return existing[:n]
    for i in range(len(existing), n):
        user = User.objects.create(username=f"bench-sms-{i}", role="ADMIN", password="!", is_active=True)
        UserChannelPreference.objects.create(user=user, channel_type="SMS", channel_user_id=f"+5698760{i:04d}")
        existing.append(user.pk)
    return existing


def _status_callback_latency(samples):
    from django.conf import settings
    from django.test import Client
    from django.test.utils import override_settings

    from notifications import inbound
    from notifications.twilio_signature import compute
    from sandbox.twilio import DEFAULT_AUTH_TOKEN

    path = "/sms/twilio/status/"
    url = settings.SITE_URL + path
    client = Client(HTTP_HOST=url.split("/")[2].split(":")[0])
    view, direct = [], []
    with override_settings(TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN):
        for i in range(samples + 10):  # the first ten warm up imports and connections
            params = {"MessageSid": f"SM{i:032x}", "MessageStatus": "delivered", "AccountSid": "AC1",
                      "To": "+56987600001", "From": "+15005550006", "ApiVersion": "2010-04-01"}
            signature = compute(DEFAULT_AUTH_TOKEN, url, params)
            started = time.perf_counter()
            response = client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 204:
                raise RuntimeError(f"status callback answered {response.status_code}")
            started = time.perf_counter()
            inbound.record("SMS", f"SM{i:032x}:sent", params, kind="status", sender=params["To"])
            baseline = (time.perf_counter() - started) * 1000
            if i >= 10:
                view.append(elapsed)
                direct.append(baseline)
    return {
        "sms_callback_p50_ms": median(view),
        "sms_callback_p99_ms": percentile(view, 99),
        "sms_callback_record_p50_ms": median(direct),
        "sms_callback_over_record": median(view) / median(direct),
    }


# -- 10. the interactive bot -----------------------------------------------------
def bot(bench):
    """A button press on a work-order alert, at light load: from the moment
    the update is POSTed to the webhook view to the order's new status
    (decided_at, written by the worker) and to the edited message (the
    sandbox's edited_at; same clock). Baselines in the same run: one
    editMessageText made directly, and the webhook view refusing a wrong
    secret (403: the same Django stack without recording anything)."""
    from datetime import timedelta

    from django.conf import settings
    from django.test import Client
    from django.utils import timezone

    from cmms.models import Asset, WorkOrder
    from notifications.channels.telegram import edit_message_text
    from notifications.models import MessageLog

    n = bench.params["bot_samples"]
    bench.fresh()
    settings.TELEGRAM_WEBHOOK_SECRET = secret = "bench-webhook-secret"
    users = _users(bench.population("TECHNICIAN", n + 1, CHAT_BASE["TECHNICIAN"]))
    channel, _outgoing = _channel(bench)
    raw = []
    for _ in range(n):
        sent = channel.call("sendMessage", chat_id=CHAT_BASE["TECHNICIAN"], text="base")
        started = time.perf_counter()
        edit_message_text(channel, CHAT_BASE["TECHNICIAN"], sent["message_id"], "base editada")
        raw.append((time.perf_counter() - started) * 1000)
    bench.fresh()
    client = Client(HTTP_HOST="127.0.0.1")
    url = "/telegram/webhook/"
    asset, _ = Asset.objects.get_or_create(code="BENCH-BOT", defaults={"name": "Camión bench"})
    to_json = "application/json"
    press_to_status, press_to_edit, view_ms, refused_ms = [], [], [], []
    with bench.workers(profile="bot", **LIMITER_OUT_OF_REACH):
        orders = []
        for user in users:
            order = WorkOrder.objects.create(asset=asset, title="Cambio de filtro",
                                             due_at=timezone.now() + timedelta(days=1))
            order.assign(user)
            orders.append(order)
        _wait_rows(_unfinished(), lambda c: c == 0, timeout=120)
        for i, (user, order) in enumerate(zip(users, orders, strict=True)):
            log = MessageLog.objects.get(user=user, related_object_id=str(order.pk), channel_type="TELEGRAM")
            chat, message_id = int(log.recipient), int(log.provider_message_id.split(",")[-1])
            update = bench.sandbox.inject_update({"callback_query": {
                "chat_id": chat, "message_id": message_id, "data": log.payload["actions"][0]["callback_data"]}})
            started = time.time()
            t0 = time.perf_counter()
            response = client.post(url, update, content_type=to_json, HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=secret)
            view = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"bot: the webhook answered {response.status_code}")
            edited = _wait_edit(bench, chat, message_id, timeout=30)
            decided = WorkOrder.objects.filter(pk=order.pk).values_list("decided_at", flat=True).get()
            if i == 0:
                continue  # the first press pays for imports and connections
            view_ms.append(view)
            press_to_edit.append((edited - started) * 1000)
            press_to_status.append((decided.timestamp() - started) * 1000)
            t0 = time.perf_counter()
            client.post(url, update, content_type=to_json, HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="wrong")
            refused_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    return {
        "bot_press_to_status_p50_ms": median(press_to_status),
        "bot_press_to_status_p99_ms": percentile(press_to_status, 99),
        "bot_press_to_edit_p50_ms": median(press_to_edit),
        "bot_press_to_edit_p99_ms": percentile(press_to_edit, 99),
        "bot_raw_edit_p50_ms": median(raw),
        "bot_webhook_view_p50_ms": median(view_ms),
        "bot_webhook_view_p99_ms": percentile(view_ms, 99),
        "bot_webhook_refused_p50_ms": median(refused_ms),
    }


def _wait_edit(bench, chat, message_id, timeout):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for message in bench.sandbox.messages(chat_id=chat):
            if message["message_id"] == message_id and message["edited_at"]:
                return message["edited_at"]
        time.sleep(0.002)
    raise RuntimeError(f"bot: message {message_id} in chat {chat} was not edited within {timeout} s")
# -- 9. recovery ----------------------------------------------------------------
def kill9(bench):
    """Two workers share a broadcast (200 ms provider latency); one is killed
    with kill -9 a quarter of the way in. kill9_recovery_s: from the kill
    until every row it held (SENDING) is SENT, the relay running every 5 s as
    beat does. The baseline is the lease, which alone decided it before
    worker heartbeats (DELIVERY_LEASE_S, production default)."""
    from django.conf import settings
    from django.db import transaction

    from notifications.message_router import MessageRouter
    from notifications.models import MessageLog
    from tests.support.processes import Worker
    from tests.support.recovery import RelayTicker, kill9_recovery

    n = bench.params["recovery_messages"]
    base = CHAT_BASE["TECHNICIAN"]
    bench.fresh(latency_ms=200)
    users = _users(bench.population("TECHNICIAN", n, base))
    started = []

    def start_worker():
        worker = Worker(bench.worker_env(**LIMITER_OUT_OF_REACH), pool=bench.pool, concurrency=16).start(timeout=90)
        started.append(worker)
        return worker

    def publish():
        router = MessageRouter()
        with transaction.atomic():
            for user in users:
                router.send_to_user(user, TITLE, BODY, message_type=MESSAGE_TYPE)
        return list(MessageLog.objects.values_list("pk", flat=True))

    try:
        with RelayTicker(every_s=5.0):
            result = kill9_recovery(bench.sandbox, start_worker, publish, n, base, timeout=300)
    finally:
        for worker in started:
            worker.kill(hard=True)
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
    lease = settings.DELIVERY["LEASE_S"]
    bench.log(f"  kill -9: {result['held']} held rows retried in {result['recovery_s']:.1f} s (lease {lease:g} s)")
    return {
        "kill9_recovery_s": result["recovery_s"],
        "kill9_lease_s": lease,
        "kill9_recovery_over_lease": result["recovery_s"] / lease,
        "kill9_rows_held": result["held"],
        "kill9_all_settled_s": result["all_settled_s"],
        "kill9_unflagged_held": result["held"] - result["flagged"],
    }


def db_outage(bench):
    """A worker on a private PostgreSQL cluster (initdb'd for the run, never
    the shared server) delivers a broadcast; the cluster is stopped
    (immediate) for 10 s a quarter of the way in. db_outage_recovery_s: from
    the database's return until the sandbox receives the next message. The
    baseline is the relay's republish delay, which decided it before tasks
    retried themselves (DELIVERY_RELAY_REPUBLISH_AFTER_S)."""
    from django.conf import settings

    from tests.support.recovery import db_outage_recovery

    n = bench.params["recovery_messages"]
    bench.fresh(latency_ms=150)
    result = db_outage_recovery(bench.sandbox, bench.worker_env(**LIMITER_OUT_OF_REACH), n=n, outage_s=10.0,
                                log=bench.log)
    republish = settings.DELIVERY["RELAY_REPUBLISH_AFTER_S"]
    return {
        "db_outage_recovery_s": result["resumed_s"],
        "db_outage_all_sent_s": result["all_sent_s"],
        "db_outage_republish_s": republish,
        "db_outage_recovery_over_republish": result["resumed_s"] / republish,
        "db_outage_rows_not_sent": n - result["statuses"].get("SENT", 0),
        "db_outage_duplicates": result["duplicates"],
    }


# -- 11. e-mail ----------------------------------------------------------------------
EMAIL_ROLE = "ADMIN"  # shared with the SMS scenario: see _email_population
EMAIL_LIMIT_OUT_OF_REACH = {"RATE_LIMIT_EMAIL_ACCOUNT": "1000000/s"}


def _email_population(count):
    """``count`` users with only an EMAIL preference (bench-mail-i@bench.cmms.local),
    enabled only while this scenario runs (``_email_preferences``), so that
    another scenario's broadcast to their role (the SMS one, to ADMIN) sends
    them nothing; this scenario addresses them one by one."""
    from django.contrib.auth import get_user_model

    from notifications.models import ChannelType, UserChannelPreference

    User = get_user_model()
    mine = User.objects.filter(role=EMAIL_ROLE, username__startswith="bench-mail-")
    existing = list(mine.order_by("pk").values_list("pk", flat=True))
    if len(existing) < count:
        User.objects.bulk_create([User(username=f"bench-mail-{i}", role=EMAIL_ROLE, password="!", is_active=True)
                                  for i in range(len(existing), count)])
        created = mine.exclude(pk__in=existing).values_list("pk", "username")
        UserChannelPreference.objects.bulk_create([
            UserChannelPreference(user_id=pk, channel_type=ChannelType.EMAIL, channel_user_id=f"{name}@bench.cmms.local")
            for pk, name in created])
        existing = list(mine.order_by("pk").values_list("pk", flat=True))
    return existing[:count]


def _email_preferences(pks, enabled):
    from notifications.models import UserChannelPreference

    UserChannelPreference.objects.filter(user_id__in=pks, channel_type="EMAIL").update(is_enabled=enabled)


def raw_smtplib(smtp, total, threads):
    """The plain loop e-mail is compared with: ``threads`` threads, each with
    one smtplib connection, sending the same composed message (no PDF) to the
    same addresses; no templates, Celery, Redis or database."""
    import smtplib

    from notifications.channels import OutgoingMessage
    from notifications.channels.email import as_bytes, compose

    data = as_bytes(compose(OutgoingMessage(title=TITLE, body=BODY, emoji="📋", priority="high"),
                            "bench-mail-0@bench.cmms.local", "CMMS <cmms@bench.cmms.local>"))
    counter, lock = itertools.count(), threading.Lock()
    barrier = threading.Barrier(threads + 1)
    errors = []

    def run():
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=30) as conn:
            barrier.wait()
            while True:
                with lock:
                    i = next(counter)
                if i >= total:
                    return
                try:
                    conn.sendmail("cmms@bench.cmms.local", [f"bench-mail-{i % total}@bench.cmms.local"], data)
                except smtplib.SMTPException as exc:
                    errors.append(exc)

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"smtplib loop: {len(errors)} errors, first: {errors[0]}")
    return total / elapsed


def _email_round(bench, smtp, total, send):
    """Queue ``total`` e-mails in one transaction (published at its commit)
    and time until every row is SENT; returns messages per second."""
    from django.db import transaction

    bench.fresh()
    smtp.reset()
    with transaction.atomic():
        send()
        started = time.perf_counter()
    sent, waited, finished = _wait_rows(_sent(), lambda n: n >= total, timeout=300)
    if not finished:
        raise RuntimeError(f"email: only {sent} of {total} messages SENT after {waited:.0f} s")
    rate = total / (time.perf_counter() - started)
    if smtp.captured() < total:
        raise RuntimeError(f"email: {total} SENT but the SMTP server captured {smtp.captured()}")
    return rate


def email(bench):
    """One worker delivering e-mail to the local SMTP server (its own
    process), against a plain smtplib loop with as many threads and
    connections in the same run, alternated in rounds: a broadcast without
    attachment, then assignments that each carry the work order's PDF
    (built in the worker). Also the PDF's build time in this process."""
    from cmms import work_order_pdf
    from cmms.models import Asset, WorkOrder
    from notifications.message_router import MessageRouter

    from .harness import SmtpSandboxProcess

    p = bench.params
    total = p["email_messages"]
    pks = _email_population(total)
    users = _users(pks)
    asset, _new = Asset.objects.get_or_create(code="BENCH-AB01", defaults={"name": "Camión <A&B>_01", "site": "Norte"})
    order = WorkOrder.objects.create(asset=asset, title="Cambio de aceite y filtros", description=BODY * 3)
    router = MessageRouter()

    def broadcast():  # a notice to everyone, one call per recipient (see _email_population)
        for user in users:
            router.send_to_user(user, TITLE, BODY, message_type="announcement", priority="normal")

    def assignments():
        for user in users:
            router.send_to_user(user, TITLE, BODY, message_type=MESSAGE_TYPE, related_object_type="work_order",
                                related_object_id=str(order.pk), link=order.admin_url())

    _email_preferences(pks, True)
    smtp = SmtpSandboxProcess().start()
    raw_rates, plain_rates, pdf_rates = [], [], []
    raw_server_cpu, server_cpu, worker_cpu = [], [], []
    try:
        with bench.workers(profile="email", EMAIL_URL=smtp.url, **EMAIL_LIMIT_OUT_OF_REACH) as (worker,):
            for _round in range(p["email_rounds"]):
                smtp.reset()
                before = cpu_seconds(smtp.pid)
                raw_rates.append(raw_smtplib(smtp, total, bench.concurrency))
                raw_server_cpu.append((cpu_seconds(smtp.pid) - before) / total * 1000)
                before, worker_before = cpu_seconds(smtp.pid), cpu_seconds(worker.pid)
                plain_rates.append(_email_round(bench, smtp, total, broadcast))
                server_cpu.append((cpu_seconds(smtp.pid) - before) / total * 1000)
                worker_cpu.append((cpu_seconds(worker.pid) - worker_before) / total * 1000)
                pdf_rates.append(_email_round(bench, smtp, total, assignments))
                bench.log(f"  email round: {plain_rates[-1]:.0f} msg/s, with PDF {pdf_rates[-1]:.0f} msg/s, "
                          f"smtplib loop {raw_rates[-1]:.0f} msg/s ({total} messages)")
    finally:
        smtp.stop()
        _email_preferences(pks, False)
    builds = []
    for _i in range(p["pdf_builds"]):
        started = time.perf_counter()
        work_order_pdf.attachment(order.pk)
        builds.append((time.perf_counter() - started) * 1000)
    return {
        "email_msgs_per_s": median(plain_rates),
        "smtplib_msgs_per_s": median(raw_rates),
        "email_over_smtplib": median([a / b for a, b in zip(plain_rates, raw_rates, strict=True)]),
        "email_pdf_msgs_per_s": median(pdf_rates),
        "email_pdf_over_smtplib": median([a / b for a, b in zip(pdf_rates, raw_rates, strict=True)]),
        # The PDF of one work order, read from the database and drawn (what a worker does per e-mail).
        "pdf_build_ms": median(builds),
        "pdf_build_p99_ms": percentile(builds, 99),
        # Where the time goes: the SMTP server's CPU per message bounds both loops.
        "email_worker_cpu_ms_per_msg": median(worker_cpu),
        "email_smtp_server_cpu_ms_per_msg": median(server_cpu),
        "smtplib_smtp_server_cpu_ms_per_msg": median(raw_server_cpu),
    }



# -- 11. in-app push over WebSocket -------------------------------------------
def _inbox_users(n):
    """``n`` users with only an IN_APP preference and a session each, role
    ADMIN; the scenario deletes them at its end (``_drop_inbox_users``), so
    the SMS scenario's ADMIN population never includes them."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from notifications.models import ChannelType, UserChannelPreference

    User = get_user_model()
    have = User.objects.filter(username__startswith="bench-inbox-").count()
    User.objects.bulk_create([User(username=f"bench-inbox-{i}", role="ADMIN", password="!", is_active=True)
                              for i in range(have, n)], batch_size=2000)
    users = list(User.objects.filter(username__startswith="bench-inbox-").order_by("pk")[:n])
    UserChannelPreference.objects.bulk_create(
        [UserChannelPreference(user=u, channel_type=ChannelType.IN_APP) for u in users], ignore_conflicts=True)
    sessions = []
    for user in users:
        store = SessionStore()
        store.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                      HASH_SESSION_KEY: user.get_session_auth_hash()})
        store.create()
        sessions.append(store.session_key)
    return users, sessions


def _drop_inbox_users(sessions):
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session

    get_user_model().objects.filter(username__startswith="bench-inbox-").delete()
    Session.objects.filter(session_key__in=sessions).delete()


class _InboxClients:
    """N WebSocket clients on one event loop in a thread of this process, each
    logged in as its own user; records when each push arrives."""

    def __init__(self, url, origin, sessions):
        self.url, self.origin, self.sessions = url, origin, sessions
        self.received = {}  # message_id -> (arrived at, the event)
        self.direct = {}  # a direct push's tag -> (arrived at, the event)
        self.arrived = threading.Condition()
        self.connected = 0
        self.errors = []
        self.loop = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="inbox-clients", daemon=True)

    def start(self, timeout):
        self.thread.start()
        if not self.ready.wait(timeout):
            raise RuntimeError(f"inbox: only {self.connected} of {len(self.sessions)} clients connected")
        if self.errors:
            raise RuntimeError(f"inbox: {len(self.errors)} clients failed to connect, first: {self.errors[0]}")
        return self

    def _run(self):
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._main())

    async def _main(self):
        import asyncio

        self.stop_event = asyncio.Event()
        sockets = []
        for start in range(0, len(self.sessions), 50):  # connect in waves, as pages would
            batch = self.sessions[start : start + 50]
            sockets += await asyncio.gather(*(self._connect(key) for key in batch))
        self.ready.set()
        readers = [asyncio.ensure_future(self._read(ws)) for ws in sockets if ws is not None]
        await self.stop_event.wait()
        for ws in sockets:
            if ws is not None:
                await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)

    async def _connect(self, session_key):
        from websockets.asyncio.client import connect

        try:
            ws = await connect(self.url, origin=self.origin, additional_headers={"Cookie": f"sessionid={session_key}"},
                               open_timeout=60, ping_interval=None, max_queue=64)
        except Exception as exc:  # noqa: BLE001 - reported by start()
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return None
        self.connected += 1
        return ws

    async def _read(self, ws):
        import json

        async for raw in ws:
            now = time.time()
            event = json.loads(raw)
            if event.get("type") != "new":
                continue
            with self.arrived:
                if event.get("message_id") is not None:
                    self.received[event["message_id"]] = (now, event)
                else:
                    self.direct[event.get("priority")] = (now, event)
                self.arrived.notify_all()

    def wait(self, table, key, timeout=30):
        with self.arrived:
            if not self.arrived.wait_for(lambda: key in table, timeout):
                raise RuntimeError(f"inbox: push {key} never reached its client")
            return table[key]

    def stop(self):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(30)


def inbox(bench):
    """Push latency from the in-app delivery task to a WebSocket client with
    N clients connected to one ASGI process (uvicorn), each logged in as its
    own user: the task stamps ``pushed_at`` just before group_send, the client
    stamps arrival (one machine, one clock). Also from the producer's call.
    Baseline: the same group_send made directly from this process."""
    from channels.layers import channel_layers
    from django.conf import settings

    from notifications import inbox as inbox_push
    from notifications.message_router import MessageRouter
    from tests.support.asgi import AsgiServer

    n, samples = bench.params["inbox_clients"], bench.params["inbox_samples"]
    bench.fresh()
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [{"address": bench.redis.url}]}}}
    channel_layers.backends.clear()
    users, sessions = _inbox_users(n)
    server = AsgiServer(bench.worker_env()).start()
    clients = None
    try:
        idle_rss = rss_mb(server.pid)
        clients = _InboxClients(f"{server.ws_url}/ws/inbox/", server.url, sessions).start(timeout=max(60.0, n / 10))
        time.sleep(1.0)
        held_rss = rss_mb(server.pid)
        direct = []
        for i in range(samples):
            tag = f"direct-{i}"
            started = time.time()
            inbox_push.push(users[i % n].pk, {"type": inbox_push.NEW, "priority": tag, "pushed_at": started})
            arrived, _event = clients.wait(clients.direct, tag)
            direct.append((arrived - started) * 1000)
        router = MessageRouter()
        task_to_client, producer_to_client = [], []
        with bench.workers(profile="inbox", queues=["inapp", "default"]):
            warm = router.send_to_user(users[0], TITLE, "calentamiento").message_ids["IN_APP"]
            clients.wait(clients.received, warm, timeout=60)
            for i in range(samples):
                started = time.time()
                message_id = router.send_to_user(users[(i * 7919) % n], TITLE, f"muestra {i:05d}",
                                                 message_type=MESSAGE_TYPE).message_ids["IN_APP"]
                arrived, event = clients.wait(clients.received, message_id)
                task_to_client.append((arrived - event["pushed_at"]) * 1000)
                producer_to_client.append((arrived - started) * 1000)
                time.sleep(0.01)
        connected = clients.connected
        many = bench.params["inbox_page_rows"]
        page_small, page_many = _inbox_page_times(server, users, sessions, many, samples=max(10, samples // 10))
    finally:
        if clients:
            clients.stop()
        server.stop()
        _drop_inbox_users(sessions)
    return {
        "inbox_push_p50_ms": median(task_to_client),
        "inbox_push_p99_ms": percentile(task_to_client, 99),
        "inbox_e2e_p50_ms": median(producer_to_client),
        "inbox_e2e_p99_ms": percentile(producer_to_client, 99),
        "inbox_direct_p50_ms": median(direct),
        "inbox_direct_p99_ms": percentile(direct, 99),
        "inbox_push_over_direct": median(task_to_client) / median(direct),
        "inbox_clients": connected,
        "inbox_asgi_rss_idle_mb": idle_rss,
        "inbox_asgi_rss_mb": held_rss,
        "inbox_asgi_kb_per_client": (held_rss - idle_rss) * 1024 / max(connected, 1),
        "inbox_page_few_p50_ms": median(page_small),
        "inbox_page_many_p50_ms": median(page_many),
        "inbox_page_many_over_few": median(page_many) / median(page_small),
        "inbox_page_many_rows": many,
    }


def _inbox_page_times(server, users, sessions, many, samples):
    """GET /inbox/ (alternately the first and a deep page) for a user with 25
    notifications and for one with ``many`` (10,000 in full), over HTTP from
    the ASGI server."""
    import requests
    from django.utils import timezone

    from notifications.models import InAppNotification

    now = timezone.now()
    for user, count in ((users[-1], 25), (users[-2], many)):
        InAppNotification.objects.bulk_create(
            [InAppNotification(user=user, message_type=MESSAGE_TYPE, title=TITLE, body=BODY, created_at=now)
             for _ in range(count)], batch_size=2000)
    times = []
    for session in (sessions[-1], sessions[-2]):
        http = requests.Session()
        http.cookies.set("sessionid", session)
        taken = []
        for i in range(samples + 2):
            started = time.perf_counter()
            response = http.get(f"{server.url}/inbox/", params={"page": 1 if i % 2 else many // 50}, timeout=30)
            response.raise_for_status()
            if i >= 2:  # the first two warm the process up
                taken.append((time.perf_counter() - started) * 1000)
        times.append(taken)
    return times


SCENARIOS = {
    "producer": producer,
    "pipeline": pipeline,
    "ratelimit": ratelimit,
    "default_worker": default_worker,
    "broadcast": broadcast,
    "latency": latency,
    "memory": memory,
    "dashboard": dashboard,
    "sms": sms,
    "whatsapp": whatsapp,
    "bot": bot,
    "kill9": kill9,
    "db_outage": db_outage,
    "email": email,
    "escalation": escalation_scan,
    "inbox": inbox,
    "multihost": multihost,
}
