"""Delivery policy: claim a MessageLog row, send it through its channel,
record the outcome. The channel knows the provider; this module knows what
an outcome means for the row (retry, give up, mark the address)."""

import logging
import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications import message_types
from notifications.channels import ChannelError, ChatMigrated, ConfigurationError, OutgoingMessage, SkipDelivery
from notifications.models import MessageLog, MessageStatus, UserChannelPreference
from notifications.redaction import redact

from . import broker, channels, liveness, metrics, ratelimit

logger = logging.getLogger(__name__)
CLAIMABLE = (MessageStatus.QUEUED, MessageStatus.RETRYING)
MAX_MIGRATIONS = 2
# The database unreachable (restarting, failing over, refusing connections).
DATABASE_DOWN = (OperationalError, InterfaceError)
# Waits between tries to record an outcome while the database is down (s).
RECORD_RETRY_DELAYS = (0.25, 0.5, 1, 2, 4, 8)


def policy(name):
    return settings.DELIVERY[name]


# Rows this process is delivering right now (any thread).
_in_flight = set()
_in_flight_lock = threading.Lock()


def deliver(message_id):
    """Deliver one row; its outcome ("sent", "retrying", "not-claimed"...)."""
    return deliver_batch([message_id])[message_id]


def deliver_batch(message_ids):
    """Deliver a batch of rows of one channel: claimed and loaded together
    in one conditional UPDATE ... RETURNING, each then rate-limited, sent,
    retried, dead-lettered and recorded on its own exactly as one row alone
    would be; the successes are written in bulk, a few at a time (at most
    ``SuccessRecorder.FLUSH_EVERY`` rows or ``FLUSH_AFTER_S`` old), so a worker
    killed mid-batch re-sends at most the sends it had not recorded yet.
    Returns {id: outcome}."""
    liveness.ensure_heartbeat()  # before the claim names this process
    outcomes, mine = {}, []
    with _in_flight_lock:
        for pk in message_ids:
            if pk in outcomes:
                continue
            outcomes[pk] = "not-claimed"
            if pk not in _in_flight:  # else a duplicate task while this process sends it
                _in_flight.add(pk)
                mine.append(pk)
    if not mine:
        return outcomes
    owned = set(mine)  # released one by one as their outcomes are written

    def release(ids):
        with _in_flight_lock:
            ids = owned.intersection(ids)
            owned.difference_update(ids)
            _in_flight.difference_update(ids)

    recorder = SuccessRecorder(on_written=release)
    try:
        claimed = claim_batch(mine)
        ahead = _ahead(claimed)
        for log in claimed:
            started = time.monotonic()
            outcomes[log.pk] = _deliver_claimed(log, recorder, ahead)
            if not recorder.holds(log.pk):
                # Its outcome is in the database (a deferral's countdown task
                # may come back while this batch still runs): no longer ours.
                release([log.pk])
            recorder.flush_if_due(last_send_s=time.monotonic() - started)
    finally:
        try:
            recorder.flush()
        finally:
            release(list(owned))
    return outcomes


def claim_batch(message_ids):
    """Claim every row of ``message_ids`` that is due (QUEUED/RETRYING ->
    SENDING, one attempt counted) and load the rows claimed, in ONE
    conditional ``UPDATE ... RETURNING`` (PostgreSQL; SQLite >= 3.35): another
    process that got the row first, a row done or not due yet is left out.
    Returns the rows this process holds, in the order asked.

    A row SENDING under this process' name is taken back too: a claim whose
    UPDATE committed while the database went away before its answer came
    back, so the task raised and was retried. No other process may take it
    (this one is alive), so without this it would wait for the whole lease.
    Only called for ids not in flight here, so a send in progress is never
    taken twice."""
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return []
    now = timezone.now()
    me = liveness.worker_id()
    claim = _claim_statement(len(ids))
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        MessageStatus.SENDING,
        # SET sees the row as it was: an own claim taken back is no new attempt.
        MessageStatus.SENDING,
        adapt(now + timedelta(seconds=policy("LEASE_S"))), me, adapt(now),
        *ids,
        *CLAIMABLE, adapt(now),
        MessageStatus.SENDING, me,
    ]
    with connection.cursor() as cursor:
        cursor.execute(claim.sql, params)
        rows = cursor.fetchall()
    held = {}
    for row in rows:
        log = claim.load(row)
        held[log.pk] = log
    return [held[pk] for pk in ids if pk in held]


