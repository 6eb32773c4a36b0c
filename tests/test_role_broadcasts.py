"""broadcast_to_role writes one RoleBroadcast and counts with SQL; the
expansion (notifications.role_broadcasts) writes the rows in batches with
the router's policy. Unit tests on the test database (SQLite or PostgreSQL);
the kill -9 of a real worker mid-expansion is in tests/fault/."""

from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import holds, role_broadcasts
from notifications.message_router import MessageRouter
from notifications.models import (
    ChannelConfig,
    InAppNotification,
    MessageLog,
    RoleBroadcast,
    UserChannelPreference,
)
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def expansions(monkeypatch):
    """The expansion tasks that would be published (broadcast ids)."""
    published = []

    def publish(pk):
        published.append(pk)
        RoleBroadcast.objects.filter(pk=pk).update(published_at=timezone.now())
        return True

    monkeypatch.setattr(role_broadcasts, "publish_expansion", publish)
    return published


def broadcast(**kw):
    args = {"role_name": "OPERATOR", "title": "Mantenimiento", "message": "Mañana de 8:00 a 12:00"}
    args.update(kw)
    return MessageRouter().broadcast_to_role(**args)


def pref(user, channel="TELEGRAM", address="1", **fields):
    return UserChannelPreference.objects.create(user=user, channel_type=channel, channel_user_id=address, **fields)


def tried_users():
    """Users with at least one row that will be tried (not SKIPPED)."""
    return set(MessageLog.objects.exclude(status="SKIPPED").values_list("user_id", flat=True))


def test_the_sql_count_agrees_with_the_expansion_for_every_routing_rule(expansions):
    ChannelConfig.objects.update_or_create(channel_type="SMS", defaults={"is_enabled": False})
    reachable = [make_user(telegram=1), make_user(in_app=True)]
    muted_but_critical_only = make_user()
    pref(muted_but_critical_only, muted_until=timezone.now() + timedelta(hours=1))
    reachable.append(make_user(telegram=2))  # one muted channel, one not
    pref(reachable[-1], "IN_APP", "", muted_until=timezone.now() + timedelta(hours=1))
    unreachable = [make_user()]  # no channel at all
    for fields in (
        {"is_reachable": False, "unreachable_reason": "bot blocked"},
        {"opted_out_at": timezone.now()},
        {"failover_only": True},
        {"min_priority": "high"},
        {"notify_alerts": False},  # announcements are alerts
        {"is_enabled": False},
    ):
        unreachable.append(make_user())
        pref(unreachable[-1], address="5", **fields)
    unreachable.append(make_user())
    pref(unreachable[-1], "SMS", "+56912345678", min_priority="low")  # channel switched off
    unreachable.append(muted_but_critical_only)
    make_user(telegram=9, is_active=False)  # not a recipient
    make_user(role="TECHNICIAN", telegram=10)  # not a recipient

    stats = broadcast(priority="normal")
    assert stats == {"total": 12, "success": 3, "failed": 9}
    assert MessageLog.objects.count() == 0  # the call writes no row
    role_broadcasts.expand(stats.broadcast_id)
    assert tried_users() == {u.pk for u in reachable}
    # A SKIPPED row says why (unreachable, opted out, channel off); opted-out categories write nothing.
    assert MessageLog.objects.filter(status="SKIPPED").count() == 3

    MessageLog.objects.all().delete()
    critical = broadcast(priority="critical")  # muted channels still get critical; min_priority high passes
    assert critical == {"total": 12, "success": 5, "failed": 7}
    role_broadcasts.expand(critical.broadcast_id)
    assert len(tried_users()) == 5


def test_an_invalid_address_counts_as_reachable_and_becomes_a_skipped_row(expansions):
    bad = make_user(telegram="no es un chat")
    stats = broadcast()
    assert stats == {"total": 1, "success": 1, "failed": 0}  # SQL cannot validate a chat id
    role_broadcasts.expand(stats.broadcast_id)
    row = MessageLog.objects.get(user=bad)
    assert row.status == "SKIPPED" and row.last_error


