"""Provider rate limits shared by every worker process, kept in Redis.

Celery's ``rate_limit`` counts per worker process; Telegram's limits count
per bot (about 30 messages/s), per chat (about 1/s, short bursts tolerated)
and per group (20/min). So the pace is decided here, in one Lua script run by
Redis over every scope that applies to a message (GCRA: each scope keeps a
"theoretical arrival time"; a send reserves the earliest instant that all
scopes allow and returns how long to wait for it). Sends are paced to stay
under the limits rather than fired and retried on 429.

Waits: a worker thread sleeps a short one (the bot's next slot, up to a
few seconds in a broadcast). A long one (a busy chat at 1/s, a group at
20/min) raises ``RateLimited``: the message takes the next place in that
chat's queue of waiting messages, reserves nothing in the bot's schedule,
and the delivery code puts the row back with ``next_attempt_at`` at that
place (no attempt counted). Threads are never parked on one chat, and a
chat's waiting messages come back one per interval.

A 429 that still comes (the bot is shared with another system) stores a
"blocked until" per scope in Redis; every reservation and every thread that
wakes up from a wait honours it, in any process.

A provider that counts a sliding window (Telegram: about 30 in any second)
sees arrivals, not departures: the network spreads sends by up to its
jitter, and a worker thread that wakes late from its wait departs later than
its slot. So the account scope also keeps a log of the instants sends
actually went out (a sorted set in Redis, checked and added to atomically
just before each send): at most the window's count in any span of the
window plus the jitter (RATE_LIMIT["WINDOW"]). However late threads wake,
no more than that many leave in such a span, so no more than the window's
count can arrive in any window while the network's spread stays within the
jitter. The pace (GCRA, at RATE_LIMIT_MARGIN of the limit) spaces the sends;
the log only holds back the ones that bunch.

Redis unreachable or hung: ``LimiterUnavailable`` after a short socket
timeout. Delivery fails closed: nothing is sent without the limiter, the row
waits in the database (no attempt counted) and goes out once Redis is back.
"""

import hashlib
import itertools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
KEY_PREFIX = "cmms:rl"
_DEFAULT_MAX_SLEEP_S = 2.0
# A departure log is kept for windows of at most this many sends (a sorted set
# of the last span's sends; a limit of 1,000,000/s means "no limit" anyway).
GUARD_MAX_COUNT = 1000
_members = itertools.count()
_member_prefix = os.urandom(4).hex()

# The departure log: at most ``count`` sends in any ``span`` (us). Returns 0
# when it took the send, else the us until it has room.
_GUARD_LUA = """
local function guard(key, now, span, count, member, cost)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
  local held = redis.call('ZCARD', key)
  if held + cost <= count then
    for c = 1, cost do redis.call('ZADD', key, now, member .. ':' .. c) end
    redis.call('PEXPIRE', key, math.ceil(span / 1000) + 1000)
    return 0
  end
  -- The send that frees enough room leaves the span at its instant + span.
  local freeing = redis.call('ZRANGE', key, held + cost - count - 1, held + cost - count - 1, 'WITHSCORES')
  return math.max(tonumber(freeing[2]) + span - now + 1, 1)
end
"""

# The GCRA over one message's scopes. Scope i's keys are KEYS[k + 2i - 1]
# (TAT) and KEYS[k + 2i] (blocked until), its ARGV a + 4i - 3 .. a + 4i.
# Reserves the earliest instant all scopes allow and returns {1, wait_us,
# index of the scope that sets the wait, the instant}; {0, wait_us, index, 0}
# when nothing could be taken; nil, taking nothing, when ``slack`` is given
# and the message would wait longer than that (us).
_GCRA_LUA = """
local function gcra(now, k, a, n, slack)
  local tats, wait, worst, over = {}, 0, 0, false
  local shared_wait, shared_interval = nil, 0
  for i = 1, n do
    local interval = tonumber(ARGV[a + 4 * i - 3])
    local tolerance = tonumber(ARGV[a + 4 * i - 2])
    local tat = tonumber(redis.call('GET', KEYS[k + 2 * i - 1]) or '0')
    if tat < now then tat = now end
    tats[i] = tat
    local w = tat - tolerance - now
    local blocked = tonumber(redis.call('GET', KEYS[k + 2 * i]) or '0') - now
    if blocked > w then w = blocked end
    if w > tonumber(ARGV[a + 4 * i - 1]) then over = true end
    if ARGV[a + 4 * i] == '1' then
      shared_wait = math.max(w, 0)
      shared_interval = interval
    end
    if w > wait then wait = w; worst = i end
  end
  if slack and (over or wait > slack) then return nil end
  if over or (shared_interval > 0 and wait - shared_wait > shared_interval) then
    return {0, wait, worst, 0}
  end
  local at = now + wait
  for i = 1, n do
    local tat = math.max(tats[i], at) + tonumber(ARGV[a + 4 * i - 3])
    redis.call('SET', KEYS[k + 2 * i - 1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  end
  return {1, wait, worst, at}
end
"""