class _ClaimStatement:
    """The claim's SQL for a number of ids, and how a returned row becomes a
    MessageLog: every concrete column, each through its field's and the
    backend's converters (what a QuerySet applies), then ``Model.from_db``."""

    def __init__(self, count):
        ops = connection.ops
        meta = MessageLog._meta
        table = ops.quote_name(meta.db_table)
        column = {f.name: ops.quote_name(f.column) for f in meta.concrete_fields}
        self.fields = list(meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.converters = []
        for index, field in enumerate(self.fields):
            col = field.get_col(meta.db_table)
            found = ops.get_db_converters(col) + field.get_db_converters(connection)
            if found:
                self.converters.append((index, col, found))
        self.db = connection.alias
        ids = ", ".join(["%s"] * count)
        status, attempts, claimed_by = column["status"], column["attempts"], column["claimed_by"]
        due = column["next_attempt_at"]
        self.sql = (
            f"UPDATE {table} SET {status} = %s, "
            f"{attempts} = CASE WHEN {status} = %s THEN {attempts} ELSE {attempts} + 1 END, "
            f"{column['lease_expires_at']} = %s, {claimed_by} = %s, {column['updated_at']} = %s "
            f"WHERE {column['id']} IN ({ids}) AND (({status} IN (%s, %s) AND ({due} IS NULL OR {due} <= %s)) "
            f"OR ({status} = %s AND {claimed_by} = %s)) "
            f"RETURNING {', '.join(column[f.name] for f in self.fields)}"
        )

    def load(self, row):
        values = list(row)
        for index, col, converters in self.converters:
            value = values[index]
            for converter in converters:
                value = converter(value, col, connection)
            values[index] = value
        return MessageLog.from_db(self.db, self.names, values)


_claim_statements = {}


def _claim_statement(count):
    key = (connection.vendor, connection.alias, count)
    statement = _claim_statements.get(key)
    if statement is None:
        statement = _claim_statements[key] = _ClaimStatement(count)
    return statement


def _ahead(logs):
    """The batch's order for places taken ahead in the rate limiter
    (ratelimit.Ahead), or None for a batch of one."""
    if len(logs) < 2:
        return None
    return ratelimit.Ahead([(log.channel_type, log.recipient, channels.account_id(log.channel_type))
                            for log in logs])


def _deliver_claimed(log, recorder=None, ahead=None):
    try:
        outgoing = channels.prepare(log, outgoing_message(log))
    except SkipDelivery as exc:
        return record_skipped(log, str(exc))
    except Exception as exc:  # e.g. a PDF that cannot be built: retried, the reason on the row
        logger.exception("Could not prepare message %s", log.pk)
        return record_failure(log, ChannelError(f"{type(exc).__name__}: {redact(exc)}"))
    address = log.recipient
    for _migration in range(MAX_MIGRATIONS + 1):
        try:
            provider_id = send(log, address, outgoing, ahead)
        except ratelimit.RateLimited as exc:
            metrics.incr("ratelimit_waits", log.channel_type)
            return defer(log, exc.wait_s, waiting_reason(exc))
        except ratelimit.LimiterUnavailable as exc:
            # Fail closed: without the shared limiter, sending could flood the
            # provider. The row waits; Redis is the broker too, so little runs anyway.
            logger.warning("Rate limiter unavailable (%s); message %s waits.", exc, log.pk)
            return defer(log, policy_rate("UNAVAILABLE_RETRY_S"), _("Rate limiter (Redis) unavailable; waiting."))
        except ChatMigrated as exc:
            address = exc.new_chat_id
            persist(follow_migration, log, address)
            continue
        except ChannelError as exc:
            if exc.code == 429 or (exc.retry_after and not exc.permanent):
                metrics.incr("provider_429", log.channel_type)
                if ahead is not None:
                    ahead.clear()
                return persist(throttled, log, address, exc)
            return persist(record_failure, log, exc)
        except DATABASE_DOWN:
            raise  # before anything was sent: the task retries itself (workers.tasks)
        except Exception as exc:  # a bug or an unexpected library error: retry, keep the reason
            logger.exception("Unexpected error delivering message %s", log.pk)
            return persist(record_failure, log, ChannelError(f"{type(exc).__name__}: {redact(exc)}"))
        if recorder is None or getattr(provider_id, "details", None):
            return persist(record_success, log, provider_id)
        return recorder.add(log, provider_id)
    return record_failure(log, ChannelError(_("Chat migrated too many times."), permanent=True))


class SuccessRecorder:
    """Successes of one batch, written to the database in bulk: one UPDATE
    for up to FLUSH_EVERY rows, each with its own provider id and time.
    Written at once when the send took SLOW_SEND_S or more (at provider
    latency the next send would keep it unwritten as long: a worker killed
    then would send it twice), else once the oldest has waited FLUSH_AFTER_S, so
    the database sees SENT promptly and rows are written in bulk only when
    sends are fast."""

    FLUSH_EVERY = 25
    FLUSH_AFTER_S = 0.2
    SLOW_SEND_S = 0.05

    def __init__(self, on_written=None):
        self.rows = []
        self.first_at = 0.0
        self.on_written = on_written

    def holds(self, message_id):
        """A success not written yet: the row is still SENDING and in flight."""
        return any(row[0] == message_id for row in self.rows)

    def add(self, log, provider_id):
        if not self.rows:
            self.first_at = time.monotonic()
        self.rows.append((log.pk, str(provider_id)[:128], timezone.now(), log.chunks_sent))
        return "sent"

    def flush_if_due(self, last_send_s=0.0):
        if self.rows and (len(self.rows) >= self.FLUSH_EVERY or last_send_s >= self.SLOW_SEND_S
                          or time.monotonic() - self.first_at >= self.FLUSH_AFTER_S):
            self.flush()

    def flush(self):
        if self.rows:
            rows, self.rows = self.rows, []
            persist(record_successes, rows)
            if self.on_written:
                self.on_written([row[0] for row in rows])


def record_successes(rows):
    """[(id, provider_id, sent_at, chunks_sent)] -> SENT, in one UPDATE
    joined to a VALUES list (the ORM's CASE WHEN per row costs more CPU than
    the sends it records); one row alone in a plain UPDATE by id. Only rows
    still SENDING change, as in record_success."""
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    if len(rows) == 1:
        pk, provider_id, sent_at, chunks = rows[0]
        params = [MessageStatus.SENT, provider_id, adapt(sent_at), chunks, now, pk, MessageStatus.SENDING]
    else:
        params = [MessageStatus.SENT, now]
        for pk, provider_id, sent_at, chunks in rows:
            params += [pk, provider_id, adapt(sent_at), chunks]
        params.append(MessageStatus.SENDING)
    with connection.cursor() as cursor:
        cursor.execute(_success_statement(len(rows)), params)


_success_statements = {}


def _success_statement(count):
    """The SQL of record_successes for ``count`` rows (built once per backend and count)."""
    key = (connection.vendor, count)
    sql = _success_statements.get(key)
    if sql is not None:
        return sql
    ops = connection.ops
    column = {f.name: ops.quote_name(f.column) for f in MessageLog._meta.concrete_fields}
    table = ops.quote_name(MessageLog._meta.db_table)
    reset = (f"{column['last_error']} = '', {column['lease_expires_at']} = NULL, {column['claimed_by']} = '', "
             f"{column['next_attempt_at']} = NULL, {column['updated_at']} = %s")
    if count == 1:
        sql = (
            f"UPDATE {table} SET {column['status']} = %s, {column['provider_message_id']} = %s, "
            f"{column['sent_at']} = %s, {column['chunks_sent']} = %s, {reset} "
            f"WHERE {column['id']} = %s AND {column['status']} = %s"
        )
    else:
        values = ", ".join(["(CAST(%s AS BIGINT), %s, %s, CAST(%s AS INTEGER))"] * count)
        if connection.vendor == "postgresql":
            values = values.replace("%s, %s, CAST", "%s, CAST(%s AS TIMESTAMPTZ), CAST")
        sql = (
            f"UPDATE {table} SET {column['status']} = %s, {column['provider_message_id']} = v.column2, "
            f"{column['sent_at']} = v.column3, {column['chunks_sent']} = v.column4, {reset} "
            f"FROM (VALUES {values}) AS v "
            f"WHERE {table}.{column['id']} = v.column1 AND {table}.{column['status']} = %s"
        )
    _success_statements[key] = sql
    return sql


def persist(write, *args):
    """Record an outcome that has happened (the provider has, or refused, the
    message) even if the database is down for a few seconds: otherwise the
    row would stay SENDING until its lease and the message go out again."""
    for delay in RECORD_RETRY_DELAYS:
        try:
            return write(*args)
        except DATABASE_DOWN as exc:
            logger.warning("Database unavailable recording %s (%s); retrying in %g s",
                           _what(args[0]), type(exc).__name__, delay)
            try:
                connection.close()
            except DATABASE_DOWN:
                pass
            time.sleep(delay)
    return write(*args)


def _what(subject):
    if isinstance(subject, list):
        return f"{len(subject)} message(s)"
    return f"message {subject.pk}"


def send(log, address, outgoing, ahead=None):
    """Take the rate-limit tokens and call the channel. A channel that splits
    a message (``sends_in_chunks``) is paced one chunk at a time, each chunk
    within the recipient's limit, and resumes after the chunks an earlier
    attempt delivered (``MessageLog.chunks_sent``). ``ahead``: the batch's
    places taken ahead (ratelimit.Ahead)."""
    channel = channels.get(log.channel_type)
    account = channels.account_id(log.channel_type)
    if not getattr(channel, "sends_in_chunks", False):
        cost = channels.requests_needed(log.channel_type, outgoing)
        ratelimit.acquire(log.channel_type, address, account, cost=cost, ahead=ahead)
        return channel.send(address, outgoing)
    # The row was loaded by this claim: its progress is the database's.
    start = log.chunks_sent or 0
    ids = [i for i in (log.provider_message_id or "").split(",") if i][:start] if start else []
    unrecorded = []

    def before_chunk(_index):
        # The chunks before this one are recorded before it goes (the last
        # one is recorded with the success): a retry resumes after them.
        if unrecorded:
            persist(record_progress, log, log.chunks_sent, ids)
            unrecorded.clear()
        ratelimit.acquire(log.channel_type, address, account, cost=1, ahead=ahead)

    def after_chunk(index, message_id):
        ids.append(message_id)
        log.chunks_sent = index + 1
        log.provider_message_id = ",".join(ids)[:128]
        unrecorded.append(index)

    try:
        channel.send(address, outgoing, start=start, before_chunk=before_chunk, after_chunk=after_chunk)
    except BaseException:
        if unrecorded:  # chunks delivered before the failure: a retry must not send them again
            persist(record_progress, log, log.chunks_sent, ids)
        raise
    return ",".join(ids)


def record_progress(log, chunks_sent, ids):
    MessageLog.objects.filter(pk=log.pk, status=MessageStatus.SENDING).update(
        chunks_sent=chunks_sent, provider_message_id=",".join(ids)[:128], updated_at=timezone.now()
    )


def retry_after_cap():
    return policy("RETRY_AFTER_MAX_S")


def throttled(log, address, exc):
    """The provider answered 429. Throttling is not the message's fault: no
    attempt is counted. An absurd retry_after (years) is capped, and the row
    and the log say so: the operator sees it instead of a silent freeze."""
    asked = exc.retry_after or policy("BACKOFF_BASE_S")
    seconds = min(asked, retry_after_cap())
    reason = redact(str(exc))[:1500]
    if asked > seconds:
        logger.error(
            "Message %s: the provider asked to wait %.0f s; waiting %.0f s (DELIVERY_RETRY_AFTER_MAX_S) instead.",
            log.pk, asked, seconds,
        )
        reason = _(
            "The provider asked to wait %(asked).0f s, which is absurd; waiting %(cap)g s "
            "(DELIVERY_RETRY_AFTER_MAX_S) instead. Provider answer: %(error)s"
        ) % {"asked": asked, "cap": seconds, "error": reason}
    else:
        reason = _("The provider asked to wait %(seconds)g s (rate limit). Provider answer: %(error)s") % {
            "seconds": seconds, "error": reason}
    ratelimit.note_retry_after(log.channel_type, address, seconds, channels.account_id(log.channel_type),
                               scope=getattr(exc, "scope", None))
    return defer(log, seconds, reason)


def waiting_reason(exc):
    return _("Waiting %(seconds).1f s for the rate limit of scope %(scope)s.") % {
        "seconds": exc.wait_s, "scope": exc.scope}


def policy_rate(name):
    return settings.RATE_LIMIT[name]


def countdown_max():
    """Retries at most this far away go to the broker as a countdown. Kept
    under half of what the broker lets a worker hold an unacknowledged task
    (an ETA task waits unacknowledged): Redis' visibility timeout, RabbitMQ's
    consumer_timeout (workers.broker)."""
    return min(policy("COUNTDOWN_MAX_S"), broker.unacked_hold_limit_s() / 2)


def defer(log, delay, reason=None):
    """Give the claim back without counting an attempt: the message waits
    ``delay`` (a rate limit or the provider's retry_after), in a countdown when
    short, else in the database for the relay."""
    now = timezone.now()
    delay = min(float(delay), retry_after_cap()) + random.uniform(0.0, 0.25)
    short = delay <= countdown_max()
    fields = {
        "status": Case(When(attempts__lte=1, then=Value(MessageStatus.QUEUED)), default=Value(MessageStatus.RETRYING)),
        "attempts": F("attempts") - 1,
        "next_attempt_at": now + timedelta(seconds=delay),
        "lease_expires_at": None,
        "claimed_by": "",
        "published_at": now if short else None,
        "updated_at": now,
    }
    if reason:
        fields["last_error"] = reason
    if MessageLog.objects.filter(pk=log.pk, status=MessageStatus.SENDING).update(**fields) and short:
        schedule_retry(log, delay)
    return "deferred"


def outgoing_message(log):
    try:
        emoji = message_types.get(log.message_type).emoji
    except message_types.UnknownMessageType:
        emoji = ""
    payload = log.payload or {}
    return OutgoingMessage(
        title=log.title,
        body=log.body,
        emoji=emoji,
        priority=log.priority,
        actions=payload.get("actions") or [],
        link=payload.get("link", ""),
        link_label=_("Open in the CMMS"),
        message_type=log.message_type,
        user_id=log.user_id,
        message_id=log.pk,
    )


def record_success(log, provider_id):
    now = timezone.now()
    fields = {}
    details = getattr(provider_id, "details", None)
    if details:
        # What the send cost (SMS segments and encoding, a price when the
        # provider gives one): kept with the row, under one key for every channel.
        fields["payload"] = {**(log.payload or {}), "delivery": dict(details)}
    MessageLog.objects.filter(pk=log.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.SENT,
        provider_message_id=str(provider_id)[:128],
        chunks_sent=log.chunks_sent,
        last_error="",
        sent_at=now,
        lease_expires_at=None,
        claimed_by="",
        next_attempt_at=None,
        updated_at=now,
        **fields,
    )
    return "sent"


def record_skipped(log, reason):
    now = timezone.now()
    MessageLog.objects.filter(pk=log.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.SKIPPED, last_error=redact(reason)[:2000], lease_expires_at=None, next_attempt_at=None,
        updated_at=now)
    return "skipped"


def record_failure(log, exc):
    now = timezone.now()
    attempts = MessageLog.objects.filter(pk=log.pk).values_list("attempts", flat=True).first() or log.attempts + 1
    error = redact(str(exc))[:2000]
    fields = {"last_error": error, "lease_expires_at": None, "claimed_by": "", "updated_at": now}
    if exc.maybe_delivered:
        fields["possible_duplicate"] = True
    if exc.opted_out:
        UserChannelPreference.objects.filter(
            user_id=log.user_id, channel_type=log.channel_type, channel_user_id=log.recipient, opted_out_at__isnull=True
        ).update(opted_out_at=now)
    if exc.unreachable:
        UserChannelPreference.objects.filter(
            user_id=log.user_id, channel_type=log.channel_type, channel_user_id=log.recipient
        ).update(is_reachable=False, unreachable_reason=error[:255], unreachable_since=now)
    if exc.permanent or attempts >= policy("MAX_ATTEMPTS"):
        if not exc.permanent:
            fields["last_error"] = _("Gave up after %(n)d attempts. Last error: %(error)s") % {
                "n": attempts, "error": error}
        MessageLog.objects.filter(pk=log.pk, status=MessageStatus.SENDING).update(
            status=MessageStatus.FAILED, failed_at=now, next_attempt_at=None, **fields
        )
        logger.warning("Message %s FAILED after %d attempt(s): %s", log.pk, attempts, error)
        return "failed"
    delay = retry_delay(attempts, exc.retry_after, long_wait=isinstance(exc, ConfigurationError))
    next_attempt = now + timedelta(seconds=delay)
    short = delay <= countdown_max()
    MessageLog.objects.filter(pk=log.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.RETRYING, next_attempt_at=next_attempt, published_at=now if short else None, **fields
    )
    if short:
        schedule_retry(log, delay)
    logger.info("Message %s will retry in %.1f s (attempt %d): %s", log.pk, delay, attempts, error)
    return "retrying"


def retry_delay(attempts, retry_after=None, long_wait=False):
    """The provider's retry_after when given (plus a little jitter so waiting
    tasks do not return in one burst); else exponential backoff with jitter."""
    if retry_after:
        return min(float(retry_after), retry_after_cap()) + random.uniform(0.05, 0.5)
    base = policy("BACKOFF_BASE_S") * (8 if long_wait else 1)
    cap = min(policy("BACKOFF_MAX_S"), base * 2 ** max(attempts - 1, 0))
    return cap / 2 + random.uniform(0, cap / 2)


def schedule_retry(log, delay):
    from notifications.dispatch import queue_for

    from .tasks import deliver_message

    try:
        deliver_message.apply_async(args=[log.pk], countdown=delay, queue=queue_for(log.channel_type))
    except Exception as exc:  # noqa: BLE001 - any broker error: the relay publishes it once it is due
        logger.warning("Could not schedule retry of message %s (%s); the relay will.", log.pk, type(exc).__name__)
        MessageLog.objects.filter(pk=log.pk).update(published_at=None)


def follow_migration(log, new_chat_id):
    """Telegram upgraded the group: store the new id everywhere it is used."""
    UserChannelPreference.objects.filter(
        user_id=log.user_id, channel_type=log.channel_type, channel_user_id=log.recipient
    ).update(channel_user_id=new_chat_id)
    MessageLog.objects.filter(pk=log.pk).update(recipient=new_chat_id)
    logger.info("Message %s: chat %s migrated to %s", log.pk, log.recipient, new_chat_id)
