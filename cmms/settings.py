"""Django settings, read once from the environment (12-factor).

Safe laptop defaults: a SQLite file under var/, Redis on localhost, the public
Telegram Bot API (``make run`` points it at the local sandbox instead).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from cmms import email_url as _email_url
from cmms import envfiles

# .env (the user's) and var/run.env (what a running `make run` chose), never
# overriding the real environment: see cmms/envfiles.py.
ENV_FILE_ORIGINS = envfiles.load()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CMMS_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def local_secret_key():
    """A random key kept in var/ (mode 0600) for a machine without
    DJANGO_SECRET_KEY: a laptop or a test run works with DEBUG off, and no
    key is shared by every checkout. Set DJANGO_SECRET_KEY when several
    hosts serve one site."""
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        import secrets

        key = secrets.token_urlsafe(50)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


# Off unless asked for: a debug page shows settings and the environment.
# `make run` turns it on for itself.
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or local_secret_key()
# Error reports (debug pages, mails to ADMINS) never show connection URLs with
# passwords or provider secrets, even with DEBUG on.
DEFAULT_EXCEPTION_REPORTER_FILTER = "cmms.error_reports.SecretsHidingFilter"
DEFAULT_EXCEPTION_REPORTER = "cmms.error_reports.SecretsHidingReporter"
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
# `make run WEB_PORT=8100` publishes SITE_URL=http://127.0.0.1:8100 in var/run.env.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_celery_results",
    "django_celery_beat",
    "cmms",
    "notifications",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cmms.urls"
WSGI_APPLICATION = "cmms.wsgi.application"
# The app is served through ASGI (uvicorn): HTTP and the inbox's WebSocket.
ASGI_APPLICATION = "cmms.asgi.application"
AUTH_USER_MODEL = "cmms.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Kept open as on PostgreSQL: a new SQLite connection (WAL pragma, registering
    # functions) was a fifth of a worker's CPU per message (docs/benchmarks.md).
    DATABASES["default"]["CONN_MAX_AGE"] = env_float("SQLITE_CONN_MAX_AGE", 60)
    DATABASES["default"]["OPTIONS"] = {
        # Worker threads and the web process write concurrently: wait for the
        # lock instead of failing, and take it at BEGIN so upgrades cannot deadlock.
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that a worker subprocess in an end-to-end test
    # sees the same test database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("SQLITE_TEST_NAME", str(VAR_DIR / "test_db.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# --- Language -----------------------------------------------------------------
LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "es")
LANGUAGES = [("es", _("Spanish")), ("en", _("English"))]
LOCALE_PATHS = []  # catalogs live in each app's locale/ folder
TIME_ZONE = os.environ.get("TIME_ZONE", "America/Santiago")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Redis and Celery ---------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

NOTIFICATION_QUEUES = {
    "TELEGRAM": "telegram",
    "EMAIL": "email",
    "SMS": "sms",
    "WHATSAPP": "whatsapp",
    "IN_APP": "inapp",
}
CELERY_DEFAULT_QUEUE_NAME = "default"
# Inbound events (button presses, commands, delivery receipts) have their own
# queue, so a person's press is not stuck behind a broadcast's fan-out.
INBOUND_QUEUE_NAME = "inbound"

# Redis by default; RabbitMQ with CELERY_BROKER_URL=amqp://user:password@host:5672/vhost
# (docs/scaling.md, "Brokers: Redis or RabbitMQ"). Redis stays the rate
# limiter's store, the heartbeats' and the channel layer's either way.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
BROKER_IS_AMQP = CELERY_BROKER_URL.partition("://")[0].lower() in ("amqp", "amqps", "pyamqp")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_DEFAULT_QUEUE = CELERY_DEFAULT_QUEUE_NAME
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1)
# What a plain `celery -A celery_app worker` runs. Delivery is I/O-bound: the
# prefork default (one process per core) keeps two requests in flight on two
# cores, half of Telegram's 30/s at 200 ms of latency; 32 threads keep enough.
# `-c N` and `-P gevent|solo|threads` override these; Celery reads `-P prefork`
# as "not given", so prefork is chosen with CELERY_WORKER_POOL=prefork.
CELERY_WORKER_POOL = os.environ.get("CELERY_WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 32)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True
# A "task-sent" event doubles the Redis work of every publish (~40% of a
# producer's and a fan-out's CPU per task, docs/benchmarks.md). Flower still
# shows each task from "received" on, and MessageLog shows what is QUEUED.
CELERY_TASK_SEND_SENT_EVENT = env_bool("CELERY_TASK_SEND_SENT_EVENT", False)
# Producers must never hang on a dead broker: connect fast, fail fast, and let
# the outbox relay publish the row later (see notifications.dispatch).
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 1.0)
REDIS_BROKER_TRANSPORT_OPTIONS = {
    # Longer than any countdown we schedule (short retries only; long waits live
    # in MessageLog.next_attempt_at), so an unacked task is not redelivered early.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": env_float("REDIS_SOCKET_CONNECT_TIMEOUT", 0.5),
    "socket_timeout": env_float("REDIS_SOCKET_TIMEOUT", 5.0),
    "health_check_interval": 10,
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
AMQP_BROKER_TRANSPORT_OPTIONS = {
    # Publisher confirms: a publish returns once RabbitMQ has the task (on disk,
    # for a persistent message to a durable queue); a nack raises, and the row
    # stays for the relay.
    "confirm_publish": True,
    # A hung RabbitMQ (accepts connections, never answers) frees a publishing
    # thread and its connection after this; the producer itself waits at most
    # DELIVERY["PUBLISH_TIMEOUT_S"] (notifications.dispatch).
    "read_timeout": env_float("AMQP_SOCKET_TIMEOUT", 5.0),
    "write_timeout": env_float("AMQP_SOCKET_TIMEOUT", 5.0),
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = AMQP_BROKER_TRANSPORT_OPTIONS if BROKER_IS_AMQP else REDIS_BROKER_TRANSPORT_OPTIONS
# RabbitMQ closes the channel of a consumer that holds an unacknowledged task
# longer than its consumer_timeout (30 min by default; rabbitmq.conf
# consumer_timeout, in ms), and an ETA retry waits unacknowledged in the
# worker: countdowns stay under half of it (workers.broker). Set this to the
# broker's value when it is lower.
RABBITMQ_CONSUMER_TIMEOUT_S = env_float("RABBITMQ_CONSUMER_TIMEOUT_S", 1800.0)
# Every queue is durable (celery_app.py) and every task persistent: a
# RabbitMQ restart keeps what was queued (Redis: with AOF persistence).
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
# After a lost broker connection Celery lowers the new channel's prefetch by
# the tasks still running and raises it again as they finish; with RabbitMQ
# the worker was seen to stop consuming after a restart that way (the running
# tasks' acks belong to the dead channel; celery/celery#9512, #7515). The full
# prefetch at once only takes a few more tasks, which the claim makes harmless.
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = env_bool("CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION", not BROKER_IS_AMQP)
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Real-time push (Django Channels) ------------------------------------------
# The channel layer carries pushes from workers to the ASGI processes holding
# the browsers' WebSockets. Redis by default (the broker's); a push is only a
# hint, the inbox row is the truth, so losing one loses nothing.
CHANNEL_LAYER_REDIS_URL = os.environ.get("CHANNEL_LAYER_REDIS_URL", REDIS_URL)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # No socket_timeout here: a consumer's receive blocks on Redis for
            # seconds by design; pushes are bounded by INBOX["PUSH_TIMEOUT_S"].
            "hosts": [{"address": CHANNEL_LAYER_REDIS_URL,
                       "socket_connect_timeout": env_float("CHANNEL_LAYER_CONNECT_TIMEOUT_S", 1.0)}],
            "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "cmms"),
            # A browser tab that stops reading (a sleeping laptop) must not
            # hold many pushes: it fetches what it missed when it wakes up.
            "capacity": env_int("CHANNEL_LAYER_CAPACITY", 100),
            "expiry": 60,
        },
    },
}
INBOX = {
    # A push (worker -> channel layer) waits at most this long; past it the
    # delivery is retried like any provider timeout.
    "PUSH_TIMEOUT_S": env_float("INBOX_PUSH_TIMEOUT_S", 3.0),
    "PAGE_SIZE": env_int("INBOX_PAGE_SIZE", 25),
    # Most notifications one "what did I miss" answer carries.
    "SINCE_LIMIT": env_int("INBOX_SINCE_LIMIT", 100),
}

# --- Delivery policy (workers/) ----------------------------------------------
DELIVERY = {
    # Attempts per message before it is FAILED (dead letter).
    "MAX_ATTEMPTS": env_int("DELIVERY_MAX_ATTEMPTS", 6),
    "BACKOFF_BASE_S": env_float("DELIVERY_BACKOFF_BASE_S", 2.0),
    "BACKOFF_MAX_S": env_float("DELIVERY_BACKOFF_MAX_S", 300.0),
    # Retries at most this far away go back to the broker as a countdown; longer
    # ones wait in the database for the relay (well under the visibility timeout).
    "COUNTDOWN_MAX_S": env_float("DELIVERY_COUNTDOWN_MAX_S", 60.0),
    # A claim (SENDING) is a lease: a row still SENDING after it expired belongs
    # to a dead worker and the relay hands it out again.
    "LEASE_S": env_float("DELIVERY_LEASE_S", 120.0),
    # Each worker process renews a Redis key this short-lived; when it is gone
    # the process died, and the relay retries its rows without waiting for the
    # lease (0 switches the heartbeat off: only the lease applies).
    "WORKER_HEARTBEAT_TTL_S": env_float("DELIVERY_WORKER_HEARTBEAT_TTL_S", 6.0),
    # The longest wait a provider's retry_after can impose (an absurd answer,
    # 10 years or 1e12 s, is capped and reported in MessageLog.last_error).
    "RETRY_AFTER_MAX_S": env_float("DELIVERY_RETRY_AFTER_MAX_S", 3600.0),
    # A QUEUED row never published (publish lost or broker down) is published
    # by the relay after this long.
    "RELAY_UNPUBLISHED_AFTER_S": env_float("DELIVERY_RELAY_UNPUBLISHED_AFTER_S", 5.0),
    # A row published this long ago and still waiting while its queue is empty
    # lost its task (a worker killed with it prefetched): published again.
    "RELAY_REPUBLISH_AFTER_S": env_float("DELIVERY_RELAY_REPUBLISH_AFTER_S", 120.0),
    # The same when the queue has a backlog (the task is probably in it, so
    # only after a long time: republishing a backlog would double it).
    "RELAY_REPUBLISH_BACKLOG_AFTER_S": env_float("DELIVERY_RELAY_REPUBLISH_BACKLOG_AFTER_S", 1800.0),
    "RELAY_BATCH": env_int("DELIVERY_RELAY_BATCH", 2000),
    # A producer waits at most this long for the broker; past it the row stays
    # QUEUED for the relay (Redis down, or hung and not answering).
    "PUBLISH_TIMEOUT_S": env_float("DELIVERY_PUBLISH_TIMEOUT_S", 1.0),
    # After a failed publish, producers skip the broker this long (the relay
    # catches up), so a burst of calls during an outage does not pay the timeout each.
    "PUBLISH_BREAKER_S": env_float("DELIVERY_PUBLISH_BREAKER_S", 5.0),
    # One delivery task carries at most this many messages of one channel
    # (claimed in one UPDATE, loaded in one SELECT, successes written in bulk)...
    "BATCH_MAX": env_int("DELIVERY_BATCH_MAX", 50),
    # ...and a publish is spread over up to this many tasks, so that as many
    # worker threads send in parallel (the default worker concurrency).
    "BATCH_SPREAD": env_int("DELIVERY_BATCH_SPREAD", 32),
}


def env_rate(name, default):
    """``30/s``, ``20/min``, ``1000/h`` or a bare number (per second) -> (count, period_s);
    ``0`` or ``off`` switches the limit off."""
    value = os.environ.get(name, "").strip().lower() or default
    if value in ("0", "off", "none"):
        return None
    count, _slash, unit = value.partition("/")
    periods = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    if unit not in periods:
        raise ImproperlyConfigured(f"{name}={value!r}: use a rate like 30/s, 20/min or 1000/h.")
    return float(count), periods[unit]


def rate_limit(name, default_rate, default_burst, max_sleep_s):
    rate = env_rate(f"RATE_LIMIT_{name}", default_rate)
    if rate is None:
        return None
    return {
        "limit": rate[0],
        "period_s": rate[1],
        # Messages allowed back to back before the pace applies.
        "burst": env_int(f"RATE_LIMIT_{name}_BURST", default_burst),
        # A worker thread sleeps a wait this short; a longer one goes back to the
        # row (next_attempt_at) so threads are not parked on one busy chat (the
        # account's wait is the bot's: every thread would wait for it anyway).
        "max_sleep_s": env_float(f"RATE_LIMIT_{name}_MAX_SLEEP_S", max_sleep_s),
    }


# --- Provider rate limits (workers/ratelimit.py) ------------------------------
# Shared by every worker process through Redis. Scopes per channel: "account"
# (one bot / sender for all messages), "recipient" (one chat), "group" (a
# group chat, Telegram: a negative chat id). Env: RATE_LIMIT_TELEGRAM_ACCOUNT=30/s,
# RATE_LIMIT_TELEGRAM_RECIPIENT=1/s (+ _BURST), RATE_LIMIT_TELEGRAM_GROUP=20/min.
RATE_LIMITS = {
    "TELEGRAM": {
        "account": rate_limit("TELEGRAM_ACCOUNT", "30/s", 1, 5.0),
        "recipient": rate_limit("TELEGRAM_RECIPIENT", "1/s", 2, 0.5),
        "group": rate_limit("TELEGRAM_GROUP", "20/min", 1, 0.5),
    },
    # Twilio: a long code sends about 1 segment/s (Twilio queues the rest, and
    # the queue's delay is what an alert cannot afford); the "account" is the
    # sending number or messaging service. Tokens are segments.
    # Env: RATE_LIMIT_SMS_ACCOUNT=1/s (a messaging service pool: raise it).
    "SMS": {
        "account": rate_limit("SMS_ACCOUNT", "1/s", 1, 5.0),
        "recipient": None,
    },
    # WhatsApp Cloud API: 80 messages/s per business number by default (Meta
    # raises it to 1000); one user takes about one message every 6 s (error
    # 131056 beyond a short burst). RATE_LIMIT_WHATSAPP_ACCOUNT, _RECIPIENT.
    "WHATSAPP": {
        "account": rate_limit("WHATSAPP_ACCOUNT", "80/s", 1, 5.0),
        "recipient": rate_limit("WHATSAPP_RECIPIENT", "10/min", 6, 0.5),
    },
    # One SMTP account (relay login) for every message; providers cap messages
    # per second per login (RATE_LIMIT_EMAIL_ACCOUNT=14/s for Amazon SES' default).
    "EMAIL": {
        "account": rate_limit("EMAIL_ACCOUNT", "20/s", 20, 5.0),
    },
}
RATE_LIMIT = {
    # The limiter's Redis (a separate one is possible; the broker's by default).
    "REDIS_URL": os.environ.get("RATE_LIMIT_REDIS_URL", REDIS_URL),
    # Redis unreachable or hung: give up after this long and retry the message later.
    "SOCKET_TIMEOUT_S": env_float("RATE_LIMIT_SOCKET_TIMEOUT_S", 0.5),
    # Without the limiter nothing is sent (fail closed): the row waits this long.
    "UNAVAILABLE_RETRY_S": env_float("RATE_LIMIT_UNAVAILABLE_RETRY_S", 5.0),
    # Which scope a 429 blocks: "account" (the whole bot), "recipient" (that
    # chat only) or "auto" (the chat; the whole bot once two different chats
    # get a 429 while the first block lasts). Telegram does not say which limit
    # a 429 is for; "account" is the only choice that never sends inside a
    # bot-wide retry_after. Its cost: a 429 that was only one chat's pauses
    # every chat for retry_after (docs/operations.md).
    "RETRY_AFTER_SCOPE": os.environ.get("RATE_LIMIT_RETRY_AFTER_SCOPE", "account"),
    # Pace at this fraction of each published limit, and never more sends in
    # any span of the provider's window plus the network's jitter than the
    # window allows (the departure log, workers/ratelimit.py). A provider
    # counting a sliding window sees arrivals, which the network spreads by
    # its jitter, and a worker thread that wakes late bunches its send with
    # the next one: at +-50 ms of jitter (0-100 ms of spread) a 1-s window of
    # 30 holds 30 sends in any 1.1 s, a ceiling of 30 / 1.1 = 0.909 of the
    # limit whatever the pace. Before the log, the pace alone had to keep
    # clear of the threads' own lateness too (0.88 drew 4 x 429 once in CI);
    # with it the pace can sit at the ceiling (docs/benchmarks.md, "Rate-limit
    # margin").
    # Per channel; a channel not named paces at its full limit (Twilio queues
    # what exceeds a number's rate instead of counting a window).
    "MARGIN": {"TELEGRAM": env_float("RATE_LIMIT_MARGIN", 0.91)},
    # Channels whose provider counts a sliding window of its account's limit:
    # its length (RATE_LIMIT_TELEGRAM_WINDOW_S, 0: no departure log) and how
    # far the network may spread arrivals (RATE_LIMIT_TELEGRAM_JITTER_S).
    "WINDOW": {"TELEGRAM": {"window_s": env_float("RATE_LIMIT_TELEGRAM_WINDOW_S", 1.0),
                            "jitter_s": env_float("RATE_LIMIT_TELEGRAM_JITTER_S", 0.1)}},
    # Places taken ahead (workers/ratelimit.py, Ahead): where every limit is
    # out of a worker's reach (an account paced at MIN_RATE/s or more, no
    # departure log, no group), a worker thread reserves the places of the
    # messages it will send in the next HORIZON_S (at most MAX) in the Redis
    # round trip of the one it sends now. RATE_LIMIT_AHEAD_S=0 turns it off.
    "AHEAD": {"HORIZON_S": env_float("RATE_LIMIT_AHEAD_S", 0.5),
              "MAX": env_int("RATE_LIMIT_AHEAD_MAX", 32),
              "MIN_RATE": env_float("RATE_LIMIT_AHEAD_MIN_RATE", 1000.0)},
}

# --- Maintenance domain (cmms/) -------------------------------------------------
CMMS = {
    # After a prediction alert, the same risk predicted again for the same order
    # is recorded silently for this long; a higher risk alerts at once.
    "PREDICTION_ALERT_COOLDOWN_S": env_float("CMMS_PREDICTION_ALERT_COOLDOWN_S", 6 * 3600.0),
    # Preventive maintenance reminders start this many days before the due date
    # (a plan can override it).
    "REMINDER_DAYS_BEFORE": env_int("CMMS_REMINDER_DAYS_BEFORE", 3),
    # An overdue work order is also reported to the site's supervisors once it
    # has been overdue this long.
    "OVERDUE_ESCALATE_AFTER_H": env_float("CMMS_OVERDUE_ESCALATE_AFTER_H", 24.0),
    # Most predictions accepted in one POST /api/ml/predictions/.
    "ML_API_MAX_BATCH": env_int("CMMS_ML_API_MAX_BATCH", 500),
}

# --- Escalation (cmms/escalation.py, cmms/shifts.py, notifications/failover.py) --
# Default waits of the shipped policies, per priority and step action, in
# seconds (a step with no wait of its own uses these). ESCALATION_STEP_WAIT_S
# sets every one of them at once (a demo or a test makes them seconds).
_STEP_WAIT_S = os.environ.get("ESCALATION_STEP_WAIT_S", "").strip()


def _waits(**waits):
    return {action: float(_STEP_WAIT_S) if _STEP_WAIT_S else float(s) for action, s in waits.items()}


ESCALATION = {
    "DEFAULT_WAIT_S": {
        "critical": _waits(NOTIFY_ASSIGNEE=600, NOTIFY_SUPERVISORS=600, REASSIGN=1200),
        "high": _waits(NOTIFY_ASSIGNEE=1800, NOTIFY_SUPERVISORS=1800, REASSIGN=3600),
    },
    # Steps one scan runs at most (the rest wait for the next scan).
    "SCAN_BATCH": env_int("ESCALATION_SCAN_BATCH", 200),
    # Failover of high and critical messages: a channel listed here must
    # confirm delivery (DELIVERED or READ) within this many seconds, else the
    # message goes out on the user's next channel. Channels not listed (Telegram,
    # whose bots get no delivery receipts; the in-app inbox) count SENT as
    # confirmed; a permanent failure fails over on every channel.
    "FAILOVER_CONFIRM_S": {
        "SMS": env_float("ESCALATION_FAILOVER_CONFIRM_SMS_S", 120.0),
        "WHATSAPP": env_float("ESCALATION_FAILOVER_CONFIRM_WHATSAPP_S", 120.0),
    },
    # Rows older than this are not failed over any more (a late receipt for last week).
    "FAILOVER_MAX_AGE_S": env_float("ESCALATION_FAILOVER_MAX_AGE_S", 6 * 3600.0),
}

# --- Broadcasts to a role (notifications.role_broadcasts) -----------------------
ROLE_BROADCASTS = {
    # Users a worker expands into MessageLog rows per transaction.
    "BATCH_USERS": env_int("ROLE_BROADCAST_BATCH_USERS", 1000),
    # The first batch of an expansion is this small, so that the first
    # messages go out while the rest is written.
    "FIRST_BATCH_USERS": env_int("ROLE_BROADCAST_FIRST_BATCH_USERS", 100),
    # A broadcast whose expansion task was never published (broker down) is
    # published by the relay after this long...
    "UNPUBLISHED_AFTER_S": env_float("ROLE_BROADCAST_UNPUBLISHED_AFTER_S", 5.0),
    # ...and one that made no progress this long (its task lost, its worker
    # killed mid-batch) is published again; a second task is harmless.
    "STALLED_AFTER_S": env_float("ROLE_BROADCAST_STALLED_AFTER_S", 30.0),
}

# --- Channels -----------------------------------------------------------------
TELEGRAM_BOT_TOKEN = os.environ.get("TELEGRAM_BOT_TOKEN", "")
# Where TELEGRAM_BOT_TOKEN came from, for `setup_telegram_bot`'s status:
# "environment", ".env" or "make run" (the local sandbox's token).
TELEGRAM_BOT_TOKEN_ORIGIN = ENV_FILE_ORIGINS.get("TELEGRAM_BOT_TOKEN", "environment") if TELEGRAM_BOT_TOKEN else ""
TELEGRAM_API_URL = os.environ.get("TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/")
TELEGRAM_TIMEOUT_S = env_float("TELEGRAM_TIMEOUT_S", 10.0)
# The interactive bot. Webhook mode: Telegram echoes this secret in the
# X-Telegram-Bot-Api-Secret-Token header (1-256 of A-Za-z0-9_-); without it
# POST /telegram/webhook/ refuses every request.
TELEGRAM_WEBHOOK_SECRET = os.environ.get("TELEGRAM_WEBHOOK_SECRET", "")
# A one-time link from telegram_link / "Vincular Telegram" works this long.
TELEGRAM_LINK_TTL_H = env_float("TELEGRAM_LINK_TTL_H", 24.0)
# A button press still being processed after this long gets a "working on it"
# answer, so the user's spinner stops well before Telegram's ~15 s window.
TELEGRAM_CALLBACK_ANSWER_AFTER_S = env_float("TELEGRAM_CALLBACK_ANSWER_AFTER_S", 2.0)
# The whole call, from connecting to the answer's last byte (TELEGRAM_TIMEOUT_S
# is per read: a server dripping its answer would hold the thread for ever).
# Default: the connect timeout plus TELEGRAM_TIMEOUT_S. Keep it under DELIVERY_LEASE_S.
TELEGRAM_TOTAL_TIMEOUT_S = env_float("TELEGRAM_TOTAL_TIMEOUT_S", 0.0) or None

# Twilio SMS (notifications/channels/sms.py). The auth token is a secret: it
# never reaches a log, MessageLog or a task result.
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER", "")
TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "")
TWILIO_API_URL = os.environ.get("TWILIO_API_URL", "https://api.twilio.com").rstrip("/")
TWILIO_TIMEOUT_S = env_float("TWILIO_TIMEOUT_S", 10.0)

# A new preference for a channel listed here, created without an explicit
# minimum priority (admin, ORM, API, demo), gets this one: SMS costs money and
# wakes people up, so by default only critical messages go by SMS.
CHANNEL_DEFAULT_MIN_PRIORITY = {
    "SMS": os.environ.get("SMS_DEFAULT_MIN_PRIORITY", "critical"),
}

# --- Dashboard, metrics, retention ----------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "after-login"  # the dashboard or the inbox, by role (cmms.views.after_login)
DASHBOARD_REFRESH_S = env_int("DASHBOARD_REFRESH_S", 5)
# Beat or a worker not seen running the relay for this long shows as not alive.
DASHBOARD_ALIVE_WITHIN_S = env_int("DASHBOARD_ALIVE_WITHIN_S", 60)
# /metrics: with a token, only "Authorization: Bearer <token>"; without, loopback only.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# MessageLog rows older than this many days, in a final state, are purged by
# beat in batches (0 keeps everything).
MESSAGE_LOG_RETENTION_DAYS = env_int("MESSAGE_LOG_RETENTION_DAYS", 180)
MESSAGE_LOG_PURGE_BATCH = env_int("MESSAGE_LOG_PURGE_BATCH", 5000)
# WhatsApp Business Cloud API (Meta Graph API). The token and the app secret
# (webhook signatures) never reach logs or MessageLog; WHATSAPP_VERIFY_TOKEN is
# what Meta's webhook set-up echoes (hub.verify_token).
WHATSAPP_ACCESS_TOKEN = os.environ.get("WHATSAPP_ACCESS_TOKEN", "")
WHATSAPP_PHONE_NUMBER_ID = os.environ.get("WHATSAPP_PHONE_NUMBER_ID", "")
WHATSAPP_APP_SECRET = os.environ.get("WHATSAPP_APP_SECRET", "")
WHATSAPP_VERIFY_TOKEN = os.environ.get("WHATSAPP_VERIFY_TOKEN", "")
WHATSAPP_API_URL = os.environ.get("WHATSAPP_API_URL", "https://graph.facebook.com/v21.0").rstrip("/")
WHATSAPP_TIMEOUT_S = env_float("WHATSAPP_TIMEOUT_S", 10.0)
# The customer-service window a user's message opens (Meta: 24 h).
WHATSAPP_WINDOW_S = env_float("WHATSAPP_WINDOW_S", 24 * 3600.0)
# E-mail (notifications/channels/email.py). EMAIL_URL wins over the EMAIL_*
# variables; the default is the local capture server `make run` starts
# (python -m sandbox.smtp), so a laptop never mails the world by accident.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)
if os.environ.get("EMAIL_URL"):
    try:
        globals().update(_email_url.parse(os.environ["EMAIL_URL"]))
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
# Every SMTP wait (connect, each reply) is bounded: a server that accepts and
# never answers must not hold a worker thread forever.
if not 0 < EMAIL_TIMEOUT <= 300:
    raise ImproperlyConfigured(f"EMAIL_TIMEOUT={EMAIL_TIMEOUT!r}: use a number of seconds between 0 and 300.")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS (STARTTLS) and EMAIL_USE_SSL (implicit TLS) exclude each other.")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "CMMS <cmms@localhost>")

# Phone numbers typed without a country code (SMS, WhatsApp) are read in this
# region (ISO 3166 code) and stored in E.164.
PHONE_DEFAULT_REGION = os.environ.get("PHONE_DEFAULT_REGION", "CL").upper()

# Key for secrets stored in the database (tokens given on the command line).
FIELD_ENCRYPTION_KEY = os.environ.get("FIELD_ENCRYPTION_KEY", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "notifications.redaction.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # urllib3 logs full request URLs, and a Telegram URL carries the token.
        "urllib3": {"level": "WARNING"},
    },
}
