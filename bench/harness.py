"""The parts a scenario runs on: its own database, a private Redis, the
Telegram sandbox and Celery worker subprocesses (tests/support/processes.py).

Only ``prepare_database`` may run before Django is set up: it decides which
database the run uses and sets DATABASE_URL for this process and its workers.
"""

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import requests

from tests.support.processes import ROOT, RabbitMQServer, RedisServer, Worker, free_port, wait_for
from tests.support.sandbox_process import SandboxProcess, _SandboxChild

# The bench runs the product as production would: DEBUG off (Django would
# otherwise keep every query in memory, and Celery warns it leaks).
PRODUCTION_ENV = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-only-not-secret"}


# -- database -------------------------------------------------------------------
def prepare_database(db_name=None):
    """A fresh database for this run: DATABASE_URL's PostgreSQL server with a
    database of our own (dropped and created here), or a new SQLite file under
    var/bench/. Returns the URL, also exported as DATABASE_URL."""
    import dj_database_url

    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        url = _fresh_postgres(dj_database_url.parse(url), db_name or "cmms_bench")
    else:
        var_dir = Path(os.environ.get("CMMS_VAR_DIR", ROOT / "var"))
        path = var_dir / "bench" / (db_name or "bench.sqlite3")
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
        url = f"sqlite:///{path}"
    os.environ["DATABASE_URL"] = url
    return url


def _fresh_postgres(cfg, name):
    import psycopg

    if "bench" not in name:  # the run drops it: never one that is not ours
        raise SystemExit(f"Refusing to use database {name!r}: a bench database name must contain 'bench'.")
    admin = psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                            password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True)
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = cfg["USER"] or "postgres"
    if cfg["PASSWORD"]:
        auth += f":{cfg['PASSWORD']}"
    return f"postgres://{auth}@{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{name}"


# -- the sandboxes ----------------------------------------------------------------
class TwilioSandboxProcess(_SandboxChild):
    """``python -m sandbox.twilio`` in its own process, pacing each sender at
    ``sender_rate`` segments/s (20429 above it). Status callbacks are never
    due within a run: the SMS scenario measures sends, and the callback view
    is measured on its own."""

    def __init__(self, sender_rate, sender_burst=2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "sandbox.twilio", "--port", str(self.port), "--quiet",
                     "--sender-rate", str(sender_rate), "--sender-burst", str(sender_burst),
                     "--callback-delay-s", "86400"]
        self.http = requests.Session()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._healthy, timeout=15, message="the Twilio sandbox subprocess")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"python -m sandbox.twilio exited with {self.proc.returncode}")
        try:
            return self.http.get(f"{self.url}/_sandbox/health", timeout=1).ok
        except requests.RequestException:
            return False

    def get(self, name):
        response = self.http.get(f"{self.url}/_sandbox/{name}", timeout=60)
        response.raise_for_status()
        return response.json()

    def env(self):
        from sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM

        # SITE_URL: a closed port, so nothing of ours is ever called back by mistake.
        return {"TWILIO_API_URL": self.url, "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN, "TWILIO_FROM_NUMBER": DEFAULT_FROM,
                "SITE_URL": "http://127.0.0.1:9"}



class SmtpSandboxProcess(_SandboxChild):
    """``python -m sandbox.smtp`` in its own process (the SMTP server must not
    share a GIL with the plain smtplib loop it is the baseline for), read
    through its page's JSON API."""

    def __init__(self):
        self.port, self.page_port = free_port(), free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.page = f"http://127.0.0.1:{self.page_port}"
        self.proc = None
        self.http = requests.Session()

    def start(self):
        args = [sys.executable, "-m", "sandbox.smtp", "--port", str(self.port), "--page-port", str(self.page_port),
                "--quiet"]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._healthy, timeout=15, message="the SMTP sandbox subprocess")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"python -m sandbox.smtp exited with {self.proc.returncode}")
        try:
            return self.http.get(f"{self.page}/api/health", timeout=1).ok
        except requests.RequestException:
            return False

    def reset(self):
        self.http.post(f"{self.page}/api/reset", timeout=30).raise_for_status()

    def captured(self):
        return self.http.get(f"{self.page}/api/stats", timeout=30).json()["captured"]



class SandboxInProcess:
    """The sandbox as a thread of the bench process (to measure what sharing
    the GIL with the load generator costs)."""

    def __init__(self):
        from sandbox import TelegramSandbox

        self.inner = TelegramSandbox(port=0, limits_enabled=False)
        self.pid = os.getpid()

    def start(self):
        self.inner.start()
        self.url = self.inner.url
        return self

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stop(self):
        self.inner.stop()


# -- statistics and processes ------------------------------------------------
def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median(values):
    return percentile(values, 50)


