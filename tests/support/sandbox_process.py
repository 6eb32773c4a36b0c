"""The Telegram sandbox in a process of its own, driven through its control
API over HTTP with the same method names as sandbox.TelegramSandbox: a real
provider does not share a GIL (or a garbage collector's pauses) with the
program that drives it. Used by the bench and by the tests whose outcome
depends on when the provider sees each request."""

import signal
import subprocess
import sys

import requests

from tests.support.processes import ROOT, free_port, wait_for


class _SandboxChild:
    """A stand-in started as a child process (``self.proc``): stopped with
    SIGTERM, killed if it does not stop within 10 s."""

    proc = None

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SandboxControl:
    """The Telegram sandbox's control API over HTTP (``self.url``,
    ``self.http``), with the same method names as sandbox.TelegramSandbox."""

    def _call(self, method, name, **kwargs):
        response = self.http.request(method, f"{self.url}/_sandbox/{name}", timeout=60, **kwargs)
        response.raise_for_status()
        return response.json()

    def configure(self, **changes):
        return self._call("POST", "config", json=changes)

    def inject_update(self, update):
        return self._call("POST", "updates", json=update)

    def reset(self, config=False):
        self._call("POST", "reset", json={"config": config})

    def messages(self, chat_id=None):
        return self._call("GET", "messages", params={"chat_id": chat_id} if chat_id is not None else None)["messages"]

    def stats(self):
        return self._call("GET", "stats")


class SandboxProcess(SandboxControl, _SandboxChild):
    """``python -m sandbox`` in its own process (so it does not share a GIL
    with the load generator), driven through its control API with the same
    method names as sandbox.TelegramSandbox."""

    def __init__(self, limits=False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.http = requests.Session()
        self.limits = limits  # False: --no-limits (a scenario turns them on with configure())

    def start(self):
        args = [sys.executable, "-m", "sandbox", "--port", str(self.port), "--quiet"]
        if not self.limits:
            args.append("--no-limits")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._healthy, timeout=15, message="the sandbox subprocess")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"python -m sandbox exited with {self.proc.returncode}")
        try:
            return self.http.get(f"{self.url}/_sandbox/health", timeout=1).ok
        except requests.RequestException:
            return False
