"""WhatsApp scenario: throughput at the business number's limit, and the
webhook's cost.

Parts: ``python -m sandbox.whatsapp`` in its own process (enforcing 80/s
with 130429 and the per-user pair rate with 131056, 100 ms latency), two
worker processes, and the product's WSGI application served by Django's
threaded server in this process, which takes the signed status webhooks.
Baselines in the same run: the configured limit itself, and the
verification handshake (a GET that records nothing) on the same server.
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time

import requests

from tests.support.processes import ROOT, free_port, wait_for

from .harness import cpu_seconds, median, percentile

# The number's throughput the product is configured for (Meta's default);
# BENCH_WHATSAPP_LIMIT runs the scenario at another one.
LIMIT = float(os.environ.get("BENCH_WHATSAPP_LIMIT", "80"))
PHONE_BASE = 56_940_000_000
VERIFY_TOKEN = "bench-verify-token"


class WhatsAppSandboxProcess:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "sandbox.whatsapp", "--port", str(self.port), "--quiet"],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, timeout=15, message="the WhatsApp sandbox")
        return self

    def _up(self):
        try:
            return self.http.get(self.url + "/", timeout=1).ok
        except requests.RequestException:
            return False

    def control(self, name, method="POST", **body):
        response = self.http.request(method, f"{self.url}/_sandbox/{name}", json=body or None, timeout=60)
        response.raise_for_status()
        return response.json()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class WebServer:
    """The product's WSGI app on Django's threaded development server (what
    ``make run`` serves the webhook with), quiet."""

    def __init__(self):
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler, get_internal_wsgi_application

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        self.server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
        self.server.set_app(get_internal_wsgi_application())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _recipients(n):
    """n users with a WhatsApp number each and an open window; created once per run."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from notifications.models import ChannelType, UserChannelPreference

    User = get_user_model()
    existing = list(User.objects.filter(username__startswith="bench-wa-").order_by("pk").values_list("pk", flat=True))
    if len(existing) < n:
        User.objects.bulk_create([User(username=f"bench-wa-{i}", role="ADMIN", password="!", is_active=False)
                                  for i in range(len(existing), n)], batch_size=2000)
        existing = list(User.objects.filter(username__startswith="bench-wa-").order_by("pk").values_list("pk",
                                                                                                        flat=True))
        UserChannelPreference.objects.filter(user_id__in=existing, channel_type=ChannelType.WHATSAPP).delete()
        UserChannelPreference.objects.bulk_create([
            UserChannelPreference(user_id=pk, channel_type=ChannelType.WHATSAPP, channel_user_id=f"+{PHONE_BASE + i}")
            for i, pk in enumerate(existing)], batch_size=2000)
    UserChannelPreference.objects.filter(channel_type=ChannelType.WHATSAPP).update(window_opened_at=timezone.now())
    return [(pk, f"+{PHONE_BASE + i}") for i, pk in enumerate(existing[:n])]


def _queue(recipients, body):
    from django.utils import timezone

    from notifications import dispatch
    from notifications.models import MessageLog

    now = timezone.now()
    rows = MessageLog.objects.bulk_create([
        MessageLog(user_id=pk, channel_type="WHATSAPP", recipient=phone, message_type="announcement",
                   title="Aviso de mantenimiento", body=body, created_at=now, updated_at=now, next_attempt_at=now)
        for pk, phone in recipients], batch_size=2000)
    dispatch.publish([(row.pk, "WHATSAPP") for row in rows])
    return [row.pk for row in rows]


