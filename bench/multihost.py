"""Several hosts on one machine: Redis, PostgreSQL and the Telegram sandbox
in one network namespace ("infra"), a Celery worker in each of two others
("h1", "h2"), all joined by veth pairs to a Linux bridge in the infra
namespace. This process stays in the root namespace and reaches the infra
namespace through a veth of its own.

Three questions, each answered against a baseline measured in the same run:

1. Does throughput add up across hosts? The same broadcast, delivered by h1
   alone and then by h1 and h2 together, with the sandbox's flood limits off
   and 200 ms of provider latency, so that a host is bound by its own
   concurrency (N threads x 200 ms) and not by this machine's two cores.
2. Does the shared Telegram limit still hold? Both hosts against the sandbox
   enforcing 30 messages/s per bot, with RATE_LIMIT_TELEGRAM_ACCOUNT=30/s.
   The limiter's margin is 1.0 and the sandbox adds no arrival jitter here:
   the question is whether two hosts share one limit, not the margin against
   jitter (docs/benchmarks.md, "ratelimit").
3. Does cutting one host's network mid-broadcast lose anything? ``ip link set
   eth0 down`` in h1's namespace once a third of the broadcast has arrived,
   for longer than the worker heartbeat TTL, with the relay sent every 5 s
   as beat does; then the link comes back.

The namespaces and the one veth in the root namespace carry this process'
pid in their names; they, the bridge, the other veths and every process
started in them are stopped and deleted at the end, also on failure or
Ctrl-C. Nothing leaves the machine: the addresses are a private /24 of
10.213.0.0/16 that no route of the root namespace already covers.

Where namespaces cannot be created (not root, no ``ip``, a container that
refuses them) the scenario writes no keys and says why in one line.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

from tests.support.sandbox_process import SandboxControl

from .harness import retire_worker

SUBNET_PREFIX = "10.213"
SANDBOX_PORT, REDIS_PORT, POSTGRES_PORT = 8081, 6379, 5432
# One population (role, first chat) per phase, so that the sandbox's records keep them apart.
POPULATIONS = {"throughput": ("OPERATOR", 9_000_000), "ratelimit": ("TECHNICIAN", 9_100_000),
               "cut": ("SUPERVISOR", 9_200_000)}
LIMIT = 30.0  # Telegram: about 30 messages/s per bot
LATENCY_MS = 200
LIMITER_OUT_OF_REACH = {"RATE_LIMIT_TELEGRAM_ACCOUNT": "1000000/s"}
SHARED_LIMIT = {"RATE_LIMIT_TELEGRAM_ACCOUNT": f"{LIMIT:g}/s", "RATE_LIMIT_MARGIN": "1.0",
                "RATE_LIMIT_TELEGRAM_JITTER_S": "0"}  # no jitter between these namespaces
RELAY_EVERY_S = 5.0  # as beat sends it in production

PARAMS = {
    "tiny": {"throughput_messages": 60, "rounds": 1, "ratelimit_messages": 60, "cut_messages": 120},
    "full": {"throughput_messages": 600, "rounds": 2, "ratelimit_messages": 900, "cut_messages": 600},
}
# Threads per host in the throughput phase: 4 x 1 / (200 ms + the worker's
# own few ms) is about 19 messages/s per host, two hosts about 38/s: well
# inside what this machine's CPU can deliver, so the hosts' concurrency
# decides. 4, because a broadcast is published as DELIVERY_BATCH_SPREAD (32)
# tasks, each sent by one thread: 32 tasks divide evenly over 4 and 8 threads
# (8 and 4 rounds of tasks), where 5 and 10 threads need 7 and 4 rounds
# (a ratio of 1.75 that measures the rounding, not the hosts).
THROUGHPUT_CONCURRENCY = 4
CONCURRENCY = 8  # per host in the shared-limit and cut phases (30/s x 0.2 s = 6 in flight)


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable_reason():
    """Why this machine cannot run the scenario (one line), or None. Tries a
    namespace with a bridge and a veth pair, and deletes it."""
    if not sys.platform.startswith("linux"):
        return f"multihost skipped: network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"multihost skipped: creating network namespaces needs root (running as uid {os.geteuid()})"
    if not shutil.which("ip"):
        return "multihost skipped: the `ip` command (iproute2) is not installed"
    probe = f"cmms-probe-{os.getpid()}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode:
            return f"multihost skipped: `ip netns add` failed: {made.stderr.strip() or made.returncode}"
        for args, what in ((("link", "add", "br0", "type", "bridge"), "a bridge"),
                           (("link", "add", "va", "type", "veth", "peer", "name", "vb"), "a veth pair")):
            done = _ip("-n", probe, *args, check=False)
            if done.returncode:
                return f"multihost skipped: cannot create {what} in a namespace: {done.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


class Topology:
    """The namespaces and links. ``with Topology() as topo:`` creates them and
    always deletes them; ``cut(host)`` / ``restore(host)`` take a host's link
    down and up inside its namespace."""

    def __init__(self, hosts=2, log=print):
        pid = os.getpid()
        self.log = log
        self.infra = f"cmms-infra-{pid}"
        self.hosts = [f"cmms-h{i}-{pid}" for i in range(1, hosts + 1)]
        self.root_link = f"cmms{pid}r"[:15]  # the one interface of ours in the root namespace
        self.net = None
        self.created = []

    @staticmethod
    def _pick_subnet():
        routes = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
        start = os.getpid() % 250
        for k in [(start + i) % 250 + 1 for i in range(250)]:
            net = f"{SUBNET_PREFIX}.{k}"
            if f"{net}." not in routes:
                return net
        raise RuntimeError(f"multihost: every {SUBNET_PREFIX}.x.0/24 is in use in the root namespace")

    @property
    def infra_ip(self):
        return f"{self.net}.1"

    def host_ip(self, host):
        return f"{self.net}.{11 + self.hosts.index(host)}"

    @staticmethod
    def prefix(namespace):
        """The command prefix that runs a program inside ``namespace``."""
        return ["ip", "netns", "exec", namespace]

    def __enter__(self):
        try:
            self._create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc):
        self.delete()

    def _create(self):
        self.net = self._pick_subnet()
        for namespace in (self.infra, *self.hosts):
            _ip("netns", "add", namespace)
            self.created.append(namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", self.infra, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.infra, "addr", "add", f"{self.infra_ip}/24", "dev", "br0")
        _ip("-n", self.infra, "link", "set", "br0", "up")
        for host in self.hosts:
            port = f"b-{host.split('-')[1]}"
            _ip("link", "add", "name", "eth0", "netns", host, "type", "veth", "peer", "name", port, "netns", self.infra)
            self._attach(port)
            _ip("-n", host, "addr", "add", f"{self.host_ip(host)}/24", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")
        _ip("link", "add", "name", self.root_link, "type", "veth", "peer", "name", "b-root", "netns", self.infra)
        self.created.append(self.root_link)
        self._attach("b-root")
        _ip("addr", "add", f"{self.net}.254/24", "dev", self.root_link)
        _ip("link", "set", self.root_link, "up")
        self.log(f"  multihost: namespaces {self.infra} ({self.infra_ip}), "
                 + ", ".join(f"{h} ({self.host_ip(h)})" for h in self.hosts) + f", bridge br0, root link {self.root_link}")

    def _attach(self, port):
        _ip("-n", self.infra, "link", "set", port, "master", "br0")
        _ip("-n", self.infra, "link", "set", port, "up")

    def cut(self, host):
        _ip("-n", host, "link", "set", "eth0", "down")

    def restore(self, host):
        _ip("-n", host, "link", "set", "eth0", "up")

    def delete(self):
        """Delete what was created (a veth goes with either end; a namespace
        takes its interfaces with it). Never raises."""
        for name in reversed(self.created):
            if name == self.root_link:
                _ip("link", "del", name, check=False)
            else:
                _ip("netns", "del", name, check=False)
        self.created = []


class _Process:
    """A server started inside a namespace (``ip netns exec`` execs it: the
    Popen pid is the server's), in its own process group."""

    def __init__(self, args, log_name):
        self.log_path = tempfile.mkstemp(prefix=f"cmms-{log_name}-", suffix=".log")[1]
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def tail(self):
        with open(self.log_path, errors="replace") as log:
            return log.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        os.unlink(self.log_path)


class NetnsSandbox(SandboxControl):
    """``python -m sandbox`` inside the infra namespace, listening on its
    address, driven through its control API (the methods bench.harness'
    SandboxProcess has)."""

    def __init__(self, namespace, host):
        import requests

        self.url = f"http://{host}:{SANDBOX_PORT}"
        self.http = requests.Session()
        self.server = _Process([*Topology.prefix(namespace), sys.executable, "-m", "sandbox", "--host", host,
                                "--port", str(SANDBOX_PORT), "--quiet", "--no-limits"], "sandbox")

    def wait_ready(self):
        from tests.support.processes import wait_for

        def healthy():
            if not self.server.alive():
                raise RuntimeError(f"python -m sandbox exited in the infra namespace: {self.server.tail()}")
            try:
                return self.http.get(f"{self.url}/_sandbox/health", timeout=1).ok
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(healthy, timeout=30, interval=0.1, message="the sandbox in the infra namespace")

    def stop(self):
        self.server.stop()


SEED = """
from django.contrib.auth import get_user_model
from notifications.models import UserChannelPreference
User = get_user_model()
for role, n, base in {populations!r}:
    users = User.objects.bulk_create([User(username=f"mh-{{role}}-{{i}}", role=role, password="!") for i in range(n)],
                                     batch_size=1000)
    UserChannelPreference.objects.bulk_create([
        UserChannelPreference(user=u, channel_type="TELEGRAM", channel_user_id=str(base + i))
        for i, u in enumerate(users)
    ], batch_size=1000)
"""
BROADCAST = """
from django.db import transaction
from notifications.message_router import MessageRouter
with transaction.atomic():
    MessageRouter().broadcast_to_role("{role}", "Parada de planta", "Parada general el sábado a las 6:00",
                                      priority="high")
"""


class Cluster:
    """The topology with its services (PostgreSQL, Redis, the sandbox in the
    infra namespace) and workers on the hosts. ``with Cluster({phase: n}) as
    c:`` migrates the database and creates, per phase, ``n`` users of the
    phase's role with a Telegram chat each (POPULATIONS); everything is
    stopped and deleted at the end."""

    def __init__(self, sizes, log=print):
        self.sizes = dict(sizes)
        self.log = log
        self.topo = Topology(log=log)
        self.pg = self.redis = self.sandbox = None
        self.workers = []  # (host, Worker)
        self._stack = contextlib.ExitStack()

    # -- set up and tear down ----------------------------------------------
    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def _start(self):
        from tests.support.postgres import PrivatePostgres

        started = time.monotonic()
        self._stack.enter_context(self.topo)  # deleted last: everything below runs inside it
        ip, infra = self.topo.infra_ip, self.topo.infra
        self.pg = PrivatePostgres(port=POSTGRES_PORT, host=ip, prefix=Topology.prefix(infra),
                                  trust=[f"{self.topo.net}.0/24"])
        self._stack.callback(self.pg.close)
        self.pg.init().start()
        redis_dir = tempfile.mkdtemp(prefix="cmms-redis-")
        self._stack.callback(shutil.rmtree, redis_dir, ignore_errors=True)
        self.redis = _Process([*Topology.prefix(infra), shutil.which("redis-server") or "redis-server",
                               "--port", str(REDIS_PORT), "--bind", ip, "--protected-mode", "no", "--dir", redis_dir,
                               "--save", "", "--appendonly", "no"], "redis")
        self._stack.callback(self.redis.stop)
        self.sandbox = NetnsSandbox(infra, ip)
        self._stack.callback(self.sandbox.stop)
        self._stack.callback(self.stop_workers)  # first of all
        self.db_url = self.pg.create_database()
        self.redis_url = f"redis://{ip}:{REDIS_PORT}/0"
        self._wait_redis()
        self.sandbox.wait_ready()
        self.manage("migrate", "--noinput")
        populations = [(*POPULATIONS[phase][:1], n, POPULATIONS[phase][1]) for phase, n in self.sizes.items()]
        self.manage("shell", code=SEED.format(populations=populations))
        self.log(f"  multihost: PostgreSQL, Redis and the sandbox on {ip}, migrated, users {self.sizes}, "
                 f"in {time.monotonic() - started:.1f} s")

    def _wait_redis(self):
        import redis

        from tests.support.processes import wait_for

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5)

        def ping():
            if not self.redis.alive():
                raise RuntimeError(f"redis-server exited in the infra namespace: {self.redis.tail()}")
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_for(ping, timeout=15, message="redis-server in the infra namespace")
        client.close()

    # -- processes -------------------------------------------------------------
    def env(self, **extra):
        from tests.conftest import SANDBOX_TOKEN

        from .harness import PRODUCTION_ENV

        env = {
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "RATE_LIMIT_REDIS_URL": self.redis_url,
            "TELEGRAM_API_URL": self.sandbox.url,
            "TELEGRAM_BOT_TOKEN": SANDBOX_TOKEN,
            "DJANGO_SETTINGS_MODULE": "cmms.settings",
            "PYTHONUNBUFFERED": "1",
            **PRODUCTION_ENV,
        }
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def manage(self, *args, code=None):
        """``manage.py`` in this (the root) namespace against the cluster."""
        from tests.support.recovery import manage

        manage({**os.environ, **self.env()}, *args, code=code)

    def start_workers(self, hosts, concurrency, **env):
        """One ``celery worker -P threads -c concurrency`` per host, inside the
        host's namespace; returns them once all are ready."""
        from tests.support.processes import Worker, free_port, wait_for

        started = []
        for host in hosts:
            worker = Worker(self.env(**env), pool="threads", concurrency=concurrency,
                            name=f"{host.split('-')[1]}-{free_port()}@{host}")
            worker.args = [*Topology.prefix(host), *worker.args]
            worker.start(wait=False)
            self.workers.append((host, worker))
            started.append(worker)
        for worker in started:
            wait_for(worker._ready, timeout=120, interval=0.1, message=f"worker {worker.name} ready")
        return started

    def stop_workers(self, hosts=None):
        keep = []
        for host, worker in self.workers:
            if hosts is None or host in hosts:
                retire_worker(worker, self.log)
            else:
                keep.append((host, worker))
        self.workers = keep

    # -- the database, straight (this process' Django uses the bench database) --
    def query(self, sql, params=None):
        import psycopg

        with psycopg.connect(host=self.topo.infra_ip, port=POSTGRES_PORT, user="postgres", dbname="cmms",
                             connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def statuses(self):
        return dict(self.query("SELECT status, count(*) FROM notifications_messagelog GROUP BY status"))

    def held_by(self, workers):
        """Ids of the rows SENDING and claimed by one of these worker processes."""
        pids = [f"%:{w.pid}" for w in workers]
        return {pk for (pk,) in self.query(
            "SELECT id FROM notifications_messagelog WHERE status = 'SENDING' AND claimed_by LIKE ANY(%s)", [pids])}

    def heartbeats(self, workers):
        """True when every one of these worker processes has its liveness key
        (workers/liveness.py: hostname:pid; the namespaces share the host name)."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        try:
            keys = [f"cmms:worker:alive:{socket.gethostname()[:60]}:{w.pid}" for w in workers]
            return all(client.exists(key) for key in keys)
        finally:
            client.close()

    def fresh(self, **sandbox_config):
        """No rows, no limiter state, an empty sandbox configured as asked."""
        import redis

        self.query("DELETE FROM notifications_messagelog RETURNING 0")
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter("cmms:rl*", count=1000):
            client.delete(key)
        client.close()
        self.sandbox.reset(config=True)
        self.sandbox.configure(**{"limits_enabled": False, "latency_ms": LATENCY_MS, **sandbox_config})

    # -- a broadcast ---------------------------------------------------------------
    def broadcast(self, phase):
        self.manage("shell", code=BROADCAST.format(role=POPULATIONS[phase][0]))

    def received(self, phase):
        base, n = POPULATIONS[phase][1], self.sizes[phase]
        return [m for m in self.sandbox.messages() if base <= int(m["chat_id"]) < base + n]

    def wait_all_sent(self, phase, timeout):
        from tests.support.processes import wait_for

        n = self.sizes[phase]
        try:
            wait_for(lambda: self.statuses().get("SENT", 0) >= n, timeout=timeout, interval=0.2,
                     message="every row SENT")
        except TimeoutError:
            raise TimeoutError(f"multihost: after {timeout:.0f} s the {n} rows are {self.statuses()}") from None

    def delivered_round(self, phase, timeout):
        """Broadcast to the phase's population and wait until every row is
        SENT; returns the rate (messages/s between the sandbox's first and
        last arrival) and the messages received."""
        self.broadcast(phase)
        self.wait_all_sent(phase, timeout)
        received = self.received(phase)
        return rate_of(received), received


def rate_of(received):
    times = sorted(m["received_at"] for m in received)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def _succeeded(worker):
    """Delivery tasks (one message, or a batch of one channel's) this worker
    finished, from its log (celery -l info)."""
    return len(re.findall(r"workers\.deliver_messages?\[[^\]]+\] succeeded", worker.log()))


class RelayTicker:
    """Sends workers.relay_outbox to the cluster's broker every ``every_s``
    (as beat does), over a connection of its own; a tick the broker cannot
    take is lost, as beat's would be."""

    def __init__(self, broker_url, every_s=RELAY_EVERY_S):
        self.broker_url, self.every_s = broker_url, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="multihost-relay", daemon=True)

    def _run(self):
        from celery_app import app

        with app.connection_for_write(self.broker_url) as conn:
            while not self._stop.wait(self.every_s):
                with contextlib.suppress(Exception):
                    app.send_task("workers.relay_outbox", queue="default", expires=self.every_s * 5,
                                  connection=conn)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


# -- the phases ---------------------------------------------------------------------
def throughput(cluster, rounds, log=print):
    """h1 alone, then h1 + h2, ``rounds`` times (h2 started and stopped in
    between); returns the medians and the ratio of each round."""
    from .harness import median

    h1, h2 = cluster.topo.hosts
    n = cluster.sizes["throughput"]
    one, two, ratios = [], [], []
    timeout = max(120.0, 4 * n / (THROUGHPUT_CONCURRENCY * 1000 / LATENCY_MS))
    cluster.start_workers([h1], THROUGHPUT_CONCURRENCY, **LIMITER_OUT_OF_REACH)
    try:
        for _round in range(rounds):
            cluster.fresh()
            rate1, _ = cluster.delivered_round("throughput", timeout)
            cluster.start_workers([h2], THROUGHPUT_CONCURRENCY, **LIMITER_OUT_OF_REACH)
            cluster.fresh()
            rate2, _ = cluster.delivered_round("throughput", timeout)
            cluster.stop_workers([h2])
            one.append(rate1)
            two.append(rate2)
            ratios.append(rate2 / rate1 if rate1 else 0.0)
            log(f"  multihost throughput: one host {rate1:.1f} msg/s, two hosts {rate2:.1f} msg/s "
                f"({n} messages, {THROUGHPUT_CONCURRENCY} threads per host, {LATENCY_MS} ms latency)")
    finally:
        cluster.stop_workers()
    return {
        "multihost_one_host_msgs_per_s": median(one),
        "multihost_two_hosts_msgs_per_s": median(two),
        "multihost_scaling": median(ratios),
        # What one host's concurrency allows at this latency (the worker's own time not counted).
        "multihost_one_host_ceiling_msgs_per_s": THROUGHPUT_CONCURRENCY * 1000 / LATENCY_MS,
    }


def _limited(cluster):
    """The sandbox as Telegram documents its limit: 30/s per bot (GCRA with a
    burst of 10), 1/s per chat, 200 ms latency, no arrival jitter."""
    cluster.fresh(limits_enabled=True, bot_rate=LIMIT, bot_burst=10, chat_rate=1, chat_burst=3, latency_jitter_ms=0)


def shared_limit(cluster, log=print):
    """Both hosts (already started with SHARED_LIMIT) deliver one broadcast
    against the limited sandbox."""
    _limited(cluster)
    n = cluster.sizes["ratelimit"]
    before = [_succeeded(w) for _h, w in cluster.workers]
    rate, received = cluster.delivered_round("ratelimit", timeout=max(120.0, 4 * n / LIMIT))
    shares = [_succeeded(w) - b for (_h, w), b in zip(cluster.workers, before, strict=True)]
    stats = cluster.sandbox.stats()
    too_many = stats.get("responses_by_status", {}).get("429", 0)
    paced = LIMIT * 1.0  # RATE_LIMIT_MARGIN=1.0 in SHARED_LIMIT
    log(f"  multihost shared limit: {rate:.2f} msg/s for a limit of {LIMIT:g}/s, {too_many} x 429, "
        f"{len(received)} received; task log lines per host {shares}")
    return {
        "multihost_ratelimit_efficiency": rate / LIMIT,
        "multihost_429": too_many,
        "multihost_ratelimit_rate_per_s": rate,
        "multihost_ratelimit_over_paced": rate / paced,
        "multihost_ratelimit_inside_retry_after": stats.get("requests_inside_retry_after", 0),
        # Both hosts took part: the smaller host's share of the deliveries (0.5 = even).
        "multihost_ratelimit_host_share_min": min(shares) / sum(shares) if sum(shares) else 0.0,
    }


def cut_network(cluster, log=print, cut_at=1 / 3, max_cut_s=90.0):
    """Both hosts (already started) deliver a broadcast against the limited
    sandbox; once ``cut_at`` of it has arrived, h1's link goes down until
    every row h1 held is settled and at least the heartbeat TTL plus a relay
    period have passed; then it comes back. Returns the facts: what each row
    and chat ended with, what h1 held at the cut, and the times."""
    from tests.support.processes import wait_for

    h1, _h2 = cluster.topo.hosts
    cut_workers = [w for h, w in cluster.workers if h == h1]
    ttl = float(cut_workers[0].env.get("DELIVERY_WORKER_HEARTBEAT_TTL_S", 6.0))  # the default in cmms/settings.py
    n = cluster.sizes["cut"]
    _limited(cluster)
    with RelayTicker(cluster.redis_url):
        cluster.broadcast("cut")
        wait_for(lambda: len(cluster.received("cut")) >= n * cut_at, timeout=120, interval=0.05,
                 message="the broadcast to be under way")
        held = cluster.held_by(cut_workers)
        cluster.topo.cut(h1)
        cut_at_t = time.monotonic()
        received_at_cut = len(cluster.received("cut"))
        held |= cluster.held_by(cut_workers)  # claimed in the moment before the cut

        def settled(ids):
            if not ids:
                return True
            left = cluster.query("SELECT count(*) FROM notifications_messagelog WHERE id = ANY(%s) "
                                 "AND status NOT IN ('SENT', 'FAILED')", [sorted(ids)])[0][0]
            return left == 0

        released = {}

        def delivered_elsewhere():
            # First h1's claims are released (its heartbeat expired, the relay
            # ran), then h2 delivers those rows, after the queue's backlog.
            if "s" not in released and not cluster.held_by(cut_workers) & held:
                released["s"] = time.monotonic() - cut_at_t
            return settled(held)

        wait_for(delivered_elsewhere, timeout=max_cut_s, interval=0.1,
                 message=f"the {len(held)} rows h1 held to be delivered by h2")
        held_settled_s = time.monotonic() - cut_at_t
        released.setdefault("s", held_settled_s)
        time.sleep(max(0.0, ttl + RELAY_EVERY_S - (time.monotonic() - cut_at_t)))
        cluster.topo.restore(h1)
        cut_s = time.monotonic() - cut_at_t
        cluster.wait_all_sent("cut", timeout=max(120.0, 4 * n / LIMIT))
        wait_for(lambda: len({m["chat_id"] for m in cluster.received("cut")}) >= n, timeout=60, interval=0.2,
                 message="every chat to receive the broadcast")
        all_sent_s = time.monotonic() - cut_at_t
        # h1 is back in touch: its heartbeat (expired during the cut) is renewed.
        restored_t = cut_at_t + cut_s
        wait_for(lambda: cluster.heartbeats(cut_workers), timeout=60, interval=0.2,
                 message="h1's heartbeat to come back after the cut")
        rejoin_s = time.monotonic() - restored_t
    received = cluster.received("cut")
    per_chat = Counter(int(m["chat_id"]) for m in received)
    held_chats = {int(r) for (r,) in cluster.query(
        "SELECT recipient FROM notifications_messagelog WHERE id = ANY(%s)", [sorted(held)])}
    flagged = {int(r) for (r,) in cluster.query(
        "SELECT recipient FROM notifications_messagelog WHERE possible_duplicate")}
    statuses = cluster.statuses()
    result = {
        "rows": n,
        "statuses": statuses,
        "chats_received": len(per_chat),
        "duplicates": sum(c - 1 for c in per_chat.values()),
        "duplicate_chats": {chat for chat, c in per_chat.items() if c > 1},
        "held_chats": held_chats,
        "flagged": flagged,
        "held_at_cut": len(held),
        "received_at_cut": received_at_cut,
        "held_settled_s": held_settled_s,
        "released_s": released["s"],
        "cut_s": cut_s,
        "all_sent_s": all_sent_s,
        "rejoin_s": rejoin_s,
        "ttl_s": ttl,
        "survived": all(w.proc.poll() is None for w in cut_workers),
        "too_many": cluster.sandbox.stats().get("responses_by_status", {}).get("429", 0),
    }
    log(f"  multihost cut: h1 cut after {received_at_cut} of {n} arrived, holding {len(held)} row(s); "
        f"released {released['s']:.1f} s and SENT {held_settled_s:.1f} s after the cut, link back after "
        f"{cut_s:.1f} s, everything SENT {all_sent_s:.1f} s after the cut; statuses {statuses}, "
        f"{result['duplicates']} duplicate(s) "
        f"(chats {sorted(result['duplicate_chats'])[:10]}, held at the cut {sorted(held_chats)[:10]}), "
        f"{result['too_many']} x 429; h1's heartbeat back {rejoin_s:.1f} s after its link")
    return result


def multihost(bench):
    """The bench scenario (python -m bench --scenarios multihost)."""
    reason = unavailable_reason()
    if reason:
        bench.log(reason)
        return {}
    p = PARAMS[bench.size if bench.size in PARAMS else "full"]
    sizes = {"throughput": p["throughput_messages"], "ratelimit": p["ratelimit_messages"], "cut": p["cut_messages"]}
    results = {}
    with Cluster(sizes, log=bench.log) as cluster:
        results.update(throughput(cluster, p["rounds"], log=bench.log))
        cluster.start_workers(cluster.topo.hosts, CONCURRENCY, **SHARED_LIMIT)
        results.update(shared_limit(cluster, log=bench.log))
        cut = cut_network(cluster, log=bench.log)
    results.update({
        "multihost_cut_rows_lost": cut["rows"] - cut["statuses"].get("SENT", 0),
        "multihost_cut_chats_missed": cut["rows"] - cut["chats_received"],
        "multihost_cut_duplicates": cut["duplicates"],
        "multihost_cut_rows_held": cut["held_at_cut"],
        "multihost_cut_recovery_s": cut["held_settled_s"],
        "multihost_cut_all_sent_s": cut["all_sent_s"],
        # From the cut until no row is held by h1 any more (heartbeat TTL + up to one relay period).
        "multihost_cut_released_s": cut["released_s"],
        "multihost_cut_429": cut["too_many"],
        # A duplicate whose row is not flagged possible_duplicate (should be 0).
        "multihost_cut_unflagged_duplicates": len(cut["duplicate_chats"] - cut["flagged"]),
        # From the link's return until h1's heartbeat is back (its worker survived the cut).
        "multihost_cut_rejoin_s": cut["rejoin_s"],
        "multihost_cut_heartbeat_ttl_s": cut["ttl_s"],
    })
    return results
