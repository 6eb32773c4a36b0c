"""Real processes for end-to-end, fault and benchmark runs: a private
redis-server on a free port, a private RabbitMQ node, and Celery worker
subprocesses.

Used by tests/ and bench/. Everything binds to 127.0.0.1.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"Timed out after {timeout:g} s waiting for {message}")


class RedisServer:
    """A private redis-server. ``persistent=True`` keeps an append-only file so
    a restart keeps queued tasks (as production should)."""

    def __init__(self, port=None, persistent=False):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.persistent = persistent
        self.dir = tempfile.mkdtemp(prefix="cmms-redis-")
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: self._ping(client), timeout=10, message=f"redis-server on port {self.port}")
        return self

    @staticmethod
    def _ping(client):
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def hang(self):
        """SIGSTOP: the server keeps its sockets open and answers nothing."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's; /usr/sbin's wrapper su's to rabbitmq


def rabbitmq_server_binary():
    """The rabbitmq-server script that runs the node as the calling user, or None."""
    if os.access(RABBITMQ_SERVER, os.X_OK):
        return RABBITMQ_SERVER
    found = shutil.which("rabbitmq-server")
    if found and "/sbin/" not in found:  # a Homebrew or generic-unix install runs as the caller
        return found
    return None


class RabbitMQServer:
    """A private RabbitMQ node: its own node name, AMQP and distribution ports
    on 127.0.0.1, its own database (mnesia) and logs in a temporary directory,
    no plugins. It never touches the machine's RabbitMQ (only epmd is shared).

    ``stop()`` is a clean shutdown and ``start()`` brings the same node back
    on the same port with the same database: durable queues and persistent
    messages survive it. ``kill()`` is kill -9; ``wipe()`` deletes the
    database, as a node rebuilt empty (the broker lost its data)."""

    def __init__(self, port=None, consumer_timeout_ms=None):
        self.binary = rabbitmq_server_binary()
        if not self.binary:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.port = port or free_port()
        self.dist_port = free_port()
        self.node = f"cmms-test-{uuid.uuid4().hex[:10]}@localhost"
        self.consumer_timeout_ms = consumer_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="cmms-rabbitmq-"))
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log_path(self):
        return self.dir / "log" / f"{self.node}.log"

    def _write_config(self):
        lines = [
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",
            "loopback_users.guest = true",
            # A test machine's disk may be small: do not block publishers at
            # RabbitMQ's default 50 MB alarm on a shared /tmp.
            "disk_free_limit.absolute = 10MB",
            "log.console = false",
            "log.file.level = info",
        ]
        if self.consumer_timeout_ms is not None:
            lines.append(f"consumer_timeout = {int(self.consumer_timeout_ms)}")
        (self.dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq/rabbitmq-env.conf

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "HOME": str(self.dir),  # its own Erlang cookie; nothing written to the caller's home
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def start(self, timeout=60, attempts=3):
        """Start the node and wait for AMQP. A free port can be taken by
        another process before the node binds it: the distribution port is
        then chosen again (and the AMQP port too, before the first start)."""
        for attempt in range(attempts):
            self._write_config()
            self._log = open(self.dir / "server.out", "ab")
            self.proc = subprocess.Popen([self.binary], cwd=self.dir, env=self._env(), stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(self._ready, timeout=timeout, interval=0.1,
                         message=f"RabbitMQ node {self.node} on port {self.port}")
                self._started = True
                return self
            except RuntimeError:
                said = self.output()
                self._signal(signal.SIGKILL, 10)
                if attempt == attempts - 1 or ("already_used" not in said and "eaddrinuse" not in said):
                    raise
                self.dist_port = free_port()
                if not getattr(self, "_started", False):
                    self.port = free_port()
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
        return self.answers()

    def answers(self, timeout=1.0):
        """True when the node completes an AMQP handshake."""
        import amqp

        try:
            conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest",
                                   connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
            conn.connect()
            conn.close()
            return True
        except Exception:  # noqa: BLE001 - refused, reset, or still booting
            return False

    def output(self):
        text = ""
        for path in (self.dir / "server.out", self.log_path):
            try:
                text += path.read_text(errors="replace")
            except FileNotFoundError:
                pass
        return text

    def stop(self, timeout=30):
        """A clean shutdown (SIGTERM to the node's process group)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self):
        """kill -9 of the node: what survives is what it had written to disk."""
        self._signal(signal.SIGKILL, 10)

    def hang(self):
        """SIGSTOP: the node keeps its sockets open and answers nothing."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def _signal(self, sig, timeout):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            # The Erlang VM is a child of the script: wait until the group is gone.
            wait_for(lambda: not _group_alive(self.proc.pid), timeout=timeout, message=f"RabbitMQ node {self.node} to exit")
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def wipe(self):
        """Delete the node's database (it must be stopped): the next start is
        an empty broker, as after a rebuild or a failover to an empty node."""
        assert self.proc is None, "stop the node first"
        shutil.rmtree(self.dir / "mnesia", ignore_errors=True)

    def close(self):
        try:
            self._signal(signal.SIGKILL, 10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def living_processes_in_group(pgid):
    """Pids in process group ``pgid`` that are not zombies (a killed child
    re-parented to an init that does not reap is a zombie, and harmless)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def _group_alive(pgid):
    return bool(living_processes_in_group(pgid))


class Worker:
    """``celery -A celery_app worker`` as a subprocess in its own process group,
    so that ``kill(hard=True)`` takes the parent and its children at once."""

    def __init__(self, env, queues=None, pool="threads", concurrency=8, name=None, extra_args=()):
        """``pool=None, concurrency=None``: no -P/-c, as a user types it (the settings decide)."""
        self.env = {**os.environ, **env}
        self.name = name or f"w{free_port()}@127.0.0.1"
        self.args = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-l", "info",
                     *(["-P", pool] if pool else []), *(["-c", str(concurrency)] if concurrency else []),
                     "-n", self.name, "--without-gossip", "--without-mingle", *extra_args]
        if queues:
            self.args += ["-Q", ",".join(queues)]
        self.log_path = Path(tempfile.mkstemp(prefix="cmms-worker-", suffix=".log")[1])
        self.proc = None

    def start(self, wait=True, timeout=60):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if wait:
            wait_for(self._ready, timeout=timeout, interval=0.1, message=f"worker {self.name} ready")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return " ready." in self.log()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def kill(self, hard=True):
        """hard: SIGKILL the whole process group (parent and pool children)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self):
        self.kill(hard=False)
        if getattr(self, "_log", None):
            self._log.close()


class TelegramPoller:
    """``manage.py run_telegram_bot`` as a subprocess (polling mode)."""

    def __init__(self, env, poll_timeout=2):
        self.env = {**os.environ, **env}
        self.args = [sys.executable, "manage.py", "run_telegram_bot", "--poll-timeout", str(poll_timeout)]
        self.log_path = Path(tempfile.mkstemp(prefix="cmms-poller-", suffix=".log")[1])
        self.proc = None

    def start(self, timeout=60):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        starts = self.log().count("Polling getUpdates")
        wait_for(lambda: self._alive() and self.log().count("Polling getUpdates") > starts,
                 timeout=timeout, interval=0.1, message="run_telegram_bot polling")
        return self

    def _alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"run_telegram_bot exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def terminate(self, timeout=20):
        """SIGTERM; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def stop(self):
        try:
            self.terminate()
        finally:
            if getattr(self, "_log", None):
                self._log.close()


class Beat(Worker):
    """``celery -A celery_app beat`` with the database scheduler, as a
    subprocess in its own process group (``kill()`` takes it down hard)."""

    def __init__(self, env, max_interval=1):
        super().__init__(env)
        self.args = [sys.executable, "-m", "celery", "-A", "celery_app", "beat", "-l", "info",
                     "-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile=",
                     "--max-interval", str(max_interval)]
        self.log_path = Path(tempfile.mkstemp(prefix="cmms-beat-", suffix=".log")[1])

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"beat exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return "beat: Starting..." in self.log()