def process_tree(pid):
    """``pid`` and all its descendants, read from /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_mb(pid):
    """Resident memory of a process tree in MiB (VmRSS summed from /proc)."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def cpu_seconds(pid):
    """User + system CPU time of a process tree so far (from /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class Profiler:
    """py-spy sampling a worker for the length of a scenario; writes a
    flamegraph (SVG) and the raw collapsed stacks for docs/benchmarks.md."""

    # wall: where every thread is, waiting included; gil: what holds the GIL (the CPU).
    MODES = types.MappingProxyType({"wall": ("--idle",), "gil": ("--gil",)})

    def __init__(self, pid, path, mode="wall"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        binary = Path(sys.executable).with_name("py-spy")
        self.proc = subprocess.Popen(
            [str(binary), "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--threads",
             *self.MODES[mode], "--nonblocking", "-o", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.path


# -- the run ------------------------------------------------------------------
def retire_worker(worker, log):
    """Kill a bench worker hard; keep its log only with BENCH_KEEP_LOGS."""
    worker.kill(hard=True)
    worker.stop()
    if os.environ.get("BENCH_KEEP_LOGS"):
        log(f"worker log: {worker.log_path}")
    else:
        worker.log_path.unlink(missing_ok=True)


class Bench:
    """Shared parts of one run. Scenarios get a clean state from ``fresh()``
    and start the workers they need with ``workers()``."""

    def __init__(self, size, params, sandbox="subprocess", pool="threads", concurrency=32, profile_dir=None,
                 profile_mode="wall", log=print, broker="redis"):
        self.size = size
        self.params = params
        self.sandbox_mode = sandbox
        self.broker_kind = broker
        self.rabbitmq = None
        self.pool = pool
        self.concurrency = concurrency
        self.profile_dir = Path(profile_dir) if profile_dir else None
        self.profile_mode = profile_mode
        self.log = log
        self.redis = None
        self.sandbox = None

    def __enter__(self):
        from django.core.management import call_command

        from tests.conftest import SESSION, _configure_broker

        started = time.monotonic()
        call_command("migrate", verbosity=0)
        self.redis = RedisServer().start()
        broker = f"redis :{self.redis.port}"
        if self.broker_kind == "rabbitmq":
            # A private node (tests/support/processes.py), never the machine's
            # RabbitMQ; the limiter, heartbeats and results stay on the Redis.
            self.rabbitmq = RabbitMQServer().start()
            broker = f"rabbitmq :{self.rabbitmq.port}"
        # Workers started with worker_env(self.redis.url, ...) get this broker.
        SESSION.update(redis_url=self.redis.url, broker_url=self.broker_url)
        _configure_broker(self.redis.url)
        self.sandbox = (SandboxProcess() if self.sandbox_mode == "subprocess" else SandboxInProcess()).start()
        self.log(f"setup: database migrated, redis :{self.redis.port}, broker {broker}, sandbox "
                 f"{self.sandbox.url} ({self.sandbox_mode}) in {time.monotonic() - started:.1f} s")
        return self

    @property
    def broker_url(self):
        return self.rabbitmq.url if self.rabbitmq else self.redis.url

    def __exit__(self, *exc):
        if self.sandbox:
            self.sandbox.stop()
        if self.rabbitmq:
            self.rabbitmq.close()
        if self.redis:
            self.redis.close()

    def fresh(self, **sandbox_config):
        """Empty broker, limiter state, message log and sandbox; the sandbox
        configured as asked (flood limits off unless the scenario turns them on)."""
        import redis as redis_lib

        from notifications import dispatch
        from notifications.models import MessageLog, RoleBroadcast

        redis_lib.Redis.from_url(self.redis.url).flushall()
        if self.rabbitmq:
            from celery_app import app

            app.control.purge()  # every queue the app declares
        RoleBroadcast.objects.all().delete()
        MessageLog.objects.all().delete()
        self.sandbox.reset(config=True)
        self.sandbox.configure(**{"limits_enabled": False, **sandbox_config})
        dispatch.reset_breaker()

    def worker_env(self, **extra):
        from tests.conftest import worker_env

        return worker_env(self.redis.url, self.sandbox.url, **{**PRODUCTION_ENV, **extra})

    @contextlib.contextmanager
    def workers(self, count=1, queues=None, concurrency=None, profile=None, plain=False, **env):
        """Start ``count`` worker processes (in parallel) and stop them hard at
        the end: a scenario's leftovers must not leak into the next one.
        ``plain``: no -P/-c at all, as a user types the command."""
        pool, concurrency = (None, None) if plain else (self.pool, concurrency or self.concurrency)
        started = [
            Worker(self.worker_env(**env), queues=queues, pool=pool, concurrency=concurrency)
            for _ in range(count)
        ]
        profilers = []
        try:
            for worker in started:
                worker.start(wait=False)
            for worker in started:
                wait_for(worker._ready, timeout=90, interval=0.1, message=f"worker {worker.name} ready")
            if profile and self.profile_dir:
                profilers = [
                    Profiler(w.pid, self.profile_dir / f"{profile}-{self.profile_mode}-{i}.txt", self.profile_mode)
                    for i, w in enumerate(started)
                ]
            yield started
        finally:
            for profiler in profilers:
                self.log(f"profile: {profiler.stop()}")
            for worker in started:
                retire_worker(worker, self.log)

    def population(self, role, count, chat_base):
        """``count`` active users with ``role``, each with a Telegram chat of
        its own (chat_base + i); created once per run and reused."""
        from django.contrib.auth import get_user_model

        from notifications.models import ChannelType, UserChannelPreference

        User = get_user_model()
        existing = list(User.objects.filter(role=role).order_by("pk").values_list("pk", flat=True))
        if len(existing) >= count:
            return existing[:count]
        users = [
            User(username=f"bench-{role.lower()}-{i}", role=role, password="!", first_name="Bench", is_active=True)
            for i in range(len(existing), count)
        ]
        User.objects.bulk_create(users, batch_size=2000)
        newer = User.objects.filter(role=role, pk__gt=existing[-1] if existing else 0).order_by("pk")
        created = list(newer.values_list("pk", "username"))
        prefs = [
            UserChannelPreference(user_id=pk, channel_type=ChannelType.TELEGRAM,
                                  channel_user_id=str(chat_base + int(name.rsplit("-", 1)[1])))
            for pk, name in created
        ]
        UserChannelPreference.objects.bulk_create(prefs, batch_size=2000)
        return existing + [pk for pk, _name in created]
