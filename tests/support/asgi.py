"""The ASGI server (uvicorn serving cmms.asgi) as a subprocess, as `make run`
and production run it, and logged-in sessions for WebSocket clients.

Used by tests/ and bench/. Binds to 127.0.0.1 on a free port.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from tests.support.processes import ROOT, free_port, wait_for


def asgi_command(host, port, extra=()):
    """The uvicorn command line; scripts/run_all.py builds the same one."""
    return [sys.executable, "-m", "uvicorn", "cmms.asgi:application", "--host", host, "--port", str(port),
            "--lifespan", "off", "--ws", "websockets-sansio", "--no-access-log", *extra]


class AsgiServer:
    def __init__(self, env, port=None):
        self.env = {**os.environ, **env}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="cmms-asgi-", suffix=".log")[1])
        self.proc = None

    def start(self, timeout=60):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(asgi_command("127.0.0.1", self.port), cwd=ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._ready, timeout=timeout, interval=0.1, message=f"uvicorn on port {self.port}")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return requests.get(f"{self.url}/accounts/login/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        self.log_path.unlink(missing_ok=True)


def session_cookie(user):
    """A session id for ``user``, stored in the database the server reads."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value
