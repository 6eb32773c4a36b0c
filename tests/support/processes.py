"""Real processes for end-to-end, fault and benchmark runs: a private
redis-server on a free port and Celery worker subprocesses.

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

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


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