# The departure log (see the module's docstring). KEYS[1] its key; ARGV[1..4]
# span_us (0: no log), count, member, cost.
# KEYS then, per scope, its TAT key then its blocked-until key.
# ARGV then, per scope, interval_us, tolerance_us, max_wait_us, shared (1: the
# account, which every message shares).
# Reserves the earliest instant all scopes allow, unless a scope would wait
# longer than its max_wait, or the wait comes from a recipient's scope and
# would leave a hole in the account's schedule (reserving the account at a
# chat's later slot would hold up every other chat until then).
# Returns {reserved (0/1), wait_us, index of the scope that sets the wait,
# the reserved instant in Redis time (us), the departure log's hold-back}.
_RESERVE = _GUARD_LUA + _GCRA_LUA + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r = gcra(now, 1, 4, (#KEYS - 1) / 2, nil)
if r[1] == 0 then return {0, r[2], r[3], 0, 0} end
-- Sending at once: the departure log is checked now (after a wait, by _AWAKE).
local held_back = -1
if tonumber(ARGV[1]) == 0 then held_back = 0
elseif r[2] <= 0 then held_back = guard(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])) end
return {1, r[2], r[3], r[4], held_back}
"""

# A reservation for the message about to go (as _RESERVE without a departure
# log), then places taken ahead for the thread's next messages, each over its
# own scopes, as long as each can go within ARGV[2] us (see Ahead).
# ARGV[1] the number of messages, ARGV[2] the slack; then per message its
# number of scopes n and its 4 n scope arguments. KEYS: per message, its 2 n
# scope keys. Returns _RESERVE's answer for the first without the departure
# log's, then how many of the others were taken and the wait of the last one
# taken (us).
_AHEAD = _GCRA_LUA + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slack = tonumber(ARGV[2])
local k, a, first, taken, last_wait = 0, 3, nil, 0, 0
for m = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  local r = gcra(now, k, a, n, m > 1 and slack or nil)
  if m == 1 then
    first = r
    if r[1] == 0 or r[2] > 0 then break end
  elseif r == nil then break
  else taken = taken + 1; last_wait = r[2] end
  k = k + 2 * n
  a = a + 4 * n + 1
end
if first[1] == 0 then return {0, first[2], first[3], 0, 0, 0} end
return {1, first[2], first[3], first[4], taken, last_wait}
"""

# A message that cannot go soon because of a recipient's own pace takes the
# next free slot in that recipient's queue of waiting messages, and goes
# back to the database until then: 20 messages to one chat come back one per
# interval instead of all at once, and no worker thread waits for them.
# KEYS: the scope's TAT key, blocked-until key, queue key.
# ARGV: interval_us, tolerance_us. Returns the wait until the slot (us).
_QUEUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local earliest = tonumber(redis.call('GET', KEYS[1]) or '0') - tonumber(ARGV[2])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(now, earliest, blocked, tonumber(redis.call('GET', KEYS[3]) or '0'))
local following = slot + interval
redis.call('SET', KEYS[3], string.format('%.0f', following), 'PX', math.ceil((following - now) / 1000) + 1000)
return slot - now
"""

# After a wait, just before the send: the 429 blocks, then the departure log
# (none when ARGV[1] is 0: then it only reads the blocks).
# KEYS[1] the log, then blocked-until keys; ARGV as _RESERVE's first four.
# Returns {longest remaining block in us, its index, us until the log has room}.
_AWAKE = _GUARD_LUA + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, worst = 0, 0
for i = 2, #KEYS do
  local w = tonumber(redis.call('GET', KEYS[i]) or '0') - now
  if w > wait then wait = w; worst = i - 1 end
end
if wait > 0 or tonumber(ARGV[1]) == 0 then return {wait, worst, 0} end
return {0, 0, guard(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))}
"""

