"""Flood limits, force_429, injected 502s, slow answers and latency."""

import concurrent.futures
import time

import pytest
import requests

from .conftest import OTHER_TOKEN, Bot


def retry_after(response):
    body = response.json()
    assert response.status_code == 429 and body["error_code"] == 429
    seconds = body["parameters"]["retry_after"]
    assert body["description"] == f"Too Many Requests: retry after {seconds}"
    assert isinstance(seconds, int) and seconds >= 1
    return seconds


# -- flood limits --------------------------------------------------------------------


def test_five_rapid_messages_to_one_chat_pass_a_burst_of_3_then_get_429(sandbox, bot):
    statuses = [bot.send(42, f"m{i}").status_code for i in range(3)]
    assert statuses == [200, 200, 200]
    assert retry_after(bot.send(42, "m3")) == 1
    assert retry_after(bot.send(42, "m4")) == 1
    assert [m["text"] for m in sandbox.messages()] == ["m0", "m1", "m2"]
    stats = sandbox.stats()
    assert stats["rate_limited"] == 2 and stats["responses_by_status"] == {"200": 3, "429": 2}


def test_the_private_chat_limit_is_per_chat(bot):
    for _ in range(3):
        bot.send(42)
    assert bot.send(42).status_code == 429
    assert bot.send(43).status_code == 200


def test_a_rejected_request_does_not_consume_capacity(sandbox, bot):
    sandbox.configure(chat_rate=20, chat_burst=1)  # one message every 50 ms
    assert bot.send(42).status_code == 200
    for _ in range(5):
        assert bot.send(42).status_code == 429
    time.sleep(0.06)  # one interval is enough only if the five 429s consumed nothing
    assert bot.send(42).status_code == 200


def test_a_group_gets_20_messages_per_minute(sandbox, bot):
    sandbox.configure(group_burst=20, bot_burst=30)  # the bot-wide burst (10) would stop it first
    assert [bot.send(-1001, f"g{i}").status_code for i in range(20)] == [200] * 20
    assert retry_after(bot.send(-1001, "g20")) == 3  # one message every 60/20 s


def test_a_group_allows_a_burst_of_3_by_default(bot):
    assert [bot.send(-1001).status_code for _ in range(3)] == [200] * 3
    assert retry_after(bot.send(-1001)) == 3


def test_the_bot_wide_limit_spans_chats_but_not_other_bots(sandbox, bot):
    # A slow refill, so that a loaded machine sending the burst slowly cannot
    # earn the eleventh message back before it is sent.
    sandbox.configure(bot_rate=1, bot_burst=10)
    assert [bot.send(chat).status_code for chat in range(1, 11)] == [200] * 10
    assert retry_after(bot.send(11)) == 1
    assert Bot(sandbox, OTHER_TOKEN).send(11).status_code == 200


def test_only_message_sending_methods_count_against_the_limits(sandbox, bot):
    sandbox.configure(bot_burst=1, bot_rate=0.1)
    assert bot.send(1).status_code == 200
    assert all(bot.call("getMe").status_code == 200 for _ in range(5))
    assert bot.send(2).status_code == 429


def test_no_limits_lets_everything_through(sandbox, bot):
    sandbox.configure(limits_enabled=False)
    assert all(bot.send(42).status_code == 200 for _ in range(40))


def test_force_429_refuses_every_message_until_it_expires_and_records_the_attempts(sandbox, control, bot):
    control("post", "config", json={"force_429": {"scope": "bot", "retry_after": 1}})
    assert retry_after(bot.send(42)) == 1
    assert retry_after(bot.send(43)) == 1
    assert sandbox.messages() == []
    stats = sandbox.stats()
    assert len(stats["requests_while_force_429"]) == 2
    assert all(abs(t - time.time()) < 5 for t in stats["requests_while_force_429"])
    time.sleep(1.05)
    assert bot.send(42).status_code == 200
    assert sandbox.get_config()["force_429"] is None


def test_force_429_for_one_chat_leaves_other_chats_alone(sandbox, bot):
    sandbox.configure(force_429={"scope": 42, "retry_after": 30})
    assert retry_after(bot.send(42)) == 30
    assert bot.send(43).status_code == 200
    assert sandbox.get_config()["force_429"]["scope"] == 42


# -- injected faults -----------------------------------------------------------------


def test_fail_rate_1_answers_502_with_an_html_body_and_delivers_nothing(sandbox, bot):
    sandbox.configure(fail_rate=1)
    response = bot.send(42)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"
    assert sandbox.messages() == []
    assert sandbox.stats()["failures_injected"] == 1


def test_timeout_rate_1_delivers_the_message_then_answers_too_late(sandbox, bot):
    sandbox.configure(timeout_rate=1, timeout_delay_s=0.6)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        bot.send(42, "OT-9", http_timeout=0.2)
    assert [m["text"] for m in sandbox.messages()] == ["OT-9"]  # delivered although the client saw a timeout
    assert sandbox.stats()["timeouts_injected"] == 1
    assert bot.call("getMe", http_timeout=5).status_code == 200
    assert time.monotonic() - started < 2


def test_timeout_rate_answer_arrives_after_the_delay_for_a_patient_client(sandbox, bot):
    sandbox.configure(timeout_rate=1, timeout_delay_s=0.3)
    started = time.monotonic()
    assert bot.send(42).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_seeded_fault_draws_are_reproducible(sandbox, bot):
    def run():
        sandbox.reset()
        return [bot.call("getMe").status_code for _ in range(30)]

    sandbox.configure(fail_rate=0.5, seed=7)
    first = run()
    assert first == run()
    assert set(first) == {200, 502}


def test_latency_is_applied_to_every_call(sandbox, bot):
    sandbox.configure(latency_ms=150)
    started = time.monotonic()
    assert bot.call("getMe").status_code == 200
    assert time.monotonic() - started >= 0.15


def test_twenty_concurrent_requests_with_300_ms_latency_do_not_queue_behind_each_other(sandbox):
    sandbox.configure(latency_ms=300, limits_enabled=False)
    bots = [Bot(sandbox) for _ in range(20)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda pair: pair[1].send(pair[0]).status_code, enumerate(bots)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    assert elapsed < 3, f"20 x 300 ms took {elapsed:.2f} s: requests were serialised"
    assert len(sandbox.messages()) == 20


def test_a_client_that_gives_up_during_the_latency_is_not_delivered(sandbox, bot):
    sandbox.configure(latency_ms=400)
    with pytest.raises(requests.exceptions.ReadTimeout):
        bot.send(42, http_timeout=0.1)
    time.sleep(0.5)
    assert sandbox.messages() == []
    assert sandbox.stats()["client_gone"] == 1
