"""Which worker processes are alive: a short-lived Redis key per process,
renewed by a heartbeat thread.

A claimed row (SENDING) names the process that holds it (``claimed_by``).
When that process dies (kill -9, OOM, a lost machine), its key expires
within ``WORKER_HEARTBEAT_TTL_S`` and the relay hands the row out again at
once, instead of waiting for the lease, which must stay long enough for a
live worker's slowest send. A live process keeps its key however long a
send takes: the heartbeat runs in its own thread.
"""

import logging
import os
import socket
import threading

import redis
from django.conf import settings

from . import ratelimit

logger = logging.getLogger(__name__)
KEY_PREFIX = "cmms:worker:alive:"
_lock = threading.Lock()
_state = {"pid": None, "id": "", "thread": None}


def ttl_s():
    return settings.DELIVERY["WORKER_HEARTBEAT_TTL_S"]


def worker_id():
    """This process, as written in ``MessageLog.claimed_by`` (a forked pool
    child gets its own id)."""
    pid = os.getpid()
    if _state["pid"] != pid:
        with _lock:
            if _state["pid"] != pid:
                _state.update(pid=pid, id=f"{socket.gethostname()[:60]}:{pid}", thread=None)
    return _state["id"]


def beat():
    """Renew this process' key; False when Redis cannot be reached."""
    try:
        ratelimit.client().set(KEY_PREFIX + worker_id(), "1", px=int(ttl_s() * 1000))
    except redis.RedisError as exc:
        logger.warning("Worker heartbeat failed (%s)", type(exc).__name__)
        return False
    return True


def ensure_heartbeat():
    """Before this process claims its first row: the key exists before any
    row names it, and a thread renews it from then on."""
    worker_id()
    if _state["thread"] is not None or ttl_s() <= 0:
        return
    with _lock:
        if _state["thread"] is not None:
            return
        beat()
        thread = threading.Thread(target=_renew, name="cmms-heartbeat", daemon=True)
        _state["thread"] = thread
        thread.start()


def _renew():
    pid = os.getpid()
    stop = threading.Event()
    while _state["pid"] == pid:
        stop.wait(ttl_s() / 3)
        beat()


def alive(ids):
    """The subset of worker ids whose key exists, or None when Redis cannot
    tell (then nobody is presumed dead: the lease still applies)."""
    ids = sorted(set(ids))
    if not ids:
        return set()
    try:
        values = ratelimit.client().mget([KEY_PREFIX + i for i in ids])
    except redis.RedisError as exc:
        logger.warning("Relay: cannot read worker heartbeats (%s)", type(exc).__name__)
        return None
    return {i for i, v in zip(ids, values, strict=True) if v is not None}