def _wait(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def whatsapp(bench):
    from django.conf import settings

    from notifications.models import MessageLog, MessageStatus
    from sandbox import whatsapp as wsb

    n, samples = bench.params["whatsapp_messages"], bench.params["webhook_samples"]
    bench.fresh()
    MessageLog.objects.all().delete()
    recipients = _recipients(n + samples)
    sandbox = WhatsAppSandboxProcess().start()
    settings.WHATSAPP_APP_SECRET = wsb.DEFAULT_APP_SECRET
    settings.WHATSAPP_VERIFY_TOKEN = VERIFY_TOKEN
    env = {"WHATSAPP_API_URL": f"{sandbox.url}/v21.0", "WHATSAPP_ACCESS_TOKEN": wsb.DEFAULT_TOKEN,
           "WHATSAPP_PHONE_NUMBER_ID": wsb.DEFAULT_PHONE_NUMBER_ID, "RATE_LIMIT_WHATSAPP_ACCOUNT": f"{LIMIT:g}/s"}
    try:
        with WebServer() as web, bench.workers(count=2, concurrency=16, profile="whatsapp", **env) as workers:
            # Throughput first, without status webhooks: each message then costs
            # the pipeline alone, and the limiter's pacing is what is measured
            # (the webhooks' own cost is the second part).
            sandbox.control("config", latency_ms=100, throughput_per_s=LIMIT, status_delay_s=0.2)
            for _pk, phone in recipients:
                sandbox.control("window", phone=phone)
            cpu_before = sum(cpu_seconds(w.pid) for w in workers)
            ids = _queue(recipients[:n], "Corte programado de energía en la faena Norte a las 14:00.")
            unfinished = MessageLog.objects.filter(pk__in=ids, status__in=(
                MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRYING))
            _wait(lambda: not unfinished.exists(), timeout=max(60.0, 4 * n / LIMIT))
            worker_cpu_s = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
            sent = sandbox.control("messages", method="GET")["messages"]
            stats = sandbox.control("stats", method="GET")
            sandbox.control("config", webhook_url=f"{web.url}/whatsapp/webhook/")
            latency = _webhook_latency(web.url, recipients[n:], samples)
    finally:
        sandbox.stop()
    at = sorted(m["at"] for m in sent)
    rate = (len(at) - 1) / (at[-1] - at[0]) if len(at) > 1 else 0.0
    by_code = stats.get("by_code", {})
    return {
        "whatsapp_efficiency": rate / LIMIT,
        "whatsapp_throttled": int(by_code.get("130429", 0)) + int(by_code.get("131056", 0)),
        "whatsapp_130429": int(by_code.get("130429", 0)),
        "whatsapp_131056": int(by_code.get("131056", 0)),
        "whatsapp_rate_per_s": rate,
        "whatsapp_limit_per_s": LIMIT,
        "whatsapp_sent": len(at) / n,
        "whatsapp_unfinished": unfinished.count(),
        # CPU the two workers spent per message: times the limit, the share of a core the pace needs.
        "whatsapp_worker_cpu_ms_per_msg": worker_cpu_s * 1000 / max(len(at), 1),
        **latency,
    }


def _signed_post(http, url, body):
    raw = json.dumps(body).encode()
    from sandbox import whatsapp as wsb

    signature = "sha256=" + hmac.new(wsb.DEFAULT_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return http.post(url, data=raw, headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
                     timeout=10)


def _webhook_latency(web_url, recipients, samples):
    """One status at a time for rows already SENT: the webhook's answer time,
    and the time until the row is READ (recorded, queued, handled by a
    worker). Baseline: the handshake GET on the same server."""
    from django.utils import timezone

    from notifications.models import MessageLog, MessageStatus

    now = timezone.now()
    rows = MessageLog.objects.bulk_create([
        MessageLog(user_id=pk, channel_type="WHATSAPP", recipient=phone, message_type="announcement", body="x",
                   status=MessageStatus.SENT, provider_message_id=f"wamid.BENCH{i:08d}", created_at=now,
                   updated_at=now, sent_at=now) for i, (pk, phone) in enumerate(recipients[:samples])])
    # A new connection per request, as Meta's and the sandbox's posts come: a
    # kept-alive connection to Django's threaded server stalls ~40 ms per
    # request on delayed ACKs, which would measure TCP, not the webhook.
    http = requests
    url = f"{web_url}/whatsapp/webhook/"
    handshake, answer, to_state = [], [], []
    for i, row in enumerate(rows):
        started = time.perf_counter()
        http.get(url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                   "hub.challenge": "1"}, timeout=10)
        handshake.append((time.perf_counter() - started) * 1000)
        body = {"entry": [{"changes": [{"value": {"statuses": [{
            "id": row.provider_message_id, "status": "read", "timestamp": str(int(time.time())),
            "recipient_id": row.recipient.lstrip("+")}]}}]}]}
        started = time.perf_counter()
        response = _signed_post(http, url, body)
        answer.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"webhook answered {response.status_code}")
        done = MessageLog.objects.filter(pk=row.pk, status=MessageStatus.READ)
        while not done.exists():
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"status {i} not applied within 30 s")
            time.sleep(0.002)
        to_state.append((time.perf_counter() - started) * 1000)
    return {
        "webhook_answer_p50_ms": median(answer),
        "webhook_answer_p99_ms": percentile(answer, 99),
        "webhook_handshake_p50_ms": median(handshake),
        "webhook_answer_over_handshake": median(answer) / median(handshake),
        "webhook_to_read_p50_ms": median(to_state),
        "webhook_to_read_p99_ms": percentile(to_state, 99),
    }