def test_the_call_writes_one_record_and_publishes_its_expansion_only_after_commit(
    expansions, django_capture_on_commit_callbacks
):
    for chat in range(5):
        make_user(telegram=chat)
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            stats = broadcast()
            assert expansions == []
        assert RoleBroadcast.objects.count() == 1
    record = RoleBroadcast.objects.get()
    assert expansions == [record.pk] and stats.broadcast_id == record.pk
    assert (record.total, record.success, record.failed, record.expanded_at) == (5, 5, 0, None)
    assert MessageLog.objects.count() == 0


def test_a_rolled_back_transaction_leaves_no_broadcast_and_publishes_nothing(
    expansions, no_broker, django_capture_on_commit_callbacks
):
    make_user(telegram=1)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        broadcast()
        raise RuntimeError("producer failed")
    assert callbacks == [] and expansions == [] and no_broker == []
    assert not RoleBroadcast.objects.exists() and not MessageLog.objects.exists()


def test_batches_move_the_cursor_with_their_rows_and_publish_each_batch(expansions, no_broker):
    users = [make_user(telegram=100 + i) for i in range(7)]
    pref(users[0], "IN_APP", "")
    stats = broadcast()
    pk = stats.broadcast_id

    finished, queued, n = role_broadcasts.expand_batch(pk, batch_users=3)
    record = RoleBroadcast.objects.get(pk=pk)
    assert (finished, n, record.users_expanded, record.last_user_id) == (False, 3, 3, users[2].pk)
    assert set(MessageLog.objects.values_list("user_id", flat=True)) == {u.pk for u in users[:3]}
    assert len(queued) == 4 and record.rows_queued == 4 and record.rows_written == 4
    assert InAppNotification.objects.filter(user=users[0]).count() == 1  # the channel's on_write, reused

    assert role_broadcasts.expand(pk, batch_users=3) == 4
    record.refresh_from_db()
    assert record.expanded_at is not None and record.users_expanded == 7
    per_pair = Counter(MessageLog.objects.values_list("user_id", "channel_type"))
    assert len(per_pair) == 8 and set(per_pair.values()) == {1}
    # expand() published the batches it wrote (the first was expand_batch's caller's to publish).
    later = MessageLog.objects.filter(user__in=users[3:])
    assert sorted(no_broker) == sorted(later.values_list("pk", "channel_type")) and len(no_broker) == 4
    # Rows point back at their broadcast; nothing more to do on a second run.
    assert set(MessageLog.objects.values_list("related_object_type", "related_object_id")) == {
        ("role_broadcast", str(pk))}
    assert role_broadcasts.expand(pk) == 0 and MessageLog.objects.count() == 8


def test_the_same_idempotency_key_makes_no_second_broadcast_and_sends_nothing_twice(
    expansions, no_broker, django_capture_on_commit_callbacks
):
    for chat in range(3):
        make_user(telegram=chat)
    with django_capture_on_commit_callbacks(execute=True):
        first = broadcast(idempotency_key="corte-agua-2026-12-01")
    role_broadcasts.expand(first.broadcast_id)
    make_user(telegram=99)  # a newcomer does not turn the repeat into a new broadcast
    with django_capture_on_commit_callbacks(execute=True):
        again = broadcast(idempotency_key="corte-agua-2026-12-01")
    assert again == first and again.broadcast_id == first.broadcast_id
    assert RoleBroadcast.objects.count() == 1 and expansions == [first.broadcast_id]
    role_broadcasts.expand(again.broadcast_id)
    assert MessageLog.objects.count() == 3 and len(no_broker) == 3
    assert set(MessageLog.objects.values_list("idempotency_key", flat=True)) == {"corte-agua-2026-12-01"}


def test_a_repeated_batch_with_a_key_keeps_the_rows_it_finds(expansions, no_broker):
    """The bulk insert of a batch with an idempotency key falls back to row by
    row when a row exists (the router's idempotency, reused)."""
    users = [make_user(telegram=i) for i in range(3)]
    stats = broadcast(idempotency_key="k1")
    role_broadcasts.expand(stats.broadcast_id)
    RoleBroadcast.objects.filter(pk=stats.broadcast_id).update(expanded_at=None, last_user_id=0)
    assert role_broadcasts.expand(stats.broadcast_id) == 3
    assert MessageLog.objects.count() == 3 and len(no_broker) == 3
    assert RoleBroadcast.objects.get().rows_written == 3  # only the first run wrote
    assert {u.pk for u in users} == set(MessageLog.objects.values_list("user_id", flat=True))


def test_an_off_shift_recipient_gets_a_held_row(expansions):
    on, off = make_user(telegram=1), make_user(telegram=2)
    until = timezone.now() + timedelta(hours=3)

    def decider(user_ids, priority, now):
        return {off.pk: until} if off.pk in user_ids else {}

    holds.register(decider)
    try:
        stats = broadcast()
        role_broadcasts.expand(stats.broadcast_id)
    finally:
        holds.unregister(decider)
    assert stats["success"] == 2
    assert dict(MessageLog.objects.values_list("user_id", "status")) == {on.pk: "QUEUED", off.pk: "HELD"}


def test_nobody_to_reach_is_done_at_once_without_a_task(expansions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        stats = broadcast(role_name="SUPERVISOR")
    assert stats == {"total": 0, "success": 0, "failed": 0}
    assert expansions == [] and RoleBroadcast.objects.get().expanded_at is not None


def test_the_relay_publishes_unpublished_and_stalled_broadcasts_only(expansions, settings):
    make_user(telegram=1)
    now = timezone.now()
    old = now - timedelta(seconds=settings.ROLE_BROADCASTS["STALLED_AFTER_S"] + 1)
    never_published = RoleBroadcast.objects.get(pk=broadcast().broadcast_id)
    stalled = RoleBroadcast.objects.get(pk=broadcast().broadcast_id)
    fresh = RoleBroadcast.objects.get(pk=broadcast().broadcast_id)
    done = RoleBroadcast.objects.get(pk=broadcast().broadcast_id)
    RoleBroadcast.objects.filter(pk=never_published.pk).update(created_at=now - timedelta(seconds=10), touched_at=now)
    RoleBroadcast.objects.filter(pk=stalled.pk).update(published_at=old, touched_at=old)
    RoleBroadcast.objects.filter(pk=fresh.pk).update(published_at=now, touched_at=now)
    RoleBroadcast.objects.filter(pk=done.pk).update(published_at=old, touched_at=old, expanded_at=old)

    assert role_broadcasts.relay(now) == {"due": 2, "published": 2}
    assert sorted(expansions) == sorted([never_published.pk, stalled.pk])
    # Touched: the next run leaves them to the task it just published.
    assert role_broadcasts.relay(now + timedelta(seconds=1)) == {"due": 0, "published": 0}


def test_the_admin_shows_a_broadcasts_progress_in_spanish_and_english(admin_client, expansions):
    from django.utils import translation

    users = [make_user(role="TECHNICIAN", telegram=i) for i in range(5)]
    stats = broadcast(role_name="TECHNICIAN", title="Corte de agua")
    role_broadcasts.expand_batch(stats.broadcast_id, batch_users=3)
    MessageLog.objects.filter(user=users[0]).update(status="SENT")
    MessageLog.objects.filter(user=users[1]).update(status="FAILED")
    listing = admin_client.get("/admin/notifications/rolebroadcast/").content.decode()
    assert "Difusiones a un rol" in listing and "Corte de agua" in listing
    assert "3 de 5" in listing and "Expandiéndose" in listing and "Técnico" in listing
    detail = admin_client.get(f"/admin/notifications/rolebroadcast/{stats.broadcast_id}/change/").content.decode()
    assert "Avance" in detail and "Ver los mensajes de esta difusión" in detail
    import re

    def field(name):
        return re.search(rf'field-{name}">.*?<div class="readonly">(.*?)</div>', detail, re.S).group(1).strip()

    assert (field("sent"), field("failed_messages"), field("waiting"), field("rows_queued")) == ("1", "1", "1", "3")
    assert admin_client.get("/admin/notifications/rolebroadcast/add/").status_code == 403
    with translation.override("en"):
        english = admin_client.get("/admin/notifications/rolebroadcast/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Role broadcasts" in english or "role broadcasts" in english.lower()


def test_the_first_batch_is_small_so_the_first_messages_go_out_while_the_rest_is_written(
        expansions, no_broker, settings, monkeypatch):
    settings.ROLE_BROADCASTS = {**settings.ROLE_BROADCASTS, "BATCH_USERS": 4, "FIRST_BATCH_USERS": 2}
    users = [make_user(telegram=200 + i) for i in range(7)]
    published = []
    real = role_broadcasts._publish
    monkeypatch.setattr(role_broadcasts, "_publish", lambda queued: published.append(len(queued)) or real(queued))
    stats = broadcast()
    assert role_broadcasts.expand(stats.broadcast_id) == 7
    assert published == [2, 4, 1]  # 2 first, then full batches of 4
    assert sorted(no_broker) == sorted(MessageLog.objects.values_list("pk", "channel_type"))
    assert {u.pk for u in users} == set(MessageLog.objects.values_list("user_id", flat=True))


def test_a_batch_planned_before_another_worker_moved_the_cursor_writes_nothing(expansions, no_broker, monkeypatch):
    """The batch is read and planned without a lock, then written only if the
    cursor has not moved: a worker that lost the race writes nothing and
    reads again, so no recipient gets a row twice."""
    users = [make_user(telegram=300 + i) for i in range(5)]
    stats = broadcast()
    real = holds.held_until
    raced = []

    def another_worker_expands_first(*args):
        if not raced:  # between this worker's read and its write
            raced.append(None)
            raced[0] = role_broadcasts.expand_batch(stats.broadcast_id, 2)
        return real(*args)

    monkeypatch.setattr(holds, "held_until", another_worker_expands_first)
    assert role_broadcasts.expand_batch(stats.broadcast_id, 2) == (False, [], 0)
    assert [users for _finished, _queued, users in raced] == [2]
    assert MessageLog.objects.count() == 2
    monkeypatch.setattr(holds, "held_until", real)
    assert role_broadcasts.expand(stats.broadcast_id, 2) == 3
    assert Counter(MessageLog.objects.values_list("user_id", flat=True)) == {u.pk: 1 for u in users}
    record = RoleBroadcast.objects.get(pk=stats.broadcast_id)
    assert record.expanded_at is not None and record.users_expanded == 5 and record.rows_written == 5


def test_a_batch_reads_plans_and_compiles_its_insert_before_it_takes_the_lock(expansions, no_broker):
    """Inside the batch's transaction only its writes run: the cursor's
    compare-and-set (which takes the lock), the record, the rows' INSERT
    (compiled before) and the record's update; the users, preferences and
    holds are read before it."""
    users = [make_user(telegram=400 + i) for i in range(30)]
    stats = broadcast()
    with CaptureQueriesContext(connection) as queries:
        finished, queued, expanded = role_broadcasts.expand_batch(stats.broadcast_id, 100)
    assert finished and expanded == 30 and len(queued) == 30
    sql = [q["sql"] for q in queries]
    lock = next(i for i, s in enumerate(sql) if s.startswith("UPDATE") and "rolebroadcast" in s)
    inside = [s.split()[0] for s in sql[lock:] if not s.startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    assert inside[0] == "UPDATE" and inside[-1] == "UPDATE" and "INSERT" in inside
    reads = (get_user_model()._meta.db_table, UserChannelPreference._meta.db_table)
    assert all(any(table in s for s in sql[:lock]) for table in reads)
    assert not any(table in s for s in sql[lock:] for table in reads)
    assert sorted(MessageLog.objects.values_list("user_id", flat=True)) == sorted(u.pk for u in users)
    assert all(isinstance(pk, int) for pk, _channel in queued)
