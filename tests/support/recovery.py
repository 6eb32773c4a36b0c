"""Recovery runs shared by the fault suite (which asserts) and bench/ (which
reports the times): a worker killed with kill -9, and a PostgreSQL outage.

Both measure from the outside: what the sandbox received and what the rows
say, with real worker processes and a relay ticking as beat does.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from .postgres import PrivatePostgres
from .processes import ROOT, Worker, wait_for


class RelayTicker:
    """Sends workers.relay_outbox every ``every_s`` through the broker, as
    beat does (production: every 5 s); a tick while the broker is down is lost."""

    def __init__(self, every_s=5.0):
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-ticker", daemon=True)

    def _run(self):
        from workers.tasks import relay_outbox

        while not self._stop.wait(self.every_s):
            try:
                relay_outbox.apply_async(queue="default", expires=self.every_s * 5)
            except Exception:  # noqa: BLE001 - the broker is down: beat would miss this tick too
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def received_chats(sandbox, base, n):
    return [m["chat_id"] for m in sandbox.messages() if base <= int(m["chat_id"]) < base + n]


# -- kill -9 ----------------------------------------------------------------------


def kill9_recovery(sandbox, start_worker, publish, n, base, timeout=150):
    """Two workers share a broadcast of ``n`` messages (chats base..base+n);
    one is killed with SIGKILL mid-way. Returns the seconds from the kill
    until every row it held (SENDING, claimed by it) is SENT, and more.

    ``start_worker()`` starts a worker and returns it; ``publish()`` creates
    the rows and publishes them, returning their ids."""
    from django.db import connection

    from notifications.models import MessageLog

    doomed, survivor = start_worker(), start_worker()
    ids = publish()
    wait_for(lambda: len(received_chats(sandbox, base, n)) >= n // 4, timeout=60, interval=0.05,
             message="the broadcast to be under way")

    def held_by(worker):
        return list(MessageLog.objects.filter(pk__in=ids, status="SENDING", claimed_by__endswith=f":{worker.pid}")
                    .values_list("pk", flat=True))

    wait_for(lambda: held_by(doomed), timeout=30, interval=0.02, message="rows held by the doomed worker")
    # Frozen (SIGSTOP) before its rows are listed, then killed: a row it
    # finished between a listing and the kill would count as held and not be
    # flagged (the test's own race: 69 of 70 flagged, once in a few runs).
    os.killpg(doomed.proc.pid, signal.SIGSTOP)
    held = sorted(held_by(doomed))
    doomed.kill(hard=True)
    killed_at = time.monotonic()

    def settled(pks):
        return not MessageLog.objects.filter(pk__in=pks).exclude(status__in=("SENT", "FAILED")).exists()

    wait_for(lambda: settled(held), timeout=timeout, interval=0.1, message=f"the {len(held)} rows of the killed worker")
    recovered_s = time.monotonic() - killed_at
    wait_for(lambda: settled(ids), timeout=timeout, interval=0.2, message="every row")
    all_s = time.monotonic() - killed_at
    rows = MessageLog.objects.filter(pk__in=ids)
    result = {
        "recovery_s": recovered_s,
        "all_settled_s": all_s,
        "held": len(held),
        "sent": rows.filter(status="SENT").count(),
        "flagged": rows.filter(pk__in=held, possible_duplicate=True).count(),
        "chats_received": len(set(received_chats(sandbox, base, n))),
        "survivor": survivor,
    }
    connection.close()
    return result


# -- PostgreSQL outage ------------------------------------------------------------

SEED = """
from django.contrib.auth import get_user_model
from django.db import transaction
from notifications.message_router import MessageRouter
from notifications.models import UserChannelPreference
User = get_user_model()
users = User.objects.bulk_create([User(username=f"outage{{i}}", role="OPERATOR") for i in range({n})])
UserChannelPreference.objects.bulk_create([
    UserChannelPreference(user=u, channel_type="TELEGRAM", channel_user_id=str({base} + i)) for i, u in enumerate(users)
])
with transaction.atomic():
    MessageRouter().broadcast_to_role("OPERATOR", "Corte de energía", "Corte programado en la faena Norte")
"""


def manage(env, *args, code=None):
    command = [sys.executable, "manage.py", *args] + (["-c", code] if code else [])
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def query(pg, sql, name="cmms"):
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=name, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def status_counts(pg):
    return dict(query(pg, "SELECT status, count(*) FROM notifications_messagelog GROUP BY status"))


def db_outage_recovery(sandbox, worker_env, n=600, base=7_000_000, outage_s=10.0, concurrency=16, log=print):
    """A worker on a private PostgreSQL cluster delivers a broadcast of
    ``n``; the cluster is stopped (immediate: connections cut) for
    ``outage_s`` a quarter of the way in, then started again. Returns the
    seconds from the database's return until the sandbox receives the next
    message (``resumed_s``) and until every message arrived (``all_sent_s``)."""
    pg = PrivatePostgres().init().start()
    worker = None
    try:
        url = pg.create_database()
        env = {**worker_env, "DATABASE_URL": url}
        import os

        subprocess_env = {**os.environ, **env}
        manage(subprocess_env, "migrate", "--noinput")
        worker = Worker(env, pool="threads", concurrency=concurrency).start(timeout=90)
        with RelayTicker(every_s=5.0):
            manage(subprocess_env, "shell", code=SEED.format(n=n, base=base))
            wait_for(lambda: len(received_chats(sandbox, base, n)) >= n // 4, timeout=120, interval=0.05,
                     message="the broadcast to be under way")
            pg.stop("immediate")
            down_at = time.monotonic()
            at_outage = len(received_chats(sandbox, base, n))
            time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            pg.start()
            up_at = time.monotonic()
            during = len(received_chats(sandbox, base, n)) - at_outage
            before = len(received_chats(sandbox, base, n))
            wait_for(lambda: len(received_chats(sandbox, base, n)) > before, timeout=180, interval=0.02,
                     message="delivery to resume")
            resumed_s = time.monotonic() - up_at
            wait_for(lambda: len(set(received_chats(sandbox, base, n))) >= n, timeout=300, interval=0.1,
                     message="every chat to receive the message")
            all_sent_s = time.monotonic() - up_at
            wait_for(lambda: status_counts(pg).get("SENT", 0) >= n, timeout=180, interval=0.2,
                     message="every row SENT")
        chats = received_chats(sandbox, base, n)
        result = {
            "resumed_s": resumed_s,
            "all_sent_s": all_sent_s,
            "received_during_outage": during,
            "statuses": status_counts(pg),
            "duplicates": len(chats) - len(set(chats)),
            "flagged_possible_duplicate": query(
                pg, "SELECT count(*) FROM notifications_messagelog WHERE possible_duplicate")[0][0],
            "attempts": dict(query(pg, "SELECT attempts, count(*) FROM notifications_messagelog GROUP BY attempts")),
            "worker_log": str(worker.log_path),
            "outage_s": up_at - down_at,
        }
        log(f"  db outage: {result}")
        return result
    finally:
        if worker:
            worker.kill(hard=True)
            worker.stop()
        pg.close()
