"""A total deadline for one HTTP call with requests.

requests' read timeout is per socket read: a server that answers one byte
every few seconds keeps the call (and the worker thread) for as long as it
likes. Here a single watchdog thread shuts the call's socket down when its
deadline passes, whatever phase it is in (headers or body), and the call
fails like a broken connection. The connection's socket is found through a
pool class that notes, per thread, which connection the call is using.
"""

import heapq
import itertools
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Call:
    """One call under a deadline: the connection it uses, and whether the
    watchdog cut it."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.conn = None
        self.expired = False
        self.done = False
        self._lock = threading.Lock()

    def attach(self, conn):
        with self._lock:
            self.conn = conn
            if self.expired:
                self._shutdown()

    def expire(self):
        with self._lock:
            if self.done:
                return
            self.expired = True
            self._shutdown()

    def _shutdown(self):
        sock = getattr(self.conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        _current.call = self
        _watchdog().watch(self)
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.done = True
        _current.call = None
        return False


class _Watchdog:
    def __init__(self):
        self._heap = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="http-deadline-watchdog", daemon=True).start()

    def watch(self, call):
        with self._cond:
            heapq.heappush(self._heap, (call.deadline, next(self._seq), call))
            self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _seq, call = self._heap[0]
                wait = deadline - time.monotonic()
                if call.done:
                    heapq.heappop(self._heap)
                    continue
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            call.expire()


_watchdogs = {}
_watchdogs_lock = threading.Lock()


def _watchdog():
    """One per process (a forked pool child has no thread of its parent's)."""
    pid = os.getpid()
    with _watchdogs_lock:
        if pid not in _watchdogs:
            _watchdogs.clear()
            _watchdogs[pid] = _Watchdog()
        return _watchdogs[pid]


class _NoteConnection:
    def _make_request(self, conn, *args, **kwargs):
        call = getattr(_current, "call", None)
        if call is not None:
            call.attach(conn)
        return super()._make_request(conn, *args, **kwargs)


class _HTTPPool(_NoteConnection, HTTPConnectionPool):
    pass


class _HTTPSPool(_NoteConnection, HTTPSConnectionPool):
    pass


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections the watchdog can cut."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def install(session):
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    _remember_environment(session)
    return session


def _remember_environment(session):
    """requests reads the proxy and CA-bundle variables from the environment
    on every call (os.environ scanned each time: a tenth of a worker's CPU per
    message). A worker's environment does not change, so the answer is kept
    per scheme and host; arguments given explicitly still win as in requests."""
    original = session.merge_environment_settings
    cache = {}

    def merge_environment_settings(url, proxies, stream, verify, cert):
        if proxies or not session.trust_env:
            return original(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc.rpartition("@")[2], stream, verify, cert)
        if key not in cache:
            cache[key] = original(url, proxies, stream, verify, cert)
        merged = cache[key]
        return {**merged, "proxies": dict(merged["proxies"])}

    session.merge_environment_settings = merge_environment_settings


def post(session, url, seconds, **kwargs):
    """``session.post`` with the body read, all within ``seconds``. Raises
    DeadlineExceeded when the watchdog had to cut it."""
    with Call(seconds) as call:
        try:
            response = session.post(url, **kwargs)
            response.content  # noqa: B018 - read the body under the deadline
        except requests.exceptions.RequestException:
            if call.expired:
                raise DeadlineExceeded(seconds) from None
            raise
    if call.expired:
        raise DeadlineExceeded(seconds)
    return response


class DeadlineExceeded(Exception):
    def __init__(self, seconds):
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds
