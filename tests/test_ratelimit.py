"""The shared rate limiter against a real (private) Redis.

Waits are read from the reservations Redis computes (its own clock), not
measured, so these tests do not depend on how fast this machine is.
"""

import itertools
import os
import signal
import threading
import time

import pytest

from cmms.settings import env_rate
from tests.support.processes import RedisServer, free_port

BOT = "123456"


def limits(**scopes):
    """RATE_LIMITS for TELEGRAM from {scope: (limit, period_s, burst, max_sleep_s)}."""
    return {
        "TELEGRAM": {
            name: {"limit": v[0], "period_s": v[1], "burst": v[2], "max_sleep_s": v[3]} if v else None
            for name, v in scopes.items()
        }
    }


@pytest.fixture
def telegram_limits(settings, limiter):
    def configure(**scopes):
        settings.RATE_LIMITS = limits(**scopes)

    configure(account=(30, 1, 1, 5), recipient=(1, 1, 1, 2), group=(20, 60, 1, 3))
    return configure


def test_reservations_from_many_threads_are_one_interval_apart(limiter, telegram_limits):
    telegram_limits(account=(30, 1, 1, 10), recipient=None, group=None)
    slots = []

    def producer(n):
        for i in range(15):
            slot = limiter.reserve(limiter.scopes_for("TELEGRAM", f"{n}{i}", BOT))
            assert slot.reserved
            slots.append(slot.at)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert len(slots) == 120
    assert min(gaps) >= 1 / 30 - 1e-5
    # never more than 30 in any one-second window
    assert max(sum(1 for s in slots if start <= s < start + 1) for start in slots) <= 30


def test_a_burst_goes_at_once_then_the_pace_applies(limiter, telegram_limits):
    telegram_limits(account=None, recipient=(1, 1, 3, 10), group=None)
    scopes = limiter.scopes_for("TELEGRAM", "42", BOT)
    waits = [limiter.reserve(scopes).wait_s for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert 0.9 < waits[3] <= 1.0
    assert waits[4] > 1.9 and waits[4] <= 2.0


def test_a_wait_longer_than_max_sleep_reserves_nothing(limiter, telegram_limits):
    telegram_limits(account=None, recipient=None, group=(20, 60, 1, 3))
    scopes = limiter.scopes_for("TELEGRAM", "-1001", BOT)  # a group: 20/min
    assert limiter.reserve(scopes).wait_s == 0
    assert limiter.reserve(scopes).reserved  # 3 s: still sleepable
    third, fourth = limiter.reserve(scopes), limiter.reserve(scopes)
    assert not third.reserved and third.scope == "group" and 5.9 < third.wait_s <= 6.0
    assert not fourth.reserved and 5.9 < fourth.wait_s <= 6.0  # the third took nothing


def test_a_chat_waiting_for_its_own_pace_does_not_hold_up_the_bot(limiter, telegram_limits):
    assert limiter.reserve(limiter.scopes_for("TELEGRAM", "42", BOT)).wait_s == 0
    busy = limiter.reserve(limiter.scopes_for("TELEGRAM", "42", BOT))
    assert not busy.reserved and busy.scope == "recipient" and 0.9 < busy.wait_s <= 1.0
    other = limiter.reserve(limiter.scopes_for("TELEGRAM", "43", BOT))
    assert other.reserved and other.wait_s < 0.1  # the next account slot, not the chat's


def test_scopes_follow_the_address_and_keys_carry_no_secret(limiter, telegram_limits):
    assert [s.name for s in limiter.scopes_for("TELEGRAM", "42", BOT)] == ["account", "recipient"]
    assert [s.name for s in limiter.scopes_for("TELEGRAM", "-100123", BOT)] == ["account", "recipient", "group"]
    assert limiter.account_tag("987:AAsecret-token") == "987"
    assert "secret" not in limiter.account_tag("not-a-telegram-secret")
    assert limiter.scopes_for("EMAIL", "a@example.com", "x") == []


def test_a_thread_sleeps_at_most_max_sleep_on_a_busy_chat_then_gives_the_row_back(limiter, telegram_limits):
    assert limiter.acquire("TELEGRAM", "42", BOT) == 0
    naps = []
    with pytest.raises(limiter.RateLimited) as busy:
        limiter.acquire("TELEGRAM", "42", BOT, sleep=naps.append)  # time stands still
    assert busy.value.scope == "recipient" and 0.9 < busy.value.wait_s <= 1.0
    assert sum(naps) > 1.8 and sum(naps) <= 2.0  # the recipient's max_sleep_s
    assert limiter.acquire("TELEGRAM", "43", BOT) < 0.1


def test_messages_for_a_busy_chat_are_given_successive_slots_to_come_back_at(limiter, telegram_limits):
    telegram_limits(account=None, recipient=(1, 1, 2, 0.5), group=None)
    assert limiter.acquire("TELEGRAM", "42", BOT) == 0
    assert limiter.acquire("TELEGRAM", "42", BOT) == 0  # the burst of two
    waits = []
    for _ in range(4):
        with pytest.raises(limiter.RateLimited) as later:
            limiter.acquire("TELEGRAM", "42", BOT)
        waits.append(later.value.wait_s)
        assert later.value.scope == "recipient"
    assert [round(w) for w in waits] == [1, 2, 3, 4]  # one per second, in arrival order


def test_retry_after_blocks_that_chat_for_every_process(limiter, telegram_limits):
    assert limiter.note_retry_after("TELEGRAM", "42", 30, BOT) == "recipient"
    limiter.reset()  # a new client, as in another worker process
    with pytest.raises(limiter.RateLimited) as blocked:
        limiter.acquire("TELEGRAM", "42", BOT)
    assert blocked.value.scope == "recipient" and 29 < blocked.value.wait_s <= 30
    assert limiter.acquire("TELEGRAM", "43", BOT) == 0  # a 429 for one chat does not stall the others


def test_429s_for_two_chats_block_the_whole_bot(limiter, telegram_limits):
    assert limiter.note_retry_after("TELEGRAM", "42", 30, BOT) == "recipient"
    assert limiter.note_retry_after("TELEGRAM", "43", 30, BOT) == "account"
    with pytest.raises(limiter.RateLimited) as blocked:
        limiter.acquire("TELEGRAM", "44", BOT)
    assert blocked.value.scope == "account"


def test_retry_after_scope_recipient_never_blocks_the_bot(limiter, telegram_limits, settings):
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "RETRY_AFTER_SCOPE": "recipient"}
    limiter.note_retry_after("TELEGRAM", "42", 30, BOT)
    assert limiter.note_retry_after("TELEGRAM", "43", 30, BOT) == "recipient"
    assert limiter.acquire("TELEGRAM", "44", BOT) == 0


def test_a_block_set_while_a_thread_sleeps_is_honoured_when_it_wakes(limiter, telegram_limits):
    limiter.reserve(limiter.scopes_for("TELEGRAM", "42", BOT))
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 1:  # another process gets a 429 for this chat meanwhile
            limiter.note_retry_after("TELEGRAM", "42", 60, BOT)

    with pytest.raises(limiter.RateLimited) as blocked:
        limiter.acquire("TELEGRAM", "42", BOT, sleep=sleep)
    assert len(calls) == 1 and 0.9 < calls[0] <= 1.0
    assert blocked.value.scope == "recipient" and blocked.value.wait_s > 59


def test_a_short_block_found_on_waking_is_slept_then_reserved_again(limiter, telegram_limits):
    telegram_limits(account=(30, 1, 1, 5), recipient=(5, 1, 1, 2), group=None)
    limiter.reserve(limiter.scopes_for("TELEGRAM", "42", BOT))
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 1:
            limiter.note_retry_after("TELEGRAM", "42", 0.3, BOT)
        time.sleep(seconds)

    limiter.acquire("TELEGRAM", "42", BOT, sleep=sleep)
    assert len(naps) == 2  # the chat's pace, then the rest of the block
    assert limiter.blocked_for(limiter.scopes_for("TELEGRAM", "42", BOT))[0] == 0  # not sent before it expired


def test_redis_down_raises_limiter_unavailable(limiter, telegram_limits, settings):
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    limiter.reset()
    with pytest.raises(limiter.LimiterUnavailable):
        limiter.acquire("TELEGRAM", "42", BOT)
    assert limiter.note_retry_after("TELEGRAM", "42", 5, BOT) == ""  # logged, not raised


def test_hung_redis_raises_limiter_unavailable_after_the_socket_timeout(limiter, telegram_limits, settings):
    server = RedisServer().start()
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "REDIS_URL": server.url, "SOCKET_TIMEOUT_S": 0.2}
    limiter.reset()
    try:
        assert limiter.acquire("TELEGRAM", "42", BOT) == 0
        os.kill(server.proc.pid, signal.SIGSTOP)
        with pytest.raises(limiter.LimiterUnavailable):
            limiter.acquire("TELEGRAM", "43", BOT)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        limiter.reset()
        server.close()


def test_redis_restarted_with_its_scripts_flushed_still_works(limiter, telegram_limits):
    assert limiter.acquire("TELEGRAM", "42", BOT) == 0
    limiter.client().script_flush()
    assert limiter.reserve(limiter.scopes_for("TELEGRAM", "43", BOT)).reserved


def test_a_channel_without_limits_never_needs_redis(limiter, settings):
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    limiter.reset()
    assert limiter.acquire("IN_APP", "42", "acct") == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30/s", (30.0, 1.0)), ("20/min", (20.0, 60.0)), ("1000/h", (1000.0, 3600.0)), ("5", (5.0, 1.0)), ("off", None)],
)
def test_rates_are_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("RATE_LIMIT_TEST", value)
    assert env_rate("RATE_LIMIT_TEST", "1/s") == expected


def test_by_default_the_pace_leaves_a_margin_under_the_published_limit(settings):
    from cmms import settings as project
    from workers import ratelimit as limiter_module

    margin = project.RATE_LIMIT["MARGIN"]["TELEGRAM"]
    assert margin < 1.0  # the project's default, not the fixture's
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "MARGIN": project.RATE_LIMIT["MARGIN"]}
    account = next(s for s in limiter_module.scopes_for("TELEGRAM", "42", "777") if s.name == "account")
    assert 1 / account.interval_s == pytest.approx(30 * margin)


def test_by_default_a_429_blocks_the_whole_bot_so_nothing_is_sent_inside_its_wait(limiter, settings):
    from cmms import settings as project

    assert project.RATE_LIMIT["RETRY_AFTER_SCOPE"] == "account"
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "RETRY_AFTER_SCOPE": "account"}
    assert limiter.note_retry_after("TELEGRAM", "42", 5, "777") == "account"
    with pytest.raises(limiter.RateLimited):
        limiter.acquire("TELEGRAM", "43", "777", sleep=lambda s: None)  # another chat waits too


# -- the departure log: a sliding window's count, whatever the threads' lateness --
def _departures(limiter, account="777"):
    """The instants (Redis clock, s) the departure log holds for the bot."""
    scope = next(s for s in limiter.scopes_for("TELEGRAM", "1", account) if s.name == "account")
    client = limiter.client()
    return sorted(score / 1e6 for _member, score in client.zrange(scope.sent_key, 0, -1, withscores=True))


@pytest.fixture
def window_guard(settings, limiter, telegram_limits):
    """30/s with a burst of 30 (the pace lets every due send go at once, as
    after a stall of every worker thread) and the departure log of a 1-s
    window plus 0.1 s of jitter."""
    telegram_limits(account=(30, 1, 30, 5), recipient=None, group=None)
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "WINDOW": {"TELEGRAM": {"window_s": 1.0, "jitter_s": 0.1}}}
    return limiter


def test_sends_that_bunch_are_held_back_to_the_windows_count_in_any_window_plus_jitter(window_guard):
    limiter = window_guard
    barrier = threading.Barrier(41)
    errors, logged, done = [], {}, threading.Event()

    def send(i):
        barrier.wait()
        try:
            limiter.acquire("TELEGRAM", str(1000 + i), "777")
        except (limiter.RateLimited, limiter.LimiterUnavailable) as exc:  # reported below
            errors.append(exc)

    def watch():  # the log keeps each send for 1.1 s: reading it every 10 ms misses none
        scope = next(s for s in limiter.scopes_for("TELEGRAM", "1", "777") if s.name == "account")
        client = limiter.client()
        while not done.is_set():
            logged.update(client.zrange(scope.sent_key, 0, -1, withscores=True))
            time.sleep(0.01)
        logged.update(client.zrange(scope.sent_key, 0, -1, withscores=True))

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert errors == []
    sent = sorted(score / 1e6 for score in logged.values())  # when each was let go, on Redis' clock
    assert len(sent) == 40
    # Never more than 30 in any 1.1 s, so never more than 30 can arrive in
    # any 1 s while the network's spread stays within 0.1 s...
    assert max(sum(1 for s in sent if start <= s < start + 1.1) for start in sent) == 30
    # ...and the 31st went as soon as the first left that span.
    assert 1.1 < sent[30] - sent[0] < 1.2


def test_a_message_of_several_requests_takes_as_many_places_in_the_log(window_guard):
    limiter = window_guard
    limiter.acquire("TELEGRAM", "1", "777", cost=29)
    slept = []
    with pytest.raises(limiter.RateLimited):  # 2 more do not fit: the wait is the log's, past the budget of 0
        limiter.acquire("TELEGRAM", "2", "777", cost=2,
                        sleep=lambda s: slept.append(s) or (_ for _ in ()).throw(limiter.RateLimited(s, "account")))
    assert slept and 1.0 < slept[0] <= 1.1
    assert len(_departures(limiter)) == 29
    limiter.acquire("TELEGRAM", "3", "777", cost=1)  # one more fits at once
    assert len(_departures(limiter)) == 30


def test_by_default_telegram_keeps_a_log_of_its_window_and_a_huge_limit_keeps_none(settings):
    from cmms import settings as project
    from workers import ratelimit as limiter_module

    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "WINDOW": project.RATE_LIMIT["WINDOW"]}
    account = next(s for s in limiter_module.scopes_for("TELEGRAM", "42", "777") if s.name == "account")
    assert (account.guard_count, account.guard_span_s) == (30, pytest.approx(1.1))
    recipient = next(s for s in limiter_module.scopes_for("TELEGRAM", "42", "777") if s.name == "recipient")
    assert recipient.guard_count == 0  # the bot's window, not a chat's
    assert {s.guard_count for s in limiter_module.scopes_for("EMAIL", "a@example.com", "x")} == {0}  # no window
    settings.RATE_LIMITS = limits(account=(1_000_000, 1, 1, 5), recipient=None, group=None)
    account = next(s for s in limiter_module.scopes_for("TELEGRAM", "42", "777") if s.name == "account")
    assert account.guard_count == 0  # a sorted set of a million sends a second would cost more than it guards


def test_the_window_is_read_from_the_environment_and_zero_turns_the_log_off(monkeypatch):
    import importlib

    from cmms import settings as project

    monkeypatch.setenv("RATE_LIMIT_TELEGRAM_WINDOW_S", "0")
    monkeypatch.setenv("RATE_LIMIT_TELEGRAM_JITTER_S", "0.25")
    try:
        reloaded = importlib.reload(project)
        assert reloaded.RATE_LIMIT["WINDOW"]["TELEGRAM"] == {"window_s": 0.0, "jitter_s": 0.25}
    finally:
        monkeypatch.delenv("RATE_LIMIT_TELEGRAM_WINDOW_S")
        monkeypatch.delenv("RATE_LIMIT_TELEGRAM_JITTER_S")
        importlib.reload(project)


def test_a_429_that_comes_during_a_wait_is_honoured_before_the_log_takes_the_send(window_guard, settings):
    limiter = window_guard
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "RETRY_AFTER_SCOPE": "account"}
    limiter.acquire("TELEGRAM", "1", "777", cost=30)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 1:  # during the log's wait, the bot draws a 429 for 3 s
            limiter.note_retry_after("TELEGRAM", "9", 3, "777")
            raise limiter.RateLimited(seconds, "stop")

    with pytest.raises(limiter.RateLimited) as caught:
        limiter.acquire("TELEGRAM", "2", "777", sleep=sleep)
    assert caught.value.scope == "stop"
    blocked, scope, held_back = limiter.awake(limiter.scopes_for("TELEGRAM", "2", "777"))
    assert scope == "account" and 2.5 < blocked <= 3
    assert held_back == 0  # not looked at while the bot is blocked: nothing was taken
    assert len(_departures(limiter)) == 30


def test_a_send_the_log_holds_back_longer_than_the_bots_sleep_budget_goes_back_to_the_row(window_guard, settings):
    limiter = window_guard
    settings.RATE_LIMITS = limits(account=(30, 1, 30, 0.5), recipient=None, group=None)  # sleeps up to 0.5 s
    limiter.acquire("TELEGRAM", "1", "777", cost=30)
    slept = []
    with pytest.raises(limiter.RateLimited) as caught:
        limiter.acquire("TELEGRAM", "2", "777", sleep=slept.append)
    assert caught.value.scope == "account" and 1.0 < caught.value.wait_s <= 1.1
    assert sum(slept) <= 0.5  # the pace's own short wait at most: no thread parked beyond the budget


# -- places taken ahead (ratelimit.Ahead) -------------------------------------
OUT_OF_REACH = {"account": (1_000_000, 1, 1, 5), "recipient": (1, 1, 2, 0.5), "group": (20, 60, 1, 3)}


def script_runs(redis_server):
    """How many Lua scripts the private Redis has run so far (not counting a
    script's first call, answered NOSCRIPT before redis-py loads it)."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_server.url)
    try:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        return stats.get("calls", 0) - stats.get("failed_calls", 0) - stats.get("rejected_calls", 0)
    finally:
        client.close()


def recipient_tat(redis_server, chat):
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_server.url)
    try:
        return client.get(f"cmms:rl:TELEGRAM:{BOT}:chat:{chat}")
    finally:
        client.close()


def test_a_batch_out_of_reach_takes_its_places_in_a_few_round_trips_each_chat_its_own(
        limiter, telegram_limits, redis_server):
    telegram_limits(**OUT_OF_REACH)
    chats = [str(700 + i) for i in range(20)]
    ahead = limiter.Ahead([("TELEGRAM", chat, BOT) for chat in chats])
    before = script_runs(redis_server)
    for chat in chats:
        assert limiter.acquire("TELEGRAM", chat, BOT, ahead=ahead) == 0.0
    # The first send has no pace yet; the second takes the other 18 places with its own.
    assert script_runs(redis_server) - before == 2
    assert all(recipient_tat(redis_server, chat) is not None for chat in chats)


def test_the_same_batch_within_reach_takes_one_place_per_send(limiter, telegram_limits, redis_server):
    # A pace a worker reaches, with a burst that would let every place be taken at once.
    telegram_limits(account=(500, 1, 20, 5), recipient=(1, 1, 2, 0.5), group=None)
    chats = [str(720 + i) for i in range(10)]
    ahead = limiter.Ahead([("TELEGRAM", chat, BOT) for chat in chats])
    before = script_runs(redis_server)
    for chat in chats:
        assert limiter.acquire("TELEGRAM", chat, BOT, ahead=ahead) == 0.0  # within the burst: no wait
    assert script_runs(redis_server) - before == len(chats)
    assert ahead.places == {}


def test_no_place_is_taken_ahead_where_a_departure_log_counts_the_sends(limiter, telegram_limits, settings):
    telegram_limits(**OUT_OF_REACH)
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "WINDOW": {"TELEGRAM": {"window_s": 0.001, "jitter_s": 0}}}
    scopes = limiter.scopes_for("TELEGRAM", "730", BOT)
    assert scopes[0].guard_count == 1000  # 1,000,000/s counted over 1 ms
    ahead = limiter.Ahead([("TELEGRAM", str(730 + i), BOT) for i in range(5)])
    for i in range(5):
        limiter.acquire("TELEGRAM", str(730 + i), BOT, ahead=ahead)
    assert ahead.places == {}


def test_a_chat_twice_in_a_batch_gets_one_place_ahead_the_second_message_waits_its_turn(
        limiter, telegram_limits):
    telegram_limits(account=(1_000_000, 1, 1, 5), recipient=(1, 1, 1, 0.5), group=None)
    order = ["740", "741", "742", "741", "743"]
    ahead = limiter.Ahead([("TELEGRAM", chat, BOT) for chat in order])
    limiter.acquire("TELEGRAM", "740", BOT, ahead=ahead)  # no pace yet: alone
    limiter.acquire("TELEGRAM", "741", BOT, ahead=ahead)  # takes 742's place; 741 again would wait
    assert set(ahead.places) == {("TELEGRAM", "742", BOT)}
    assert limiter.acquire("TELEGRAM", "742", BOT, ahead=ahead) == 0.0
    with pytest.raises(limiter.RateLimited) as second:
        limiter.acquire("TELEGRAM", "741", BOT, ahead=ahead)
    assert second.value.scope == "recipient" and second.value.wait_s > 0.5


def test_a_place_not_used_within_the_horizon_is_dropped_and_the_send_reserves_again(
        limiter, telegram_limits, settings, redis_server):
    telegram_limits(**OUT_OF_REACH)
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "AHEAD": {**settings.RATE_LIMIT["AHEAD"], "HORIZON_S": 0.05}}
    ahead = limiter.Ahead([("TELEGRAM", chat, BOT) for chat in ("750", "751", "752")])
    limiter.acquire("TELEGRAM", "750", BOT, ahead=ahead)
    time.sleep(0.001)
    limiter.acquire("TELEGRAM", "751", BOT, ahead=ahead)
    assert ("TELEGRAM", "752", BOT) in ahead.places
    time.sleep(0.1)
    before = script_runs(redis_server)
    assert limiter.acquire("TELEGRAM", "752", BOT, ahead=ahead) == 0.0  # burst 2: the wasted place counted
    assert script_runs(redis_server) - before == 1


def test_places_ahead_are_off_when_the_horizon_is_zero(limiter, telegram_limits, settings):
    telegram_limits(**OUT_OF_REACH)
    settings.RATE_LIMIT = {**settings.RATE_LIMIT, "AHEAD": {**settings.RATE_LIMIT["AHEAD"], "HORIZON_S": 0}}
    ahead = limiter.Ahead([("TELEGRAM", str(760 + i), BOT) for i in range(5)])
    for i in range(5):
        limiter.acquire("TELEGRAM", str(760 + i), BOT, ahead=ahead)
    assert ahead.places == {}


def test_the_ahead_settings_come_from_the_environment(monkeypatch):
    import importlib

    import cmms.settings as project

    monkeypatch.setenv("RATE_LIMIT_AHEAD_S", "0.2")
    monkeypatch.setenv("RATE_LIMIT_AHEAD_MAX", "8")
    monkeypatch.setenv("RATE_LIMIT_AHEAD_MIN_RATE", "5000")
    try:
        reloaded = importlib.reload(project)
        assert reloaded.RATE_LIMIT["AHEAD"] == {"HORIZON_S": 0.2, "MAX": 8, "MIN_RATE": 5000.0}
    finally:
        monkeypatch.undo()
        importlib.reload(project)