# KEYS[1] the recipient's blocked key, KEYS[2] the account's, KEYS[3] the
# account's "last 429" marker. ARGV: retry_after_us, recipient, mode.
# Returns the name of the scope blocked.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ra = tonumber(ARGV[1])
local untl = now + ra
local ttl = math.ceil(ra / 1000) + 1000
local function block(key)
  local current = tonumber(redis.call('GET', key) or '0')
  if untl > current then redis.call('SET', key, string.format('%.0f', untl), 'PX', ttl) end
end
local mode = ARGV[3]
if mode == 'account' then
  block(KEYS[2])
  return 'account'
end
block(KEYS[1])
if mode == 'auto' then
  local last = redis.call('GET', KEYS[3])
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl)
  if last and last ~= ARGV[2] then
    block(KEYS[2])
    return 'account'
  end
end
return 'recipient'
"""


class RateLimited(Exception):
    """The wait is too long to sleep: put the message back for ``wait_s``."""

    def __init__(self, wait_s, scope):
        super().__init__(f"rate limit of scope {scope!r}: wait {wait_s:.2f} s")
        self.wait_s = wait_s
        self.scope = scope


class LimiterUnavailable(Exception):
    """Redis (the limiter's shared state) could not be reached in time."""


@dataclass(frozen=True)
class Scope:
    name: str
    key: str
    interval_s: float
    burst: int
    max_sleep_s: float
    # The departure log (account scope only): at most guard_count sends in any
    # guard_span_s (0: none).
    guard_span_s: float = 0.0
    guard_count: int = 0

    @property
    def blocked_key(self):
        return f"{self.key}:blocked"

    @property
    def sent_key(self):
        return f"{self.key}:sent"


@dataclass(frozen=True)
class Reservation:
    reserved: bool
    wait_s: float
    scope: str  # the scope that set the wait
    at: float  # the instant reserved (Redis clock, epoch seconds)
    # Sending at once (wait_s 0): 0 when the departure log took the send,
    # else the seconds until it has room. None: checked after the wait.
    held_back_s: float | None = 0.0
    # Places taken ahead with it (Ahead), and the wait of the last of them.
    taken: int = 0
    taken_wait_s: float = 0.0


_client = None
_client_lock = threading.Lock()
_scripts = {}


def client():
    global _client
    with _client_lock:
        if _client is None:
            timeout = settings.RATE_LIMIT["SOCKET_TIMEOUT_S"]
            _client = redis.Redis.from_url(
                settings.RATE_LIMIT["REDIS_URL"],
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=0,
            )
        return _client


# The scripts run on every send: each thread has a client with a connection
# of its own, so a call does not check a connection out of a shared pool (a
# lock and a poll() of the socket per call: a fifth of the limiter's CPU).
_local = threading.local()
_generation = 0


def _register_scripts(on):
    """The Script objects (their SHA) once; each call passes its own client."""
    if not _scripts:
        for name, source in (("reserve", _RESERVE), ("ahead", _AHEAD), ("awake", _AWAKE), ("block", _BLOCK), ("queue", _QUEUE)):
            _scripts[name] = on.register_script(source)


def _thread_client():
    key = (os.getpid(), _generation)  # a forked child or a reset(): a new one
    own = getattr(_local, "client", None)
    if own is not None and _local.key == key:
        return own
    if own is not None and _local.key[0] == os.getpid():
        _local.client = None
        own.close()  # this thread's own, after a reset(): nobody else uses it
    timeout = settings.RATE_LIMIT["SOCKET_TIMEOUT_S"]
    own = redis.Redis.from_url(settings.RATE_LIMIT["REDIS_URL"], socket_timeout=timeout,
                               socket_connect_timeout=timeout, health_check_interval=0,
                               single_connection_client=True)  # connects here: may raise
    with _client_lock:
        _register_scripts(own)
    _local.client, _local.key = own, key
    return own


def reset():
    """Forget the Redis clients (tests point settings at another Redis).
    Nothing is closed under another thread: the shared client closes when
    the last call still using it lets go of it, and each thread closes its
    own client the next time it asks for one (closing a client another
    thread was reading from broke that read with an AttributeError inside
    redis-py: the worker heartbeat's, in the test suite)."""
    global _client, _generation
    with _client_lock:
        _client = None
        _generation += 1


def _run(script, keys, args=()):
    try:
        own = _thread_client()
        return _scripts[script](keys=keys, args=args, client=own)
    except redis.RedisError as exc:
        raise LimiterUnavailable(f"{type(exc).__name__}: {exc}") from None


def account_tag(account):
    """The account part of a key: a Telegram bot's numeric id, never its token."""
    account = str(account or "")
    head, _sep, _secret = account.partition(":")
    if head.isdigit():
        return head
    return hashlib.sha256(account.encode()).hexdigest()[:16]


def is_group(channel_type, address):
    return channel_type == "TELEGRAM" and str(address).startswith("-")


def scopes_for(channel_type, address, account=""):
    limits = settings.RATE_LIMITS.get(channel_type) or {}
    tag = account_tag(account)
    wanted = [("account", f"{KEY_PREFIX}:{channel_type}:{tag}")]
    wanted.append(("recipient", f"{KEY_PREFIX}:{channel_type}:{tag}:chat:{address}"))
    if is_group(channel_type, address):
        wanted.append(("group", f"{KEY_PREFIX}:{channel_type}:{tag}:group:{address}"))
    if not any(limits.values()):
        return []
    margin = settings.RATE_LIMIT.get("MARGIN", 1.0)
    margin = margin.get(channel_type, 1.0) if isinstance(margin, dict) else margin
    margin = min(max(float(margin), 0.05), 1.0)
    window = (settings.RATE_LIMIT.get("WINDOW") or {}).get(channel_type)
    scopes = []
    for name, key in wanted:
        limit = limits.get(name)
        if limit and limit["limit"] > 0:
            span, count = 0.0, 0
            if name == "account" and window and window.get("window_s", 0) > 0:
                # The provider's count per window, not the pace's (the margin
                # spaces the sends; this bounds how many may bunch).
                count = math.floor(limit["limit"] * window["window_s"] / limit["period_s"] + 1e-9)
                span = window["window_s"] + max(float(window.get("jitter_s", 0.0)), 0.0)
                if not 1 <= count <= GUARD_MAX_COUNT:
                    span, count = 0.0, 0
            scopes.append(
                Scope(name, key, limit["period_s"] / (limit["limit"] * margin), max(int(limit["burst"]), 1),
                      limit["max_sleep_s"], span, count)
            )
        else:  # no pace of its own, but a 429 can still block it
            scopes.append(Scope(name, key, 0.0, 1, _DEFAULT_MAX_SLEEP_S))
    return scopes


def _guard_args(scopes, cost):
    """The departure log's KEYS[1] and ARGV[1..4] for the scripts."""
    guarded = next((s for s in scopes if s.guard_count), None)
    if guarded is None:
        return [scopes[0].key + ":sent"], [0, 0, "", 0]
    member = f"{_member_prefix}:{next(_members)}"
    return [guarded.sent_key], [round(guarded.guard_span_s * 1e6), guarded.guard_count, member,
                                min(max(int(cost), 1), guarded.guard_count)]


def _scope_args(scopes, cost, keys, args):
    for scope in scopes:
        # Rounded up: 30/s must never fit 31 sends in one second.
        interval_us = math.ceil(scope.interval_s * cost * 1e6)
        tolerance_us = math.floor(scope.interval_s * (scope.burst - 1) * 1e6)
        keys += [scope.key, scope.blocked_key]
        args += [interval_us, tolerance_us, round(scope.max_sleep_s * 1e6), int(scope.name == "account")]


def reserve(scopes, cost=1, following=()):
    """One reservation over ``scopes``: a Reservation (``reserved`` False when
    a scope's wait is longer than its max_sleep_s: nothing was taken). A
    reservation to send at once is also checked against the departure log.
    ``following``: the scopes of the thread's next messages (one request
    each), for places taken ahead in the same script run (see Ahead: only
    scopes it allows, none with a departure log)."""
    if following:
        keys, args = [], [1 + len(following), AHEAD_SLACK_US, len(scopes)]
        _scope_args(scopes, cost, keys, args)
        for other in following:
            args.append(len(other))
            _scope_args(other, 1, keys, args)
        reserved, wait_us, worst, at_us, taken, taken_wait_us = _run("ahead", keys, args)
        return Reservation(bool(reserved), wait_us / 1e6, scopes[worst - 1].name if worst else "", at_us / 1e6,
                           0.0, taken, taken_wait_us / 1e6)
    keys, args = _guard_args(scopes, cost)
    _scope_args(scopes, cost, keys, args)
    reserved, wait_us, worst, at_us, held_back_us = _run("reserve", keys, args)
    return Reservation(bool(reserved), wait_us / 1e6, scopes[worst - 1].name if worst else "", at_us / 1e6,
                       None if held_back_us < 0 else held_back_us / 1e6)


# Places taken ahead may wait at most this long for their slot (each has its
# own instant in the account's schedule: at a pace of 1,000,000/s they are
# 1.1 us apart, and 20 messages reserved at once are not 19 waits).
AHEAD_SLACK_US = 1000


class Ahead:
    """One worker thread's batch of messages (workers.delivery.deliver_batch),
    in the order it sends them. Where no limit is within reach, the send that
    reserves its place also takes places for the thread's next messages, in
    the same script run: a batch costs a few Redis round trips instead of one
    per message. Each message still takes its own place in every scope that
    applies to it (its chat's included), and only one it may have at once;
    what changes is when: up to RATE_LIMIT["AHEAD"]["HORIZON_S"] before its
    send. A place not used by then is dropped (wasted, never sent on), and a
    429 drops them all.

    Only where that cannot bunch sends against a limit (``eligible``): no
    departure log, no group, and an account paced at RATE_LIMIT["AHEAD"]
    ["MIN_RATE"] per second or more (one worker thread sends tens a second).
    Telegram's 30/s, and every limit a process can reach, take their place
    per send as before. The thread takes as many places as it sends within
    the horizon at its own pace, so a slow provider means none."""

    def __init__(self, upcoming):
        conf = settings.RATE_LIMIT.get("AHEAD") or {}
        self.horizon_s = float(conf.get("HORIZON_S", 0.0))
        self.most = int(conf.get("MAX", 0))
        self.min_rate = float(conf.get("MIN_RATE", 1000.0))
        # (channel_type, address, account) of the messages still to send.
        self.upcoming = [(c, str(a), acc) for c, a, acc in upcoming]
        self.places = {}  # key -> [(monotonic expiry, monotonic due)]
        self.last = None
        self.pace_s = None  # this thread's seconds per send (moving average)

    def eligible(self, scopes):
        for scope in scopes:
            if scope.guard_count or scope.name == "group":
                return False
            if scope.name == "account" and scope.interval_s * self.min_rate > 1.0:
                return False
        return True

    def take(self, key):
        """A place taken earlier for ``key`` (channel_type, address, account):
        the seconds to wait for its slot (0.0 mostly), None if there is none."""
        now = time.monotonic()
        if self.last is not None:
            gap = now - self.last
            self.pace_s = gap if self.pace_s is None else 0.7 * self.pace_s + 0.3 * gap
        self.last = now
        try:  # the messages before it went another way (skipped, failed)
            del self.upcoming[:self.upcoming.index(key) + 1]
        except ValueError:  # a later chunk of the same message, or a migrated chat
            pass
        places = self.places.get(key)
        while places:
            expiry, due = places.pop(0)
            if expiry >= now:
                return max(due - now, 0.0)
        return None

    def following(self):
        """The next messages to take places for with this send: as many as
        this thread sends within the horizon."""
        if not self.horizon_s or not self.most or not self.pace_s:
            return []
        return self.upcoming[:min(self.most, int(self.horizon_s / max(self.pace_s, 1e-4)))]

    def took(self, keys, since, due):
        """Places taken for ``keys`` by a reservation made at ``since``, all
        due by ``due`` (monotonic seconds)."""
        for key in keys:
            self.places.setdefault(key, []).append((since + self.horizon_s, due))

    def clear(self):
        """A 429: the places taken ahead are not used (the next send reserves again)."""
        self.places.clear()


def awake(scopes, cost=1):
    """Just before a send that waited: (seconds until every 429 block on
    ``scopes`` has expired, that scope, seconds until the departure log has
    room, 0 when it took the send)."""
    keys, args = _guard_args(scopes, cost)
    wait_us, worst, held_back_us = _run("awake", keys + [s.blocked_key for s in scopes], args)
    return wait_us / 1e6, scopes[worst - 1].name if worst else "", held_back_us / 1e6


def queue_slot(scope):
    """Seconds until this message's place in the scope's queue of waiting messages."""
    wait_us = _run("queue", [scope.key, scope.blocked_key, f"{scope.key}:queue"],
                   [math.ceil(scope.interval_s * 1e6), math.floor(scope.interval_s * (scope.burst - 1) * 1e6)])
    return wait_us / 1e6


def blocked_for(scopes):
    """Seconds until every 429 block on ``scopes`` has expired, and the scope
    (``awake`` without the departure log: nothing is taken)."""
    wait_us, worst, _held_back = _run("awake", [scopes[0].sent_key] + [s.blocked_key for s in scopes], [0, 0, "", 0])
    return wait_us / 1e6, scopes[worst - 1].name if worst else ""


def acquire(channel_type, address, account="", cost=1, sleep=time.sleep, ahead=None):
    """Wait until sending ``cost`` messages on ``channel_type`` to ``address``
    is within every limit that applies, and take them. Returns the seconds
    slept. Raises RateLimited when the wait is too long to sleep, and
    LimiterUnavailable when Redis cannot be reached. ``ahead``: the thread's
    batch (Ahead), which may hold a place taken for this send already."""
    scopes = scopes_for(channel_type, address, account)
    if not scopes:
        return 0.0
    following = []
    if ahead is not None and cost == 1:
        key = (channel_type, str(address), account)
        wait = ahead.take(key)
        if wait is not None:
            if wait > 0:
                sleep(wait)
            return wait
        if ahead.eligible(scopes):
            following = [(k, other) for k in ahead.following()
                         if ahead.eligible(other := scopes_for(*k))]
    budget = {s.name: s.max_sleep_s for s in scopes}
    slept = 0.0
    while True:
        since = time.monotonic()
        slot = reserve(scopes, cost, [other for _k, other in following])
        if slot.taken:
            ahead.took([k for k, _other in following[:slot.taken]], since, time.monotonic() + slot.taken_wait_s)
        following = []
        if not slot.reserved:
            if slot.wait_s > 0 and slept + slot.wait_s <= budget.get(slot.scope, 0):
                # A recipient's own pace, and short: sleep without holding an
                # account slot, then compete for the chat's next slot again.
                sleep(slot.wait_s)
                slept += slot.wait_s
                continue
            scope = next((s for s in scopes if s.name == slot.scope), None)
            if scope is None or scope.name == "account":
                raise RateLimited(slot.wait_s, slot.scope)
            raise RateLimited(queue_slot(scope), scope.name)
        if slot.wait_s <= 0 and slot.held_back_s == 0:
            return slept
        wait = slot.wait_s
        if wait <= 0:  # held back by the departure log
            wait = slot.held_back_s
            if wait > budget.get("account", 0):
                raise RateLimited(wait, "account")
        while True:
            sleep(wait)
            slept += wait
            # A 429 may have arrived for one of these scopes while we slept:
            # honour it; else the departure log takes the send or says how long
            # until the sends that bunched before it leave its span.
            blocked, scope, held_back = awake(scopes, cost)
            if blocked <= 0 and held_back <= 0:
                return slept
            if blocked <= 0:
                if slept + held_back > budget.get("account", 0):
                    raise RateLimited(held_back, "account")
                wait = held_back
                continue
            if slept + blocked > budget.get(scope, 0):
                raise RateLimited(blocked, scope)
            sleep(blocked)
            slept += blocked
            # The slot reserved fell inside the block. Reserve again instead of
            # sending now: every thread that slept through the block would
            # otherwise send at its end, all at once, and draw the next 429.
            break


def note_retry_after(channel_type, address, seconds, account="", scope=None):
    """A provider answered 429 with ``retry_after``: block the scope for that
    long in every process (``scope``: "recipient" or "account" when the
    provider said which; else RATE_LIMIT["RETRY_AFTER_SCOPE"] decides). Returns the scope blocked, or "" when Redis is
    unreachable (the row's own next_attempt_at still honours retry_after)."""
    scopes = {s.name: s for s in scopes_for(channel_type, address, account)}
    if not scopes:
        return ""
    keys = [scopes["recipient"].blocked_key, scopes["account"].blocked_key, f"{scopes['account'].key}:last429"]
    mode = scope or settings.RATE_LIMIT["RETRY_AFTER_SCOPE"]
    # Never a block key that outlives the longest wait we accept (a provider
    # answering retry_after: 315360000 would otherwise park the bot for years).
    seconds = min(float(seconds), settings.DELIVERY["RETRY_AFTER_MAX_S"])
    try:
        scope = _run("block", keys, [round(seconds * 1e6), str(address), mode])
    except LimiterUnavailable as exc:
        logger.warning("Could not store retry_after %s s for %s (%s)", seconds, channel_type, exc)
        return ""
    scope = scope.decode() if isinstance(scope, bytes) else scope
    logger.warning("%s answered 429: scope %s of %s blocked for %s s", channel_type, scope, address, seconds)
    return scope
